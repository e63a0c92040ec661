# Sourced by crane-eval.sh and pins-agree.sh: crane's source at the rev flake.lock pins,
# unpacked from a local tarball and verified, plus what evaluating it with this machine's
# Nix needs. No network: the tarball comes from $EVENT_RECORDER_CRANE_SRC, a directory
# holding crane-<rev>.tar.gz (default: ../shared/nix-sources/ next to the repository).
#   crane_src_prepare TREE WORKDIR REPO   (REPO: the checkout the default is relative to)
# sets CRANE_SRC (crane's tree) and CRANE_IFD_ARG (the --arg ifdTrees value), or fails.

crane_src_prepare() {
    local tree=$1 work=$2 repo=$3 rev nar dir tarball got version
    read -r rev nar < <(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["nodes"]["crane"]["locked"]
print(c["rev"], c["narHash"])' "$tree/flake.lock") || { echo "crane-src: flake.lock has no locked crane" >&2; return 1; }
    dir=${EVENT_RECORDER_CRANE_SRC:-$repo/../shared/nix-sources}
    tarball=$dir/crane-$rev.tar.gz
    if ! [ -f "$tarball" ]; then
        echo "crane-src: FAIL: $tarball not found; set EVENT_RECORDER_CRANE_SRC to a directory holding crane-$rev.tar.gz (\`git archive $rev\` of ipetkov/crane)" >&2
        return 1
    fi
    mkdir -p "$work/crane-unpack"
    tar -xzf "$tarball" -C "$work/crane-unpack"
    local top=("$work"/crane-unpack/*)
    [ "${#top[@]}" -eq 1 ] && [ -d "${top[0]}" ] || { echo "crane-src: FAIL: $tarball does not hold one top directory" >&2; return 1; }
    got=$(nix --extra-experimental-features nix-command hash path --type sha256 "${top[0]}")
    if [ "$got" != "$nar" ]; then
        echo "crane-src: FAIL: $tarball unpacks to NAR hash $got, flake.lock pins $nar" >&2
        return 1
    fi
    # The verified tree, with one substitution: mkDummySrc.nix reads `<Cargo.toml>/../src`.
    # Nix >= 2.31 (which this crane requires) resolves the `..` lexically; the Nix 2.8
    # that CI has hands it to the kernel, which fails because Cargo.toml is a file.
    # `dirOf` gives the same path on both. Anything else in crane runs as published.
    CRANE_SRC=$work/crane
    cp -r "${top[0]}" "$CRANE_SRC"
    python3 - "$CRANE_SRC/lib/mkDummySrc.nix" <<'PY' || return 1
import sys
p = sys.argv[1]; s = open(p).read()
old = 'shallowJoinPath = rest: p + "/../${rest}";'
new = 'shallowJoinPath = rest: "${builtins.dirOf p}/${rest}";'
if s.count(old) != 1:
    sys.exit(f"crane-src: FAIL: {p} no longer has exactly one `{old}`; revisit the Nix 2.8 shim")
open(p, "w").write(s.replace(old, new))
PY
    # Each crate tool's source (nix/crate-tool.nix) is a derivation whose Cargo.toml and
    # Cargo.lock crane reads while evaluating (import from derivation); the pinned .crate
    # cannot be fetched here, so a minimal crate with the pinned name and version stands
    # in for each unpacked one.
    local name key dir ifd="{"
    for name in cargo-zigbuild cargo-auditable; do
        key=${name//-/_}
        version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["version"])' "$tree/nix/pins.json" "$key")
        dir=$work/ifd/$name-source
        mkdir -p "$dir/src"
        printf '[package]\nname = "%s"\nversion = "%s"\nedition = "2021"\n' "$name" "$version" >"$dir/Cargo.toml"
        printf 'version = 3\n\n[[package]]\nname = "%s"\nversion = "%s"\n' "$name" "$version" >"$dir/Cargo.lock"
        printf 'fn main() {}\n' >"$dir/src/main.rs"
        ifd="$ifd $name = $dir;"
    done
    CRANE_IFD_ARG="$ifd }"
}
