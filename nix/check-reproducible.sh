#!/usr/bin/env bash
# Reproducibility check: build the zip twice from scratch and require identical sha256.
#   nix/check-reproducible.sh [--glibc 2.26|2.34]
# Build A: this user, checkout copy at $W/a/src, CARGO_HOME = yours, TZ=UTC, LANG=C.UTF-8, umask 022.
# Build B: checkout copy at $W/b/second-checkout/event-recorder, its own CARGO_HOME (registry
#   index+cache seeded by copy, so sources unpack to a new path), TZ=Pacific/Kiritimati,
#   LANG=de_DE.UTF-8, umask 077, and, when run as root, user nobody with its own HOME.
#   If the tools cache / Rust toolchain are not readable by nobody (e.g. under /root,
#   mode 0700), B gets private copies of them: another variation, not a shortcut.
#   B's Python cannot import zlib: the recipe must not need the host's deflate.
# The zips, SBOMs, provenance statements and manifest.json files must be byte-identical.
# Both builds are told this checkout's commit and whether its tree is clean (the copies
# have no .git), as the provenance records them.
# Both builds copy the working tree (tracked + untracked, not ignored), so it works
# before commit. $W = ${EVENT_RECORDER_REPRO_DIR:-mktemp}; kept on failure (KEEP=1: always).
# On mismatch: diffoscope if present, else a diff of `strings` of the two binaries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
src=$(cd "$here/.." && pwd -P)
args=("$@")
W=${EVENT_RECORDER_REPRO_DIR:-$(mktemp -d /tmp/er-repro-XXXXXX)}
mkdir -p "$W/a" "$W/b/second-checkout" "$W/b/home"
chmod 755 "$W"
log() { echo "check-reproducible: $*" >&2; }

# one snapshot of the tree (others may be editing), copied to both checkouts
log "snapshot of $src -> $W/a/src"
mkdir -p "$W/a/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z -co --exclude-standard |
        tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$W/a/src"
else    # not a git checkout (e.g. unpacked tarball): everything but build outputs
    tar -C "$src" --exclude=./target --exclude=./out -cf - . | tar -xf - -C "$W/a/src"
fi
cp -a "$W/a/src" "$W/b/second-checkout/event-recorder"

# the source as the provenance states it, from this checkout (the copies have no .git)
if [ -z "${EVENT_RECORDER_SOURCE_COMMIT:-}" ] && git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
    EVENT_RECORDER_SOURCE_COMMIT=$(git -C "$src" rev-parse HEAD)
    if [ -z "$(git -C "$src" status --porcelain)" ]; then EVENT_RECORDER_SOURCE_CLEAN=true; else EVENT_RECORDER_SOURCE_CLEAN=false; fi
fi
export EVENT_RECORDER_SOURCE_COMMIT=${EVENT_RECORDER_SOURCE_COMMIT:-unknown}
export EVENT_RECORDER_SOURCE_CLEAN=${EVENT_RECORDER_SOURCE_CLEAN:-unknown}

# tools for both: fetch once (fast when cached)
tooldirs=$("$here/fetch-tools.sh" | paste -sd: -)
sysroot=$(cd "$src" && rustc --print sysroot)

# ---- build A
log "build A"
start=$(date +%s)
(cd "$W/a/src" && umask 022 && env TZ=UTC LANG=C.UTF-8 LC_ALL= PATH="$tooldirs:$PATH" \
    CARGO_TARGET_DIR="$W/a/target" nix/build-zip.sh ${args[@]+"${args[@]}"} --out "$W/a/out")
log "build A took $(( $(date +%s) - start ))s"

# ---- build B
runas=() bpath="$tooldirs:$sysroot/bin:/usr/local/bin:/usr/bin:/bin"
if [ "$(id -u)" = 0 ]; then
    user=nobody group=$(id -gn nobody)
    runas=(setpriv --reuid="$user" --regid="$group" --clear-groups --inh-caps=-all)
    readable() { "${runas[@]}" test -r "$1" -a -x "$1"; }
    unreadable=
    IFS=: read -ra tdirs <<<"$tooldirs"
    for d in "${tdirs[@]}"; do readable "$d" || unreadable=1; done
    if [ -n "$unreadable" ]; then
        log "tools not readable by $user: copying them for build B"
        mkdir -p "$W/b/tools"
        bpath=
        for d in "${tdirs[@]}"; do   # each is <tool dir>/<ziglang|bin>
            cp -a "$(dirname "$d")" "$W/b/tools/"
            bpath=$bpath$W/b/tools/$(basename "$(dirname "$d")")/$(basename "$d"):
        done
        bpath="$bpath$sysroot/bin:/usr/local/bin:/usr/bin:/bin"
    fi
    if ! readable "$sysroot/bin/rustc"; then
        # rustup's home is private: give B a copy of the toolchain's compiler parts
        # (cargo/rustc find their sysroot relative to their own path; docs/src skipped)
        log "Rust toolchain not readable by $user: copying $sysroot (bin, lib, libexec)"
        mkdir -p "$W/b/rust"
        cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$W/b/rust/"
        bpath=${bpath/"$sysroot/bin"/"$W/b/rust/bin"}
    fi
fi
# separate CARGO_HOME; seed the downloaded .crate files + index to avoid re-downloading
chome=${CARGO_HOME:-$HOME/.cargo}
mkdir -p "$W/b/cargo-home/registry"
for d in index cache; do
    [ -d "$chome/registry/$d" ] && cp -a "$chome/registry/$d" "$W/b/cargo-home/registry/"
done
# a Python without zlib for B (a sitecustomize that blocks the module)
mkdir -p "$W/b/python-no-zlib"
cat > "$W/b/python-no-zlib/sitecustomize.py" <<'PY'
import sys
sys.modules["zlib"] = None  # `import zlib` now raises ImportError
PY
[ ${#runas[@]} -gt 0 ] && chown -R "$user:$group" "$W/b"
log "build B${runas:+ as $user}"
start=$(date +%s)
env -i HOME="$W/b/home" PATH="$bpath" TZ=Pacific/Kiritimati LANG=de_DE.UTF-8 \
    PYTHONPATH="$W/b/python-no-zlib" \
    CARGO_HOME="$W/b/cargo-home" CARGO_TARGET_DIR="$W/b/target-two" \
    EVENT_RECORDER_SOURCE_COMMIT="$EVENT_RECORDER_SOURCE_COMMIT" EVENT_RECORDER_SOURCE_CLEAN="$EVENT_RECORDER_SOURCE_CLEAN" \
    ${runas[@]+"${runas[@]}"} bash -c 'umask 077 && cd "$1" && shift && nix/build-zip.sh "$@"' _ \
    "$W/b/second-checkout/event-recorder" ${args[@]+"${args[@]}"} --out "$W/b/out"
log "build B took $(( $(date +%s) - start ))s"

ha=$(cut -d' ' -f1 "$W"/a/out/*.zip.sha256)
hb=$(cut -d' ' -f1 "$W"/b/out/*.zip.sha256)
echo "A $ha  ($W/a/src)"
echo "B $hb  ($W/b/second-checkout/event-recorder)"
others=()   # everything beside the zip: SBOM, provenance, manifest
for f in "$W"/a/out/*.cdx.json "$W"/a/out/*.intoto.json "$W"/a/out/manifest.json; do
    f=${f##*/}
    [ -f "$W/b/out/$f" ] || { echo "build B wrote no $f" >&2; exit 1; }
    cmp -s "$W/a/out/$f" "$W/b/out/$f" || others+=("$f")
done
if [ "$ha" = "$hb" ] && [ ${#others[@]} -eq 0 ]; then
    echo "reproducible: identical zip, SBOM, provenance and manifest.json"
    (cd "$W/a/out" && for f in *; do printf '%s  %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"; done)
    [ -n "${KEEP:-}" ] || rm -rf "$W"
    exit 0
fi
echo "NOT reproducible (kept $W)" >&2
for f in ${others[@]+"${others[@]}"}; do diff "$W/a/out/$f" "$W/b/out/$f" >&2 || true; done
[ "$ha" = "$hb" ] && exit 1   # only the files beside the zip differ
mkdir -p "$W/diff/a" "$W/diff/b"
(cd "$W/diff/a" && python3 -m zipfile -e "$W"/a/out/*.zip .)
(cd "$W/diff/b" && python3 -m zipfile -e "$W"/b/out/*.zip .)
if command -v diffoscope >/dev/null; then
    diffoscope "$W/diff/a/bootstrap" "$W/diff/b/bootstrap" || true
else
    diff <(strings -a -n 6 "$W/diff/a/bootstrap") <(strings -a -n 6 "$W/diff/b/bootstrap") | head -100 || true
    cmp -l "$W/diff/a/bootstrap" "$W/diff/b/bootstrap" | wc -l | sed 's/$/ differing bytes/'
fi
exit 1
