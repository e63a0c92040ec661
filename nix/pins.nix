# The pins, read from the same files the non-Nix recipe reads:
#   nix/pins.json        zig wheels, cargo-zigbuild crate, target, glibc floor, zip name, ...
#   rust-toolchain.toml  the Rust channel (and targets/components)
# Pure data, no nixpkgs: nix/checks/pins-agree.sh evaluates this very file with
# `nix-instantiate --eval --strict --json` and compares it with what build-zip.sh and
# fetch-tools.sh read. Never write a version or hash into a .nix file; add it to
# pins.json and read it from here.
let
  pins = builtins.fromJSON (builtins.readFile ./pins.json);
  toolchain = (builtins.fromTOML (builtins.readFile ../rust-toolchain.toml)).toolchain;
in
pins
// {
  rust = {
    inherit (toolchain) channel;
    targets = toolchain.targets or [ ];
    components = toolchain.components or [ ];
  };
}
