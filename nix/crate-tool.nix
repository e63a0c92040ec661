# A cargo plugin at exactly the version the non-Nix path builds (nix/fetch-tools.sh): the
# .crate named in nix/pins.json, fetched by its pinned sha256 (= the crates.io index
# `cksum`), unpacked, and built by crane from the crate's own Cargo.lock (`--locked`,
# crane's default) with the project's Rust toolchain. Same source and lock file as
# fetch-tools.sh's `cargo install --locked --path <unpacked crate>`. Used for
# cargo-zigbuild and cargo-auditable (`pin` = their pins.json entries).
{
  lib,
  craneLib,
  fetchurl,
  runCommandLocal,
  # e.g. "cargo-zigbuild"; its pins.json key is the name with `_` for `-`
  pname,
  pin,
  homepage,
  license,
  # a command printing "<pname> <version>", or null for a tool without one
  # (cargo-auditable): then share/<pname>/version is all there is to check
  versionCommand ? null,
}:
let
  crate = fetchurl {
    url = pin.crate_url;
    sha256 = pin.crate_sha256;
    name = "${pname}-${pin.version}.tar.gz";
  };
  src = runCommandLocal "${pname}-${pin.version}-source" { } ''
    mkdir -p "$out"
    tar -xzf ${crate} --strip-components=1 -C "$out"
    test -f "$out/Cargo.lock" || { echo "${pin.crate_url} has no Cargo.lock" >&2; exit 1; }
  '';
  commonArgs = {
    inherit pname src;
    inherit (pin) version;
    strictDeps = true;
    doCheck = false; # upstream's tests need network or other tools; the checks below run
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

    # the version the installer built, where nix/build-zip.sh reads it (as fetch-tools.sh
    # writes it)
    postInstall = ''
      mkdir -p "$out/share/${pname}"
      echo "${pin.version}" >"$out/share/${pname}/version"
    '';

    doInstallCheck = true;
    installCheckPhase = ''
      runHook preInstallCheck
      test -x "$out/bin/${pname}"
    ''
    + lib.optionalString (versionCommand != null) ''
      got=$("$out/bin/${versionCommand}")
      if [ "$got" != "${pname} ${pin.version}" ]; then
        echo "built '$got', nix/pins.json pins ${pname} ${pin.version}" >&2
        exit 1
      fi
    ''
    + ''
      runHook postInstallCheck
    '';

    # the verified .crate itself (also read by nix/checks/pins-agree.sh)
    passthru = { inherit crate; };

    meta = {
      description = "${pname} from the pinned .crate (nix/pins.json)";
      inherit homepage license;
      mainProgram = pname;
    };
  }
)
