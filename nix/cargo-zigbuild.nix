# cargo-zigbuild, exactly the version the non-Nix path builds: the .crate named in
# nix/pins.json, fetched by its pinned sha256 (= the crates.io index `cksum`), unpacked,
# and built by crane from the crate's own Cargo.lock (`--locked`, crane's default), with
# the project's Rust toolchain. Same source and lock file as fetch-tools.sh's
# `cargo install --locked --path <unpacked crate>`.
{
  lib,
  craneLib,
  fetchurl,
  runCommandLocal,
  pins,
}:
let
  czb = pins.cargo_zigbuild;
  crate = fetchurl {
    url = czb.crate_url;
    sha256 = czb.crate_sha256;
    name = "cargo-zigbuild-${czb.version}.tar.gz";
  };
  src = runCommandLocal "cargo-zigbuild-${czb.version}-source" { } ''
    mkdir -p "$out"
    tar -xzf ${crate} --strip-components=1 -C "$out"
    test -f "$out/Cargo.lock" || { echo "${czb.crate_url} has no Cargo.lock" >&2; exit 1; }
  '';
  commonArgs = {
    pname = "cargo-zigbuild";
    inherit (czb) version;
    inherit src;
    strictDeps = true;
    doCheck = false; # upstream's tests need zig and network; the version check below runs
    # vendored once, from the crate's own Cargo.lock, for both derivations
    cargoVendorDir = craneLib.vendorCargoDeps { inherit src; };
  };
  # Passed explicitly: without it buildPackage derives a deps-only build from all of its
  # arguments, the install check included, and that check would run a binary a deps-only
  # build never installs.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;
in
craneLib.buildPackage (
  commonArgs
  // {
    inherit cargoArtifacts;

    doInstallCheck = true;
    installCheckPhase = ''
      runHook preInstallCheck
      got=$("$out/bin/cargo-zigbuild" --version)
      if [ "$got" != "cargo-zigbuild ${czb.version}" ]; then
        echo "built '$got', nix/pins.json pins cargo-zigbuild ${czb.version}" >&2
        exit 1
      fi
      runHook postInstallCheck
    '';

    # the verified .crate itself (also read by nix/checks/pins-agree.sh)
    passthru = { inherit crate; };

    meta = {
      description = "cargo-zigbuild from the pinned .crate (nix/pins.json)";
      homepage = "https://github.com/rust-cross/cargo-zigbuild";
      license = lib.licenses.mit;
      mainProgram = "cargo-zigbuild";
    };
  }
)
