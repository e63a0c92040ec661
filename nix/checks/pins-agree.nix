# What the flake would fetch and build, evaluated from the flake's own files with
# stand-ins for nixpkgs and crane (they cannot be fetched here). Used by pins-agree.sh:
#   nix-instantiate --eval --strict --json nix/checks/pins-agree.nix --arg root <tree>
{ root }:
let
  pins = import (root + "/nix/pins.nix");

  lib = {
    inherit (builtins) concatStringsSep;
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

  lambdaZip = import (root + "/nix/lambda-zip.nix") {
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
  glibc = lambdaZip.passthru.glibc;
  zip_name = lambdaZip.passthru.zipName;
}
