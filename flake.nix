{
  description = "event-recorder: AWS Lambda (Rust) storing encrypted SQS audit events in PostgreSQL";

  # Pins: nixpkgs/crane/rust-overlay here and in flake.lock; Rust in rust-toolchain.toml;
  # zig, cargo-zigbuild and the rest in nix/pins.json (shared with the non-Nix recipe).
  # crane >= 0.22 needs Nix >= 2.31.2. See nix/README.md.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    crane.url = "github:ipetkov/crane/v0.23.4";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      nixpkgs,
      crane,
      rust-overlay,
      ...
    }:
    let
      # Hosts. The zip always targets x86_64-unknown-linux-gnu (zig cross-compiles on aarch64).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      perSystem = nixpkgs.lib.genAttrs systems (
        system:
        import ./nix/outputs.nix {
          inherit
            system
            nixpkgs
            crane
            rust-overlay
            ;
        }
      );
      pick = name: builtins.mapAttrs (_: outputs: outputs.${name}) perSystem;
    in
    {
      packages = pick "packages";
      checks = pick "checks";
      devShells = pick "devShells";
      formatter = pick "formatter";
    };
}
