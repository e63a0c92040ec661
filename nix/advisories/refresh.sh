#!/usr/bin/env bash
# Refreshes the committed RustSec advisory snapshot that nix/checks/supply-chain.sh
# checks the dependency graph against (cargo-deny's `advisories` check, offline).
#   nix/advisories/refresh.sh PATH [REV]
# PATH: a git checkout or bare clone of https://github.com/rustsec/advisory-db, as
# fresh as you can get it; REV: the commit to take (default HEAD, which in a clone is
# the `main` branch). Needs git, python3 >= 3.11 and gzip.
#
# Writes, next to this script:
#   rustsec-advisory-db.tar.gz  the `crates/` tree of REV (the only part cargo-deny
#                               reads), packed deterministically: names sorted, every
#                               entry owned by 0:0 with no user/group names, files 0644,
#                               directories 0755, mtime = the commit's time, ustar
#                               format, then `gzip -n -9` (no name, no timestamp).
#                               The same REV gives the same bytes (with the same gzip).
#   rustsec-advisory-db.json    commit, date (the commit's UTC date), commit_time (its
#                               Unix time), sha256 of the tarball, the advisory count
#                               and max_age_days (kept from the previous file).
# Then run nix/checks/supply-chain.sh and commit both files together: the gate fails
# when the tarball's sha256 or advisory count disagrees with the JSON.
#
# Fetching is up to you (this script never touches the network), e.g.
#   git clone --bare https://github.com/rustsec/advisory-db /tmp/advisory-db.git
#   nix/advisories/refresh.sh /tmp/advisory-db.git
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 PATH-TO-ADVISORY-DB-GIT [REV]" >&2; exit 2; }
src=$1
rev=${2:-HEAD}

commit=$(git -C "$src" rev-parse --verify --quiet "$rev^{commit}") ||
    { echo "refresh: $rev is not a commit in $src" >&2; exit 1; }
commit_time=$(git -C "$src" show -s --format=%ct "$commit")
git -C "$src" cat-file -e "$commit:crates" 2>/dev/null ||
    { echo "refresh: $commit has no crates/ tree; is $src the advisory-db?" >&2; exit 1; }

tmp=$(mktemp -d /tmp/advisory-refresh-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

git -C "$src" archive --format=tar "$commit" crates >"$tmp/archive.tar"
count=$(python3 - "$tmp/archive.tar" "$tmp/snapshot.tar" "$commit_time" <<'PY'
import io, sys, tarfile

src, dst, mtime = sys.argv[1], sys.argv[2], int(sys.argv[3])
files, dirs = {}, set()
with tarfile.open(src) as t:
    for m in t.getmembers():
        if m.isfile():
            if not m.name.startswith("crates/"):
                continue
            files[m.name] = t.extractfile(m).read()
            parts = m.name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        elif not m.isdir():
            sys.exit(f"refresh: unexpected entry {m.name!r} (type {m.type!r}) in crates/")

def info(name, kind, size=0):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.mtime = kind, size, mtime
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti

with open(dst, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
    for name in sorted(dirs | set(files)):
        if name in files:
            t.addfile(info(name, tarfile.REGTYPE, len(files[name])), io.BytesIO(files[name]))
        else:
            t.addfile(info(name, tarfile.DIRTYPE))
print(sum(1 for n in files if n.endswith(".md")))
PY
)
gzip -n -9 -c "$tmp/snapshot.tar" >"$tmp/snapshot.tar.gz"

python3 - "$here" "$tmp/snapshot.tar.gz" "$commit" "$commit_time" "$count" <<'PY'
import datetime, hashlib, json, os, pathlib, shutil, sys

here, tarball = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
commit, commit_time, count = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
meta_path = here / "rustsec-advisory-db.json"
old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
meta = {
    "_comment": "RustSec advisory database snapshot for the offline advisories check "
                "(nix/checks/supply-chain.sh). Written by nix/advisories/refresh.sh; "
                "date is the commit's UTC date and the snapshot's age is counted from it.",
    "source": "https://github.com/rustsec/advisory-db",
    "commit": commit,
    "date": datetime.datetime.fromtimestamp(commit_time, datetime.timezone.utc).strftime("%Y-%m-%d"),
    "commit_time": commit_time,
    "tarball": "rustsec-advisory-db.tar.gz",
    "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
    "advisories": count,
    "max_age_days": old.get("max_age_days", 180),
    "_comment_max_age_days": old.get("_comment_max_age_days", ""),
}
if not meta["_comment_max_age_days"]:
    del meta["_comment_max_age_days"]
shutil.copyfile(tarball, here / "rustsec-advisory-db.tar.gz")
tmp = meta_path.with_suffix(".json.tmp")
tmp.write_text(json.dumps(meta, indent=2) + "\n")
os.replace(tmp, meta_path)
print(f"refresh: advisory-db {commit} ({meta['date']}): {count} advisories, "
      f"{tarball.stat().st_size} bytes, sha256 {meta['sha256']}")
PY
