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
      self,
      nixpkgs,
      crane,
      rust-overlay,
      ...
    }:
    let
      # Hosts. Each builds both zips (x86_64 and arm64 Amazon Linux): zig cross-compiles.
      # The darwin hosts have not been run (see nix/README.md).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
        "x86_64-darwin"
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
          # for the zip's provenance: the commit, and whether the tree was clean
          sourceRev = self.rev or self.dirtyRev or null;
          sourceClean = self ? rev;
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
