# The flake's own outputs, evaluated through flake.nix and nix/outputs.nix unchanged, with
# crane's real lib/*.nix (the pinned rev, unpacked by crane-eval.sh) and stand-ins only for
# nixpkgs (crane-eval-nixpkgs.nix) and rust-overlay (a toolchain record read from
# rust-toolchain.toml). Used by nix/checks/crane-eval.sh and nix/checks/pins-agree.nix.
#
# Calls the project makes into crane are observed, not re-wired: the craneLib that
# `crane.mkLib` returns is crane's own scope, with each public function wrapped so a call
# is traced (`trace: {"craneEvalCall": ...}`: function, argument names, formals, result).
{
  root, # the tree to evaluate
  craneSrc, # crane's unpacked source (NAR hash checked by the caller)
  ifdTrees ? { }, # see crane-eval-nixpkgs.nix
}:
let
  b = builtins;
  lock = b.fromJSON (b.readFile (root + "/flake.lock"));

  # crane's lib/default.nix refuses nixpkgs older than it supports: report the locked
  # branch's release (nixos-YY.MM) as lib.version
  nixpkgsVersion =
    let
      m = b.match "nixos-([0-9]+[.][0-9]+)" (lock.nodes.nixpkgs.original.ref or "");
    in
    if m == null then throw "flake.lock: nixpkgs is not on a nixos-YY.MM branch" else b.head m;
  lib = import ./crane-eval-lib.nix { version = nixpkgsVersion; };

  # `import nixpkgs { ... }` in nix/outputs.nix lands here (ifdTrees baked in)
  nixpkgs = {
    outPath = b.toFile "crane-eval-nixpkgs.nix" ''
      args: import ${toString ./crane-eval-nixpkgs.nix} (args // {
        ifdTrees = builtins.fromJSON ${b.toJSON (b.toJSON (b.mapAttrs (_: toString) ifdTrees))};
        lib = import ${toString ./crane-eval-lib.nix} { version = "${nixpkgsVersion}"; };
      })
    '';
    inherit lib;
  };

  rust-overlay.overlays.default = final: prev: {
    rust-bin.fromRustupToolchainFile =
      file:
      let
        t = (b.fromTOML (b.readFile file)).toolchain;
      in
      final.stdenv.mkDerivation {
        pname = "rust-toolchain";
        version = t.channel;
        toolchainFile = toString file;
        targets = t.targets or [ ];
        components = t.components or [ ];
        profile = t.profile or "default";
      }
      // {
        craneEvalToolchain = true;
      };
  };

  # crane's public functions a project calls; each call is traced
  observed = [
    "buildDepsOnly"
    "buildPackage"
    "buildTrunkPackage"
    "cargoAudit"
    "cargoBuild"
    "cargoClippy"
    "cargoDeny"
    "cargoDoc"
    "cargoDocTest"
    "cargoFmt"
    "cargoLlvmCov"
    "cargoNextest"
    "cargoTarpaulin"
    "cargoTest"
    "devShell"
    "mkCargoDerivation"
    "mkDummySrc"
    "taploFmt"
    "vendorCargoDeps"
    "vendorMultipleCargoDeps"
  ];
  observe =
    scope:
    scope
    // b.mapAttrs (
      fn: f: args:
      let
        result = f args;
      in
      b.trace (b.toJSON {
        craneEvalCall = fn;
        argNames = b.attrNames args;
        formals = b.functionArgs f;
        env = b.attrNames (args.env or { });
        result = "${result}";
        inherit (result) system;
      }) result
    ) (b.intersectAttrs (lib.genAttrs observed (_: null)) scope)
    // {
      overrideToolchain = t: observe (scope.overrideToolchain t);
      overrideScope = g: observe (scope.overrideScope g);
    };

  craneFlake = import (craneSrc + "/flake.nix");
  craneOutputs = craneFlake.outputs { };
  crane = craneOutputs // {
    outPath = craneSrc;
    mkLib = pkgs: observe (craneOutputs.mkLib pkgs);
  };

  flake = import (root + "/flake.nix");
  outputs = flake.outputs {
    self = outputs // {
      outPath = root;
    };
    inherit nixpkgs crane rust-overlay;
  };

  # every output (packages, checks, devShells, formatter) per system, as store paths
  roots = b.mapAttrs (
    system: _:
    b.mapAttrs (_: perSystem: b.mapAttrs (_: drv: "${drv}") perSystem.${system}) {
      inherit (outputs) packages checks devShells;
    }
    // {
      formatter = "${outputs.formatter.${system}}";
    }
  ) outputs.packages;
in
{
  inherit outputs lib;
  inherit roots;
}
