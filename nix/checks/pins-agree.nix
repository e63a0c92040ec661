# What the flake would fetch and build, evaluated from the flake's own files with
# stand-ins for nixpkgs and crane (they cannot be fetched here). Used by pins-agree.sh:
#   nix-instantiate --eval --strict --json nix/checks/pins-agree.nix --arg root <tree>
{ root }:
let
  pins = import (root + "/nix/pins.nix");

  lib = {
    inherit (builtins) concatStringsSep;
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    licenses.mit = "mit";
    assertOneOf =
      name: value: allowed:
      builtins.elem value allowed || throw "${name} = ${value} is not one of ${toString allowed}";
    genAttrs =
      names: f:
      builtins.listToAttrs (
        map (name: {
          inherit name;
          value = f name;
        }) names
      );
  };
  standIn = name: "/stand-in/${name}";
  fetchurl = args: args // { outPath = standIn args.name; };

  # The host systems flake.nix declares (attribute names only: outputs.nix is not evaluated).
  flake = import (root + "/flake.nix");
  systems = builtins.attrNames
    (flake.outputs {
      nixpkgs.lib = lib;
      crane = { };
      rust-overlay = { };
    }).packages;

  zigFor =
    system:
    import (root + "/nix/zig.nix") {
      inherit lib fetchurl pins;
      stdenvNoCC = {
        hostPlatform.system = system;
        mkDerivation = args: args;
      };
      unzip = null;
    };

  cargoZigbuild = import (root + "/nix/cargo-zigbuild.nix") {
    inherit lib fetchurl pins;
    craneLib.buildPackage = args: args;
    runCommandLocal = name: env: script: { outPath = standIn name; };
  };

  arches = builtins.filter (a: builtins.substring 0 1 a != "_") (
    builtins.attrNames pins.architectures
  );
  lambdaZipFor = arch: import (root + "/nix/lambda-zip.nix") {
    inherit arch;
    inherit lib pins;
    stdenv.mkDerivation = args: args;
    bashInteractive = null;
    python3 = null;
    perl = null;
    rustToolchain = null;
    zig = null;
    cargo-zigbuild = null;
    cargoVendorDir = standIn "vendor";
    src = null;
  };
in
{
  inherit systems;
  rust_channel = pins.rust.channel;
  zig = lib.genAttrs systems (
    system:
    let
      z = zigFor system;
    in
    {
      inherit (z) version;
      inherit (z.src) url sha256;
      filename = z.src.name;
    }
  );
  cargo_zigbuild = {
    inherit (cargoZigbuild) version;
    url = cargoZigbuild.passthru.crate.url;
    sha256 = cargoZigbuild.passthru.crate.sha256;
  };
  glibc = (lambdaZipFor pins.default_architecture).passthru.glibc;
  # per architecture: the zip name and the --arch the flake passes to build-zip.sh
  arch = lib.genAttrs arches (a: {
    zip_name = (lambdaZipFor a).passthru.zipName;
    passes_arch = builtins.match ".*--arch ${a} .*" (lambdaZipFor a).buildPhase != null;
  });
}
