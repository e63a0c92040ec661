#!/usr/bin/env bash
# THE recipe: source -> byte-identical, Amazon-Linux-compatible Lambda zip.
#   nix/build-zip.sh [--arch x86_64|arm64] [--glibc 2.26|2.34] [--out DIR]
# (defaults: x86_64, glibc 2.26, <checkout>/out). The zip's name says its architecture.
# Writes the zip, its .sha256, NAME.cdx.json (CycloneDX SBOM), NAME.intoto.json (SLSA
# provenance) and manifest.json. The provenance names the source commit: from
# EVENT_RECORDER_SOURCE_COMMIT (+ EVENT_RECORDER_SOURCE_CLEAN=true|false) if set, else
# from git when the checkout is a git work tree, else "unknown"; and the builder:
# EVENT_RECORDER_BUILDER=nix|non-nix (default non-nix).
# Needs cargo/rustc (rust-toolchain.toml's channel), python3, and zig, cargo-zigbuild and
# cargo-auditable at the versions in nix/pins.json; when those are missing/wrong and
# EVENT_RECORDER_NO_FETCH is unset, nix/fetch-tools.sh fetches them (sha256-verified).
# Nix-friendly: no network when the tools are on PATH and deps are vendored/offline
# (CARGO_NET_OFFLINE=true or EVENT_RECORDER_OFFLINE=1 adds --offline); honours CARGO_HOME
# and CARGO_TARGET_DIR. Extra path remaps (e.g. a vendor dir) via
# EVENT_RECORDER_EXTRA_REMAPS="FROM=TO FROM2=TO2".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
src=$(cd "$here/.." && pwd -P)
pins=$here/pins.json
die() { echo "build-zip: $*" >&2; exit 1; }
log() { echo "build-zip: $*" >&2; }
pin() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(" ".join(v) if isinstance(v,list) else v)' "$pins" "$1"; }

glibc=$(pin glibc.default)
arch=$(pin default_architecture)
out=$src/out
while [ $# -gt 0 ]; do
    case $1 in
        --arch) arch=${2:?}; shift 2 ;;
        --glibc) glibc=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
case " $(pin glibc.allowed) " in *" $glibc "*) ;; *) die "--glibc $glibc not in: $(pin glibc.allowed)" ;; esac
arches=$(python3 -c 'import json,sys
print(" ".join(k for k in json.load(open(sys.argv[1]))["architectures"] if not k.startswith("_")))' "$pins")
case " $arches " in *" $arch "*) ;; *) die "--arch $arch not in: $arches" ;; esac
target=$(pin "architectures.$arch.target")
zig_target=$(pin "architectures.$arch.zig_target")
zig_ver=$(pin zig.version)
czb_ver=$(pin cargo_zigbuild.version)
aud_ver=$(pin cargo_auditable.version)

# --- tools: use what is on PATH if it matches the pins, else fetch (unless forbidden)
# cargo-auditable has no --version: its installers (fetch-tools.sh, nix/crate-tool.nix)
# record the version they built in share/cargo-auditable/version beside bin/.
auditable_version() {
    local d
    d=$(dirname "$(command -v cargo-auditable)")
    cat "$d/../share/cargo-auditable/version" 2>/dev/null || echo "unknown (no $d/../share/cargo-auditable/version)"
}
tools_ok() {
    command -v zig >/dev/null && command -v cargo-zigbuild >/dev/null && command -v cargo-auditable >/dev/null &&
    [ "$(zig version)" = "$zig_ver" ] &&
    [ "$(cargo-zigbuild --version)" = "cargo-zigbuild $czb_ver" ] &&
    [ "$(auditable_version)" = "$aud_ver" ]
}
if ! tools_ok && [ -z "${EVENT_RECORDER_NO_FETCH:-}" ]; then
    PATH=$("$here/fetch-tools.sh" | paste -sd: -):$PATH
fi
command -v zig >/dev/null || die "zig not on PATH (EVENT_RECORDER_NO_FETCH is set)"
command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild not on PATH (EVENT_RECORDER_NO_FETCH is set)"
[ "$(zig version)" = "$zig_ver" ] || die "zig version mismatch: $(command -v zig) is $(zig version), pins.json wants $zig_ver"
[ "$(cargo-zigbuild --version)" = "cargo-zigbuild $czb_ver" ] ||
    die "cargo-zigbuild version mismatch: '$(cargo-zigbuild --version)', pins.json wants $czb_ver"
command -v cargo-auditable >/dev/null || die "cargo-auditable not on PATH (EVENT_RECORDER_NO_FETCH is set)"
[ "$(auditable_version)" = "$aud_ver" ] ||
    die "cargo-auditable version mismatch: $(auditable_version), pins.json wants $aud_ver"

# cargo-zigbuild looks for `python3 -m ziglang` before `zig` on PATH, once per process,
# and each C compile of OpenSSL is a new process. Naming the checked zig makes that zig
# the one used for linking and for C too (not a ziglang module some python has), and
# it skips the probes: measured 147 -> 15 ms per compile, about 1,100 compiles.
export CARGO_ZIGBUILD_ZIG_COMMAND=$(command -v zig) CARGO_ZIGBUILD_ZIG_VERSION=$zig_ver
unset CARGO_ZIGBUILD_ZIG_COMMAND_ARGS

cd "$src"   # so rustup (if any) honours rust-toolchain.toml
channel=$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["toolchain"]["channel"])' rust-toolchain.toml)
rustc_v=$(rustc --version); cargo_v=$(cargo --version)
case $rustc_v in "rustc $channel "*) ;; *) die "rustc mismatch: '$rustc_v', rust-toolchain.toml wants $channel" ;; esac
case $cargo_v in "cargo $channel "*) ;; *) die "cargo mismatch: '$cargo_v', rust-toolchain.toml wants $channel" ;; esac
# the target's standard library (listed in rust-toolchain.toml; an older rustup may not
# have added it to an already installed toolchain)
if ! [ -d "$(rustc --print target-libdir --target "$target")" ]; then
    command -v rustup >/dev/null || die "no standard library for $target in $(rustc --print sysroot)"
    log "rustup target add $target"
    rustup target add "$target" >&2
fi

# --- environment: drop ambient inputs that would change the bytes
for v in $(awk 'BEGIN { for (k in ENVIRON) print k }'); do
    case $v in
        CARGO_PROFILE_*|CARGO_BUILD_RUSTFLAGS|CARGO_BUILD_TARGET|CARGO_ENCODED_RUSTFLAGS|RUSTC_WRAPPER|RUSTC_WORKSPACE_WRAPPER|\
        CFLAGS*|CXXFLAGS*|CPPFLAGS*|LDFLAGS*|TARGET_CFLAGS|TARGET_CXXFLAGS|\
        CC_*|CXX_*|OPENSSL_*|*_OPENSSL_*|SOURCE_DATE_EPOCH|ZIG_LIB_DIR|ZIG_LIBC) unset "$v" ;;
    esac
done
export TZ=UTC LC_ALL=C
umask 022
export CARGO_HOME=$(mkdir -p "${CARGO_HOME:-$HOME/.cargo}" && cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
export CARGO_TARGET_DIR=$(mkdir -p "${CARGO_TARGET_DIR:-$src/target}" && cd "${CARGO_TARGET_DIR:-$src/target}" && pwd -P)
export SOURCE_DATE_EPOCH=${EVENT_RECORDER_SOURCE_DATE_EPOCH:-$(pin source_date_epoch.value)}
# zig/cargo-zigbuild caches default to ~/.cache; use the target dir when HOME is
# unwritable (Nix sandbox). Cache paths were measured not to reach the binary.
if ! [ -w "${XDG_CACHE_HOME:-${HOME:-/nonexistent}}" ] 2>/dev/null; then
    export ZIG_GLOBAL_CACHE_DIR=${ZIG_GLOBAL_CACHE_DIR:-$CARGO_TARGET_DIR/zig-cache}
    export CARGO_ZIGBUILD_CACHE_DIR=${CARGO_ZIGBUILD_CACHE_DIR:-$CARGO_TARGET_DIR/zigbuild-cache}
fi

# Rust: panic locations / tracing call sites embed source paths. Map every root they can
# come from to a fixed name; longest prefix last (rustc applies the last matching remap).
sysroot=$(rustc --print sysroot)
remaps=("$CARGO_HOME=/cargo" "$src=/build" "$sysroot=/rustc-sysroot" ${EVENT_RECORDER_EXTRA_REMAPS:-})
rustflags=$(printf '%s\n' "${remaps[@]}" | awk -F= '{print length($1) "\t" $0}' | sort -n | cut -f2- |
    sed 's/^/--remap-path-prefix=/' | paste -sd' ' -)
export RUSTFLAGS=$rustflags

# C: OpenSSL is compiled by a wrapper selected by NAME (see nix/cc/event-recorder-zigcc)
ccbin=$CARGO_TARGET_DIR/event-recorder-cc
mkdir -p "$ccbin"
ln -sfn "$here/cc/event-recorder-zigcc" "$ccbin/event-recorder-zigcc-$zig_target.$glibc"
ln -sfn "$here/cc/event-recorder-zigcc" "$ccbin/event-recorder-zigcxx-$zig_target.$glibc"
export PATH=$ccbin:$PATH
tvar=${target//-/_}
export "CC_$tvar=event-recorder-zigcc-$zig_target.$glibc" "CXX_$tvar=event-recorder-zigcxx-$zig_target.$glibc"
export OPENSSL_CONFIG_DIR=$(pin openssl.openssldir)       # openssl-src --openssldir
export EVENT_RECORDER_ENGINESDIR=$(pin openssl.enginesdir) EVENT_RECORDER_MODULESDIR=$(pin openssl.modulesdir)

offline=()
[ -n "${EVENT_RECORDER_OFFLINE:-}" ] && offline=(--offline)
features=vendored-openssl
# cargo-auditable as the rustc wrapper of the workspace crates: linking bootstrap, it adds
# the section .dep-v0, the dependency list (from `cargo metadata` for this target and
# these features; no paths). Set here as `cargo auditable` would set it, but by NAME:
# cargo hashes the workspace wrapper's path into the -C metadata of workspace crates, and
# so into their symbols and the binary's layout, and takes a name without a slash as is
# (PATH finds it: the pinned one, checked above). `cargo auditable` itself would put its
# absolute path there, and the zip would depend on where the tool is installed.
export RUSTC_WORKSPACE_WRAPPER=cargo-auditable
# what `cargo auditable` passes its wrapper: the flags it repeats to `cargo metadata`
CARGO_AUDITABLE_ORIG_ARGS=$(printf '{"offline":%s,"locked":true,"frozen":false,"config":[]}' \
    "$([ ${#offline[@]} -gt 0 ] && echo true || echo false)")
export CARGO_AUDITABLE_ORIG_ARGS
log "cargo zigbuild --target $target.$glibc through cargo-auditable (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, target dir $CARGO_TARGET_DIR)"
cargo zigbuild --release --locked ${offline[@]+"${offline[@]}"} \
    -p event-recorder --bin bootstrap --features "$features" --target "$target.$glibc"
unset RUSTC_WORKSPACE_WRAPPER CARGO_AUDITABLE_ORIG_ARGS
bin=$CARGO_TARGET_DIR/$target/release/bootstrap
# The zip writer (nix/zip-writer), for this host, by the same toolchain and Cargo.lock:
# its deflate is pure Rust, so the zip's bytes do not depend on the host's zlib.
log "cargo build -p event-recorder-zip (host)"
cargo build --release --locked ${offline[@]+"${offline[@]}"} -p event-recorder-zip
zipper=$CARGO_TARGET_DIR/release/event-recorder-zip

# --- audit gate, then stage everything and publish only on success
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
stage=$(mktemp -d "$out/.stage-XXXXXX")
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/bootstrap"
python3 "$here/audit.py" --arch "$arch" --floor "$glibc" --json "$stage/audit.json" \
    --forbid "$src" --forbid "$CARGO_HOME" --forbid "$CARGO_TARGET_DIR" --forbid "${HOME:-/}" \
    --forbid "$sysroot" --forbid "$(dirname "$(command -v zig)")" \
    --forbid "$(dirname "$(command -v cargo-zigbuild)")" --forbid "$(dirname "$(command -v cargo-auditable)")" \
    --dep-list "$stage/dep-v0.json" --inflate "'$zipper' --inflate-zlib" "$stage/bootstrap" ||
    die "audit gate failed: no zip written"
zipname=$(pin "architectures.$arch.zip_name")
level=$(pin zip.deflate_level)
"$zipper" "$stage/bootstrap" "$stage/$zipname" "$(pin zip.entry)" --level "$level" >/dev/null

# --- SBOM: the crates linked into bootstrap (cargo's resolver for this target and these
# features), checked against the .dep-v0 list the audit gate just read out of it
stem=${zipname%.zip}
cargo metadata --format-version 1 --locked ${offline[@]+"${offline[@]}"} \
    --filter-platform "$target" --features "$features" >"$stage/metadata.json"
cargo tree --locked ${offline[@]+"${offline[@]}"} -p event-recorder -e normal,no-proc-macro \
    --target "$target" --features "$features" --prefix none -f '{p}' >"$stage/tree.txt"
ossl_ver=$(awk '/^name = "openssl-src"$/ { getline; gsub(/"/, "", $3); sub(/.*\+/, "", $3); print $3 }' Cargo.lock)
python3 "$here/sbom.py" --metadata "$stage/metadata.json" --tree "$stage/tree.txt" --lock Cargo.lock \
    --dep-list "$stage/dep-v0.json" --bootstrap "$stage/bootstrap" --target "$target" \
    --openssl-version "$ossl_ver" --tool "rustc=$rustc_v" --tool "cargo=$cargo_v" --tool "zig=$zig_ver" \
    --tool "cargo-zigbuild=$czb_ver" --tool "cargo-auditable=$aud_ver" --out "$stage/$stem.cdx.json" >&2 ||
    die "SBOM check failed: no zip written"
# The manifest records only what the pins decide (rust-toolchain.toml, pins.json,
# Cargo.lock) and what was built: no host paths, names, times or library versions.
python3 - "$stage" "$zipname" <<EOF
import base64, hashlib, json, re, sys
stage, zipname = sys.argv[1], sys.argv[2]
digest = lambda p: hashlib.sha256(open(p, "rb").read()).digest()
sha = lambda p: digest(p).hex()
lock = open("Cargo.lock").read()
locked = lambda name: re.search(r'name = "%s"\nversion = "([^"]+)"' % name, lock).group(1)
ossl = locked("openssl-src")
audit = json.load(open(f"{stage}/audit.json"))
rustsec = json.load(open("nix/advisories/rustsec-advisory-db.json"))
# sha256sum's format, written here so the recipe needs no GNU coreutils (macOS hosts)
open(f"{stage}/{zipname}.sha256", "w").write(f"{sha(f'{stage}/{zipname}')}  {zipname}\n")
json.dump({
    "zip": zipname, "zip_sha256": sha(f"{stage}/{zipname}"),
    # the form Lambda reports as CodeSha256 (GetFunction, UpdateFunctionCode)
    "zip_sha256_base64": base64.b64encode(digest(f"{stage}/{zipname}")).decode(),
    "zip_size": len(open(f"{stage}/{zipname}", "rb").read()),
    "bootstrap_sha256": sha(f"{stage}/bootstrap"), "bootstrap_size": audit["size"],
    "architecture": "$arch", "target": "$target", "glibc_floor": "$glibc",
    "highest_glibc": audit["highest_glibc"], "highest_glibc_non_weak": audit["highest_glibc_non_weak"],
    "needed": audit["needed"],
    "openssl": {"version": ossl.split("+")[-1], "openssl_src_crate": ossl,
                "openssldir": "$OPENSSL_CONFIG_DIR", "linkage": "static (vendored)"},
    "cargo_lock_sha256": sha("Cargo.lock"),
    "sbom": {"file": "$stem.cdx.json", "sha256": sha(f"{stage}/$stem.cdx.json"), "format": "CycloneDX 1.5",
             "components": len(json.load(open(f"{stage}/$stem.cdx.json"))["components"])},
    "dependency_list": {"section": ".dep-v0", "packages": audit["dep_v0"]["packages"],
                        "bytes": audit["dep_v0"]["bytes"]},
    # the advisory data the supply-chain gate (nix/checks/supply-chain.sh) judged this tree by
    "advisories": {"rustsec": {k: rustsec[k] for k in ("commit", "date")}},
    "source_date_epoch": int("$SOURCE_DATE_EPOCH"),
    "toolchain": {"rustc": "$rustc_v", "cargo": "$cargo_v", "zig": "$zig_ver",
                  "cargo-zigbuild": "$czb_ver", "cargo-auditable": "$aud_ver"},
    "zip_writer": {"crate": "event-recorder-zip", "deflate": "miniz_oxide " + locked("miniz_oxide"),
                   "level": $level},
}, open(f"{stage}/manifest.json", "w"), indent=2)
EOF
# --- provenance: which commit, pins and builder made this zip
if [ -n "${EVENT_RECORDER_SOURCE_COMMIT:-}" ]; then
    commit=$EVENT_RECORDER_SOURCE_COMMIT clean=${EVENT_RECORDER_SOURCE_CLEAN:-unknown}
elif command -v git >/dev/null && [ "$(git -C "$src" rev-parse --show-toplevel 2>/dev/null)" = "$src" ]; then
    commit=$(git -C "$src" rev-parse HEAD)
    if [ -z "$(git -C "$src" status --porcelain)" ]; then clean=true; else clean=false; fi
else
    commit=unknown clean=unknown
fi
python3 "$here/provenance.py" --zip "$stage/$zipname" --manifest "$stage/manifest.json" \
    --sbom "$stage/$stem.cdx.json" --src "$src" --source-commit "$commit" --source-clean "$clean" \
    --builder "${EVENT_RECORDER_BUILDER:-non-nix}" --out "$stage/$stem.intoto.json"
for f in "$zipname" "$zipname.sha256" "$stem.cdx.json" "$stem.intoto.json" manifest.json; do
    mv -f "$stage/$f" "$out/$f"
done
log "wrote $out/$zipname"
cat "$out/$zipname.sha256"
