#!/usr/bin/env bash
# Recompute flake.lock's GitHub entries from local git copies of the inputs' repositories
# (GitHub itself need not be reachable). Not part of CI: it needs those clones.
#   nix/checks/lock-hashes.sh CRANE_GIT_DIR RUST_OVERLAY_GIT_DIR
# For crane and rust-overlay: narHash = NAR hash of `git archive <rev>` unpacked,
# lastModified = commit time (the rule Nix's GitHub fetcher follows). For nixpkgs (too big
# to clone here): the entry must equal the `nixpkgs-latest-release` entry of crane's own
# test/flake.lock at the crane commit named in NIXPKGS_SOURCE below.
set -euo pipefail
NIXPKGS_SOURCE=2c71e194474d13de031d729b729c968ddbe3507f   # crane master, "Update internal flake.lock (#1076)"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
lock=$here/../../flake.lock
crane=${1:?crane git dir}; overlay=${2:?rust-overlay git dir}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][sys.argv[2]]["locked"][sys.argv[3]])' "$lock" "$1" "$2"; }
fail=0
for pair in "crane=$crane" "rust-overlay=$overlay"; do
    node=${pair%%=*} git=${pair#*=}
    rev=$(field "$node" rev)
    mkdir "$tmp/$node"
    git -C "$git" archive "$rev" | tar -x -C "$tmp/$node"
    nar=$(nix --extra-experimental-features nix-command hash path "$tmp/$node")
    lm=$(git -C "$git" show -s --format=%ct "$rev")
    if [ "$nar" = "$(field "$node" narHash)" ] && [ "$lm" = "$(field "$node" lastModified)" ]; then
        echo "lock-hashes: $node $rev narHash $nar lastModified $lm: ok"
    else
        echo "lock-hashes: $node $rev: computed $nar / $lm, flake.lock has $(field "$node" narHash) / $(field "$node" lastModified)"
        fail=1
    fi
done
git -C "$crane" show "$NIXPKGS_SOURCE:test/flake.lock" > "$tmp/crane-test.lock"
python3 - "$lock" "$tmp/crane-test.lock" <<'PY' || fail=1
import json, sys
ours = json.load(open(sys.argv[1]))["nodes"]["nixpkgs"]
theirs = json.load(open(sys.argv[2]))["nodes"]["nixpkgs-latest-release"]
assert ours == theirs, f"flake.lock nixpkgs {ours} != crane test lock {theirs}"
print(f"lock-hashes: nixpkgs {ours['original']['ref']} {ours['locked']['rev']} = crane test/flake.lock: ok")
PY
exit $fail
