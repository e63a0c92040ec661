# The Lambda zip for one architecture, built by THE recipe: nix/build-zip.sh, the same
# script the non-Nix path runs. Nix only supplies its inputs: the Rust toolchain from
# rust-toolchain.toml, zig, cargo-zigbuild and cargo-auditable at the versions in
# nix/pins.json (build-zip.sh checks their versions itself), python3, perl (OpenSSL's
# Configure), crane's vendored crates so that cargo runs offline, and the commit for the
# provenance. Output: $out/{<zip>,<zip>.sha256,<name>.cdx.json,<name>.intoto.json,manifest.json}.
{
  lib,
  stdenv,
  python3,
  perl,
  rustToolchain,
  zig,
  cargo-zigbuild,
  cargo-auditable,
  cargoVendorDir,
  src,
  pins,
  # --glibc for build-zip.sh; one of pins.glibc.allowed. (Not named `glibc`: callPackage
  # would fill that from nixpkgs.)
  glibcFloor ? pins.glibc.default,
  # --arch for build-zip.sh: a key of pins.architectures (x86_64 or arm64)
  arch ? pins.default_architecture,
  # the flake's commit (self.rev or self.dirtyRev) and whether its tree was clean; the
  # provenance records them (a source with no .git cannot tell build-zip.sh)
  sourceRev ? null,
  sourceClean ? false,
}:
assert lib.assertOneOf "glibcFloor" glibcFloor pins.glibc.allowed;
assert lib.assertOneOf "arch" arch (
  builtins.filter (a: !lib.hasPrefix "_" a) (builtins.attrNames pins.architectures)
);
let
  target = pins.architectures.${arch};
  # build-zip.sh remaps $CARGO_HOME to /cargo. Without Nix, cargo (>= 1.85: stable hash)
  # unpacks crates.io crates under $CARGO_HOME/registry/src/index.crates.io-1949cf8c6b5b557f/
  # <name>-<version>; mapping crane's vendor directory onto that same name makes panic
  # locations and tracing call sites the same strings as in the non-Nix build. If cargo
  # ever renames that directory, the zip still builds and passes the audit gate (no
  # /nix/store path can remain), it just stops being byte-identical to the non-Nix zip.
  registrySrc = "/cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
in
stdenv.mkDerivation {
  pname = "event-recorder-lambda-zip-${arch}";
  version = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package.version;
  inherit src;
  strictDeps = true;

  nativeBuildInputs = [
    rustToolchain
    zig
    cargo-zigbuild
    cargo-auditable
    python3
    perl
  ];

  postPatch = ''
    patchShebangs --build nix
  '';

  dontConfigure = true;

  buildPhase = ''
    runHook preBuild

    # cargo: offline, crates from crane's vendor directory (source replacement config)
    export CARGO_HOME="$NIX_BUILD_TOP/cargo-home"
    mkdir -p "$CARGO_HOME"
    cat ${cargoVendorDir}/config.toml > "$CARGO_HOME/config.toml"
    export CARGO_NET_OFFLINE=true EVENT_RECORDER_OFFLINE=1
    # tools: from PATH, never fetched (build-zip.sh fails if their versions differ from the pins)
    export EVENT_RECORDER_NO_FETCH=1
    # provenance: this builder, and the flake's commit
    export EVENT_RECORDER_BUILDER=nix
    export EVENT_RECORDER_SOURCE_COMMIT=${if sourceRev == null then "unknown" else sourceRev}
    export EVENT_RECORDER_SOURCE_CLEAN=${if sourceRev == null then "unknown" else lib.boolToString sourceClean}

    # Vendored crates live in /nix/store, which the audit gate rejects: remap them.
    mapfile -t registries < <(sed -n 's/^[[:space:]]*directory[[:space:]]*=[[:space:]]*"\(.*\)"[[:space:]]*$/\1/p' \
      "$CARGO_HOME/config.toml")
    if [ "''${#registries[@]}" -ne 1 ]; then
      echo "lambda-zip: expected exactly one vendored registry (crates.io), found ''${#registries[@]}:" \
        "''${registries[*]-}; extend the remaps in nix/lambda-zip.nix" >&2
      exit 1
    fi
    reg=''${registries[0]}
    remaps=("$reg=${registrySrc}" "$(readlink -f "$reg")=${registrySrc}")
    # Also each crate's own store path, should anything resolve the vendor symlinks.
    for crate in "$reg"/*; do
      remaps+=("$(readlink -f "$crate")=${registrySrc}/''${crate##*/}")
    done
    export EVENT_RECORDER_EXTRA_REMAPS="''${remaps[*]}"
    echo "lambda-zip: ''${#remaps[@]} remaps for vendored sources -> ${registrySrc}"

    bash nix/build-zip.sh --arch ${arch} --glibc ${glibcFloor} --out "$out"

    runHook postBuild
  '';

  # build-zip.sh wrote $out itself (only after its audit gate passed)
  dontInstall = true;
  # the zip's bytes are the product: no strip, no patchelf, no shebang rewriting
  dontFixup = true;

  passthru = {
    glibc = glibcFloor;
    inherit arch;
    zipName = target.zip_name;
  };

  meta = {
    description = "event-recorder Lambda zip (${target.target}, glibc >= ${glibcFloor}), built by nix/build-zip.sh";
    platforms = builtins.attrNames pins.zig.wheels;
  };
}
