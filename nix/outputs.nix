# Everything per system; flake.nix only lists inputs and systems.
{
  system,
  nixpkgs,
  crane,
  rust-overlay,
  # the commit the flake was evaluated at (flake.nix: self.rev, or self.dirtyRev for a
  # dirty tree), for the zip's provenance
  sourceRev ? null,
  sourceClean ? false,
}:
let
  pkgs = import nixpkgs {
    inherit system;
    overlays = [ rust-overlay.overlays.default ];
  };
  inherit (pkgs) lib;
  fs = lib.fileset;

  pins = import ./pins.nix;

  # rust-toolchain.toml is the only Rust pin: channel, components (rustfmt, clippy) and
  # targets (x86_64- and aarch64-unknown-linux-gnu: every host builds both zips).
  toolchainFor = p: p.rust-bin.fromRustupToolchainFile ../rust-toolchain.toml;
  rustToolchain = toolchainFor pkgs;
  craneLib = (crane.mkLib pkgs).overrideToolchain toolchainFor;

  # Sources: only what each build reads, so unrelated edits rebuild nothing.
  rustSrc = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../migrations # embedded at compile time
      ../benches # [[bench]] targets must exist for cargo to load the manifest
      ../tests
      ../deploy/template.yaml # read by tests/deploy_template.rs
      ../nix/pins.json # the architectures tests/deploy_template.rs expects
      ../nix/zip-writer # a workspace member: cargo loads it with the package
      ../test-support # a workspace member: the tests' and benches' shared crate
    ];
  };
  # The zip recipe: the crate plus nix/ without the flake's own files, so every helper
  # build-zip.sh uses (pins.json, audit.py, zip-writer/, cc/, ...) is there, and editing the
  # flake does not rebuild the zip.
  zipSrc = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../rust-toolchain.toml # build-zip.sh checks rustc/cargo against its channel
      ../src
      ../migrations
      ../benches
      ../test-support # a workspace member: cargo loads it, though the zip never builds it
      (fs.difference ../nix (
        fs.unions [
          (fs.fileFilter (f: f.hasExt "nix") ../nix)
          (fs.maybeMissing ../nix/checks)
          (fs.maybeMissing ../nix/README.md)
        ]
      ))
    ];
  };

  # One vendor directory (it depends on Cargo.lock only) for crane's derivations and the zip.
  cargoVendorDir = craneLib.vendorCargoDeps { cargoLock = ../Cargo.lock; };

  commonArgs = {
    src = rustSrc;
    strictDeps = true;
    inherit cargoVendorDir;
    # the profile `cargo test` / `cargo clippy` use (crane's default would be release)
    CARGO_PROFILE = "dev";
    # OpenSSL is built from openssl-src (Cargo.toml), as in every build: its
    # Configure needs perl; no system OpenSSL or pkg-config.
    nativeBuildInputs = [ pkgs.perl ];
  };
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  # moto with its server extras (moto_server) and botocore, for the tests; cfn-lint for
  # the dev shell.
  pythonEnv = pkgs.python3.withPackages (
    p:
    [
      p.moto
      p.botocore
      p.cfn-lint
    ]
    ++ p.moto.optional-dependencies.server
  );

  zig = pkgs.callPackage ./zig.nix { inherit pins; };
  crateTool = args: pkgs.callPackage ./crate-tool.nix ({ inherit craneLib; } // args);
  cargo-zigbuild = crateTool {
    pname = "cargo-zigbuild";
    pin = pins.cargo_zigbuild;
    homepage = "https://github.com/rust-cross/cargo-zigbuild";
    license = lib.licenses.mit;
    versionCommand = "cargo-zigbuild --version";
  };
  # no --version; build-zip.sh reads share/cargo-auditable/version
  cargo-auditable = crateTool {
    pname = "cargo-auditable";
    pin = pins.cargo_auditable;
    homepage = "https://github.com/rust-secure-code/cargo-auditable";
    license = [
      lib.licenses.mit
      lib.licenses.asl20
    ];
  };
  lambdaZip = pkgs.callPackage ./lambda-zip.nix {
    inherit
      pins
      zig
      cargo-zigbuild
      cargo-auditable
      rustToolchain
      cargoVendorDir
      sourceRev
      sourceClean
      ;
    src = zipSrc;
  };
  # the same recipe for Graviton: only --arch differs
  lambdaZipArm64 = lambdaZip.override { arch = "arm64"; };
  bootstrap = pkgs.callPackage ./bootstrap.nix { inherit pins lambdaZip; };
  bootstrapArm64 = pkgs.callPackage ./bootstrap.nix {
    inherit pins;
    lambdaZip = lambdaZipArm64;
  };

  checks = import ./checks.nix {
    inherit
      pkgs
      craneLib
      commonArgs
      cargoArtifacts
      pythonEnv
      lambdaZip
      lambdaZipArm64
      bootstrap
      bootstrapArm64
      zipSrc
      pins
      ;
  };
in
{
  packages = {
    default = lambdaZip;
    lambda-zip = lambdaZip;
    lambda-zip-arm64 = lambdaZipArm64;
    bootstrap-arm64 = bootstrapArm64;
    inherit
      bootstrap
      zig
      cargo-zigbuild
      cargo-auditable
      ;
  };

  inherit checks;

  devShells.default = craneLib.devShell {
    # build inputs of every check (perl, postgresql, pgbouncer, pythonEnv, and the zip's:
    # toolchain, zig, cargo-zigbuild, cargo-auditable, python3)
    inherit checks;
    packages = [
      pythonEnv
      zig
      cargo-zigbuild
      cargo-auditable
      pkgs.cargo-nextest
      pkgs.postgresql
      pkgs.pgbouncer
      pkgs.docker-client
      pkgs.perl
    ];
    # the tests use nixpkgs' moto instead of pip-installing the pinned one
    EVENT_RECORDER_MOTO_SERVER = "${pythonEnv}/bin/moto_server";
  };

  formatter = pkgs.nixfmt-tree;
}
