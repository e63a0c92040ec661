#!/usr/bin/env bash
# Obtain the pinned zig, cargo-zigbuild and cargo-auditable (non-Nix path) into a cache
# dir this script owns, verifying sha256 against nix/pins.json. Idempotent: fast when
# cached. stdout: the directories to prepend to PATH, one per line. Logs go to stderr.
#   nix/fetch-tools.sh              the zip recipe's tools
#   nix/fetch-tools.sh --tool NAME  one pinned crate tool (e.g. cargo-deny, key cargo_deny)
# Needs: bash, python3, cargo (rustup), curl or python3 for downloads, tar.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pins=$here/pins.json
pin() { python3 - "$pins" "$1" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k]
print(v)
EOF
}
log() { echo "fetch-tools: $*" >&2; }
only=
case ${1:-} in
    --tool) only=${2:?--tool NAME}; python3 -c 'import json,sys; sys.exit(sys.argv[2] not in json.load(open(sys.argv[1])))' "$pins" "${only//-/_}" ||
        { log "no crate tool ${only//-/_} in $pins"; exit 1; } ;;
    "") ;;
    *) log "unknown argument $1"; exit 1 ;;
esac

tools=${EVENT_RECORDER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/event-recorder-tools}
mkdir -p "$tools"

sha256_of() { python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb"); [h.update(b) for b in iter(lambda: f.read(1<<20), b"")]; print(h.hexdigest())' "$1"; }

# download URL FILE SHA256: fetch to FILE.part, verify, then rename (never trust a partial file)
download() {
    local url=$1 out=$2 want=$3 got
    if [ -f "$out" ] && [ "$(sha256_of "$out")" = "$want" ]; then return 0; fi
    log "downloading $url"
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$out.part" "$url"
    else
        python3 -c 'import sys,urllib.request,shutil; shutil.copyfileobj(urllib.request.urlopen(sys.argv[1]), open(sys.argv[2],"wb"))' "$url" "$out.part"
    fi
    got=$(sha256_of "$out.part")
    if [ "$got" != "$want" ]; then
        rm -f "$out.part"
        log "sha256 mismatch for $url: got $got, pinned $want"; exit 1
    fi
    mv -f "$out.part" "$out"
}

# the host as Nix names systems (the keys of zig.wheels)
case "$(uname -m)" in
    x86_64|amd64) cpu=x86_64 ;;
    aarch64|arm64) cpu=aarch64 ;;
    *) cpu=$(uname -m) ;;
esac
case "$(uname -s)" in
    Linux) host=$cpu-linux ;;
    Darwin) host=$cpu-darwin ;;
    *) host=$cpu-$(uname -s) ;;
esac
case $host in
    x86_64-linux|aarch64-linux|x86_64-darwin|aarch64-darwin) ;;
    *) log "no zig wheel pinned for host $host"; exit 1 ;;
esac
# rename DIR into place unless another run got there first (then keep the winner);
# portable, unlike GNU mv -T
publish() { python3 -c 'import os,sys; os.rename(sys.argv[1], sys.argv[2])' "$1" "$2" 2>/dev/null || rm -rf "$1"; }

# --- zig: the ziglang wheel is a plain zip with ziglang/zig + ziglang/lib
zig_ver=$(pin zig.version)
zig_dir=$tools/zig-$zig_ver-$host
if [ ! -x "$zig_dir/ziglang/zig" ]; then
    whl=$tools/$(pin "zig.wheels.$host.filename")
    download "$(pin "zig.wheels.$host.url")" "$whl" "$(pin "zig.wheels.$host.sha256")"
    tmp=$(mktemp -d "$tools/.zig-XXXXXX")
    # zipfile drops the exec bit, so restore it from the stored unix mode
    python3 - "$whl" "$tmp" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for i in z.infolist():
        if not i.filename.startswith("ziglang/"):
            continue
        p = z.extract(i, sys.argv[2])
        mode = (i.external_attr >> 16) & 0o777
        if mode:
            os.chmod(p, mode)
os.chmod(os.path.join(sys.argv[2], "ziglang", "zig"), 0o755)
EOF
    chmod -R a+rX "$tmp"
    publish "$tmp" "$zig_dir"
    rm -f "$whl"
fi
got=$("$zig_dir/ziglang/zig" version)
[ "$got" = "$zig_ver" ] || { log "zig in $zig_dir reports $got, pinned $zig_ver"; exit 1; }

# --- crate tools (cargo-zigbuild, cargo-auditable, ...): each built once from its
# sha256-verified .crate with the crate's own Cargo.lock. Prints the bin dir.
# Each records the version it was built from in share/NAME/version (cargo-auditable
# has no --version; build-zip.sh reads that file).
crate_tool() {
    local name=$1 key=${1//-/_} ver dir crate tmp
    ver=$(pin "$key.version")
    dir=$tools/$name-$ver
    if [ ! -x "$dir/bin/$name" ]; then
        crate=$tools/$name-$ver.crate
        download "$(pin "$key.crate_url")" "$crate" "$(pin "$key.crate_sha256")"
        tmp=$(mktemp -d "$tools/.crate-XXXXXX")
        tar -xzf "$crate" -C "$tmp"
        log "building $name $ver (one-off, a minute or a few)"
        # cd away from any rust-toolchain.toml; private target dir; --locked = its Cargo.lock.
        # Without the crates' fat LTO and single codegen unit: what these tools write does
        # not depend on how they were optimised, and cargo-deny builds in half the time.
        (cd "$tmp" && CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
            cargo install --locked --path "$tmp/$name-$ver" \
            --root "$tmp/root" --target-dir "$tmp/target" >&2)
        mkdir -p "$tmp/root/share/$name"
        echo "$ver" >"$tmp/root/share/$name/version"
        rm -f "$tmp/root/.crates.toml" "$tmp/root/.crates2.json"
        chmod -R a+rX "$tmp/root"
        publish "$tmp/root" "$dir"
        rm -rf "$tmp" "$crate"
    elif [ ! -f "$dir/share/$name/version" ]; then
        # built by an earlier version of this script, into the directory named for $ver
        mkdir -p "$dir/share/$name" && echo "$ver" >"$dir/share/$name/version"
    fi
    echo "$dir/bin"
}

if [ -n "$only" ]; then
    crate_tool "$only"
    exit 0
fi
echo "$zig_dir/ziglang"
crate_tool cargo-zigbuild
crate_tool cargo-auditable
