# What the flake would fetch and build, read from the flake's own outputs: flake.nix and
# nix/outputs.nix evaluated with crane's real lib (see crane-eval.nix) and stand-ins for
# nixpkgs' primitives only. Used by pins-agree.sh:
#   nix-instantiate --eval --strict --json nix/checks/pins-agree.nix \
#     --arg root <tree> --arg craneSrc <crane> --arg ifdTrees <...>
{
  root,
  craneSrc,
  ifdTrees ? { },
}:
let
  pins = import (root + "/nix/pins.nix");
  inherit (import ./crane-eval.nix { inherit root craneSrc ifdTrees; }) outputs lib;
  systems = builtins.attrNames outputs.packages;
  packagesOf = system: outputs.packages.${system};

  arches = builtins.filter (a: !lib.hasPrefix "_" a) (builtins.attrNames pins.architectures);
  # the flake's zips, found by what they are (passthru.zipName), not by attribute name
  zipsOf =
    system: builtins.filter (p: p ? zipName) (builtins.attrValues (packagesOf system));
  zipFor =
    system: a:
    let
      m = builtins.filter (z: z.arch == a) (zipsOf system);
    in
    if m == [ ] then null else builtins.head m;
  # the crate tools (nix/crate-tool.nix): version and the .crate they are built from
  crateTool =
    name:
    lib.genAttrs systems (
      system:
      let
        c = (packagesOf system).${name};
      in
      {
        inherit (c) version;
        inherit (c.passthru.crate) url sha256;
      }
    );
  first = builtins.head systems;
in
{
  inherit systems;
  rust_channel = pins.rust.channel;
  zig = lib.genAttrs systems (
    system:
    let
      z = (packagesOf system).zig;
    in
    {
      inherit (z) version;
      inherit (z.src) url sha256;
      filename = z.src.name;
    }
  );
  cargo_zigbuild = crateTool "cargo-zigbuild";
  cargo_auditable = crateTool "cargo-auditable";
  glibc = (zipFor first pins.default_architecture).passthru.glibc;
  # per architecture: the zip name and the --arch the flake passes to build-zip.sh
  arch = lib.genAttrs (builtins.filter (a: zipFor first a != null) arches) (
    a:
    let
      z = zipFor first a;
    in
    {
      zip_name = z.passthru.zipName;
      passes_arch = builtins.match ".*--arch ${a} .*" z.buildPhase != null;
    }
  );
}
