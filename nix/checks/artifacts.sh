#!/usr/bin/env bash
# What nix/build-zip.sh wrote, checked from the outside with other tools than the ones
# that wrote it (binutils, Python's zlib, cargo tree):
#   nix/checks/artifacts.sh OUT_DIR [OUT_DIR...]
# For each directory (one architecture's zip, SBOM, provenance and manifest.json):
#  - `readelf -S` of the zip's bootstrap shows .dep-v0; objcopy extracts it and zlib
#    inflates it to cargo-auditable's JSON (no absolute path in it);
#  - the SBOM (CycloneDX 1.5) lists tokio-postgres, openssl-src and lambda_runtime at
#    their Cargo.lock versions, OpenSSL at openssl-src's version, and every crate it
#    lists is in .dep-v0 at the same version;
#  - nothing only a dev-dependency brings (cargo tree with dev edges, minus without) is
#    in the SBOM, and that set is not empty (proptest is a dev-dependency);
#  - manifest.json names the SBOM by its sha256; the provenance's subject is the zip's
#    sha256 and its byproducts are the SBOM's and the manifest's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [OUT_DIR...]" >&2; exit 2; }
for tool in readelf objcopy; do
    command -v "$tool" >/dev/null || { echo "artifacts: $tool not found (binutils)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/artifacts-XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0
for out in "$@"; do
    out=$(cd "$out" && pwd -P)
    target=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["target"])' "$out/manifest.json")
    zip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["zip"])' "$out/manifest.json")
    dir=$work/${zip%.zip}
    mkdir -p "$dir"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' "$out/$zip" "$dir"
    readelf -S --wide "$dir/bootstrap" >"$dir/sections.txt"
    grep -q ' \.dep-v0 ' "$dir/sections.txt" || { echo "artifacts: FAIL $zip: readelf -S shows no .dep-v0" >&2; fails=$((fails + 1)); continue; }
    objcopy --dump-section .dep-v0="$dir/dep-v0.zlib" "$dir/bootstrap" "$dir/scratch.o"
    # what cargo's resolver links, and what the dev-dependencies add to it
    (cd "$repo" && cargo tree --locked --offline -p event-recorder -e normal,build --target "$target" \
        --features vendored-openssl --prefix none -f '{p}') >"$dir/tree.txt"
    (cd "$repo" && cargo tree --locked --offline -p event-recorder -e normal,build,dev --target "$target" \
        --features vendored-openssl --prefix none -f '{p}') >"$dir/tree-dev.txt"
    if ! python3 - "$out" "$zip" "$dir" "$repo/Cargo.lock" <<'PY'; then fails=$((fails + 1)); fi
import hashlib, json, re, sys, tomllib, zlib
out, zipname, d, lock = sys.argv[1:]
stem = zipname[:-len(".zip")]
errors = []
sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
raw = zlib.decompress(open(f"{d}/dep-v0.zlib", "rb").read())
deps = json.loads(raw)
listed = {(p["name"], p["version"]) for p in deps["packages"]}
if re.search(rb'"/', raw):
    errors.append(".dep-v0 holds an absolute path")
sbom = json.load(open(f"{out}/{stem}.cdx.json"))
if (sbom.get("bomFormat"), sbom.get("specVersion")) != ("CycloneDX", "1.5"):
    errors.append("the SBOM is not CycloneDX 1.5")
comps = {(c["name"], c["version"]) for c in sbom["components"]}
locked = {}
for p in tomllib.load(open(lock, "rb"))["package"]:
    locked.setdefault(p["name"], set()).add(p["version"])
for name in ("tokio-postgres", "openssl-src", "lambda_runtime"):
    got = {v for n, v in comps if n == name}
    if not got or not got <= locked.get(name, set()):
        errors.append(f"the SBOM lists {name} at {sorted(got) or 'no version'}, Cargo.lock has {sorted(locked.get(name, []))}")
ossl = next(iter(locked["openssl-src"])).split("+")[-1]
if ("openssl", ossl) not in comps:
    errors.append(f"the SBOM has no OpenSSL {ossl} component")
for n, v in sorted(comps - {("openssl", ossl)} - listed):
    errors.append(f"the SBOM lists {n} {v}, which .dep-v0 does not")
tree = lambda f: {(m[1], m[2]) for m in re.finditer(r"(?m)^(\S+) v(\S+)", open(f).read())}
dev_only = tree(f"{d}/tree-dev.txt") - tree(f"{d}/tree.txt")
if not any(n == "proptest" for n, _ in dev_only):
    errors.append("cargo tree's dev-only set lacks proptest: the check below would prove nothing")
for n, v in sorted(comps & dev_only):
    errors.append(f"the SBOM lists {n} {v}, which only a dev-dependency brings")
manifest = json.load(open(f"{out}/manifest.json"))
if manifest["sbom"] != {**manifest["sbom"], "file": f"{stem}.cdx.json", "sha256": sha(f"{out}/{stem}.cdx.json")}:
    errors.append("manifest.json does not name the SBOM by its sha256")
prov = json.load(open(f"{out}/{stem}.intoto.json"))
if prov["subject"] != [{"name": zipname, "digest": {"sha256": sha(f"{out}/{zipname}")}}]:
    errors.append("the provenance's subject is not the zip's sha256")
by = {b["name"]: b["digest"]["sha256"] for b in prov["predicate"]["runDetails"]["byproducts"]}
if by != {f"{stem}.cdx.json": sha(f"{out}/{stem}.cdx.json"), "manifest.json": sha(f"{out}/manifest.json")}:
    errors.append("the provenance's byproducts are not the SBOM's and the manifest's sha256")
for e in errors:
    print(f"artifacts: FAIL {zipname}: {e}", file=sys.stderr)
if not errors:
    print(f"artifacts: ok {zipname}: .dep-v0 {len(listed)} packages; SBOM {len(comps)} components, all in it;"
          f" {len(dev_only)} dev-only crates, none in the SBOM; manifest and provenance agree")
sys.exit(1 if errors else 0)
PY
done
[ "$fails" -eq 0 ] || { echo "artifacts: $fails of $# failed" >&2; exit 1; }
