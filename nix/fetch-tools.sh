#!/usr/bin/env bash
# Obtain the pinned zig and cargo-zigbuild (non-Nix path) into a cache dir this
# script owns, verifying sha256 against nix/pins.json. Idempotent: fast when cached.
# stdout: the directories to prepend to PATH, one per line. Logs go to stderr.
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

# --- cargo-zigbuild: build from the sha256-verified .crate with its own Cargo.lock
czb_ver=$(pin cargo_zigbuild.version)
czb_dir=$tools/cargo-zigbuild-$czb_ver
if [ ! -x "$czb_dir/bin/cargo-zigbuild" ]; then
    crate=$tools/cargo-zigbuild-$czb_ver.crate
    download "$(pin cargo_zigbuild.crate_url)" "$crate" "$(pin cargo_zigbuild.crate_sha256)"
    tmp=$(mktemp -d "$tools/.czb-XXXXXX")
    tar -xzf "$crate" -C "$tmp"
    log "building cargo-zigbuild $czb_ver (one-off, a few minutes)"
    # cd away from any rust-toolchain.toml; private target dir; --locked = its Cargo.lock
    (cd "$tmp" && cargo install --locked --path "$tmp/cargo-zigbuild-$czb_ver" \
        --root "$tmp/root" --target-dir "$tmp/target" >&2)
    chmod -R a+rX "$tmp/root"
    publish "$tmp/root" "$czb_dir"
    rm -rf "$tmp" "$crate"
fi

echo "$zig_dir/ziglang"
echo "$czb_dir/bin"
