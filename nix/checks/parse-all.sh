#!/usr/bin/env bash
# Nix checks that need no nixpkgs and no network (GitHub/cache.nixos.org are unreachable
# from CI), run on a snapshot of the working tree (tracked + untracked, not ignored) so
# they do not depend on the git index:
#   1. `nix-instantiate --parse` on every .nix file;
#   2. flake.lock is complete: every input locked to a rev, narHash, lastModified;
#   3. `nix flake metadata` lists exactly flake.lock's inputs, offline;
#   4. `nix flake lock --no-update-lock-file` exits 0, offline (the lock matches flake.nix);
#   5. controls, so the checks above can fail: a .nix syntax error must fail (1), and a
#      flake.nix whose input no longer matches flake.lock must fail (4).
# Installs nothing, except Debian's nix-bin when no nix is found.
#   nix/checks/parse-all.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
log() { echo "parse-all: $*"; }
die() { echo "parse-all: FAIL: $*" >&2; exit 1; }

if ! command -v nix >/dev/null || ! command -v nix-instantiate >/dev/null; then
    log "installing Debian's nix-bin"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin >/dev/null
    fi
fi
nixc() { nix --offline --extra-experimental-features 'nix-command flakes' "$@"; }
log "$(nix --version)"

tmp=$(mktemp -d /tmp/nix-parse-all-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=snapshot.sh
. "$here/snapshot.sh"
tree=$tmp/tree
snapshot "$tree"

# ---- 1. parse
mapfile -t nixfiles < <(cd "$tree" && find . -name '*.nix' -not -path './target/*' | sort)
[ "${#nixfiles[@]}" -gt 0 ] || die "no .nix files found"
for f in "${nixfiles[@]}"; do
    nix-instantiate --parse "$tree/$f" >/dev/null || die "nix-instantiate --parse ${f#./}"
done
log "parsed ${#nixfiles[@]} .nix files: ${nixfiles[*]#./}"

# ---- 2. the lock file is complete
python3 - "$tree/flake.lock" <<'PY' || die "flake.lock is incomplete"
import json, re, sys
lock = json.load(open(sys.argv[1]))
assert lock.get("version") == 7, f"lock version {lock.get('version')}"
nodes = lock["nodes"]
bad = []
for name, node in nodes.items():
    if name == lock["root"]:
        continue
    l = node.get("locked", {})
    if not re.fullmatch(r"[0-9a-f]{40}", l.get("rev", "")): bad.append(f"{name}: rev")
    if not re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", l.get("narHash", "")): bad.append(f"{name}: narHash")
    if not isinstance(l.get("lastModified"), int): bad.append(f"{name}: lastModified")
    print(f"parse-all: lock {name}: {l.get('owner')}/{l.get('repo')} {l.get('rev')} {l.get('narHash')}")
if bad:
    sys.exit("parse-all: incomplete lock entries: " + ", ".join(bad))
PY

# ---- 3. metadata lists the locked inputs, offline
meta=$(nixc flake metadata --json "path:$tree") || die "nix flake metadata (offline)"
python3 - "$tree/flake.lock" "$meta" <<'PY' || die "flake metadata does not list flake.lock's inputs"
import json, sys
lock = json.load(open(sys.argv[1])); meta = json.loads(sys.argv[2])
want = {k: v["locked"]["rev"] for k, v in lock["nodes"].items() if k != lock["root"]}
got = {k: v["locked"]["rev"] for k, v in meta["locks"]["nodes"].items() if "locked" in v}
assert got == want, f"metadata {got} != lock {want}"
root = meta["locks"]["nodes"][meta["locks"]["root"]]["inputs"]
print("parse-all: flake metadata inputs:", ", ".join(f"{k} -> {want[v]}" for k, v in sorted(root.items())))
PY

# ---- 4. the lock matches flake.nix (a mismatch makes Nix try to fetch, which fails offline)
nixc flake lock --no-update-lock-file "path:$tree" || die "nix flake lock --no-update-lock-file: flake.lock does not match flake.nix"
log "flake lock --no-update-lock-file: ok (flake.lock matches flake.nix)"

# ---- 5. controls
ctl=$tmp/control-parse
snapshot "$ctl"
printf '{ broken = ; }\n' > "$ctl/nix/zz-control.nix"
if nix-instantiate --parse "$ctl/nix/zz-control.nix" >/dev/null 2>&1; then
    die "control: a syntax error was not detected by nix-instantiate --parse"
fi
ctl=$tmp/control-lock
snapshot "$ctl"
python3 - "$ctl/flake.nix" <<'PY'
import re, sys
p = sys.argv[1]; s = open(p).read()
s2 = re.sub(r'(crane\.url = "github:ipetkov/crane)[^"]*"', r'\1/control-mismatch"', s, count=1)
assert s2 != s, "control: crane.url not found in flake.nix"
open(p, "w").write(s2)
PY
if nixc flake lock --no-update-lock-file "path:$ctl" >/dev/null 2>&1; then
    die "control: a flake.nix input that differs from flake.lock was not detected"
fi
log "controls: syntax error and lock mismatch both detected"
log "ok"
