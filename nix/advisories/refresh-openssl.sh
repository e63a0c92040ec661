#!/usr/bin/env bash
# Refreshes nix/advisories/openssl-vulnerabilities.json, the list of OpenSSL CVEs that
# the OpenSSL watch in nix/checks/supply-chain.sh compares the zip's OpenSSL with.
# (RustSec does not track OpenSSL itself: the zip links OpenSSL built by openssl-src,
# whose version is the build metadata of openssl-src in Cargo.lock, e.g. +3.6.3.)
#   nix/advisories/refresh-openssl.sh PATH [REV]
# PATH: a git checkout or bare clone of https://github.com/openssl/release-metadata,
# the OpenSSL project's own machine-readable record of its releases and advisories;
# REV: the commit to take (default HEAD). Needs git and python3 >= 3.11; no network.
#
# From REV it reads secjson/CVE-*.json (one CVE JSON 5 record per CVE, with the
# affected version ranges of every release line) and data.json (each line's release
# and end-of-life dates), and writes one CVE per line: id, publication date, OpenSSL's
# severity, and the affected ranges as {"from", "fixed"} (or "last_affected").
#
# The "supplement" array of the previous file is kept: hand-written entries for
# advisories that OpenSSL published after REV (each with its source). An entry whose
# id now appears in secjson is dropped, as the official record supersedes it.
# After a refresh: run nix/checks/supply-chain.sh, review the diff, commit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 PATH-TO-RELEASE-METADATA-GIT [REV]" >&2; exit 2; }
src=$1
rev=${2:-HEAD}
commit=$(git -C "$src" rev-parse --verify --quiet "$rev^{commit}") ||
    { echo "refresh-openssl: $rev is not a commit in $src" >&2; exit 1; }
git -C "$src" cat-file -e "$commit:secjson" 2>/dev/null && git -C "$src" cat-file -e "$commit:data.json" 2>/dev/null ||
    { echo "refresh-openssl: $commit has no secjson/ or data.json; is $src openssl/release-metadata?" >&2; exit 1; }

tmp=$(mktemp -d /tmp/openssl-refresh-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
git -C "$src" archive --format=tar "$commit" secjson data.json | tar -xf - -C "$tmp"
commit_time=$(git -C "$src" show -s --format=%ct "$commit")

python3 - "$tmp" "$here/openssl-vulnerabilities.json" "$commit" "$commit_time" <<'PY'
import datetime, json, os, pathlib, re, sys

tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
commit, commit_time = sys.argv[3], int(sys.argv[4])
old = json.loads(out.read_text()) if out.exists() else {}

def iso(text):
    """'01 Nov 2026' -> '2026-11-01'; 'Oct 2027' -> '2027-10' (month only)."""
    for fmt, keep in (("%d %b %Y", "%Y-%m-%d"), ("%b %Y", "%Y-%m")):
        try:
            return datetime.datetime.strptime(text.strip(), fmt).strftime(keep)
        except ValueError:
            pass
    sys.exit(f"refresh-openssl: unreadable date {text!r} in data.json")

lines = {k: {"release": iso(v["release"]), "eol": iso(v["eol"]), "lts": bool(v.get("lts"))}
         for k, v in json.loads((tmp / "data.json").read_text()).items()}

cves = []
for f in sorted((tmp / "secjson").glob("CVE-*.json")):
    rec = json.loads(f.read_text())
    cna = rec["containers"]["cna"]
    cid = rec["cveMetadata"]["cveId"]
    sev = [m["other"]["content"]["text"] for m in cna.get("metrics", [])
           if m.get("format") == "other" and "other" in m]
    ranges = []
    for a in cna.get("affected", []):
        if (a.get("vendor"), a.get("product")) != ("OpenSSL", "OpenSSL"):
            continue
        for v in a.get("versions", []):
            if v.get("status") != "affected":
                continue
            r = {"from": v["version"]}
            if "lessThan" in v:
                r["fixed"] = v["lessThan"]
            elif "lessThanOrEqual" in v:
                r["last_affected"] = v["lessThanOrEqual"]
            else:
                r["last_affected"] = v["version"]
            ranges.append(r)
    published = (cna.get("datePublic") or rec["cveMetadata"].get("datePublished") or "")[:10]
    cves.append({"id": cid, "published": published,
                 "severity": (sev[0].capitalize() if sev else "unknown"), "affected": ranges})

def cve_key(c):
    y, n = c["id"].split("-")[1:3]
    return (int(y), int(n))
cves.sort(key=cve_key)
known = {c["id"] for c in cves}
supplement = [s for s in old.get("supplement", []) if s["id"] not in known]
dropped = [s["id"] for s in old.get("supplement", []) if s["id"] in known]

date = datetime.datetime.fromtimestamp(commit_time, datetime.timezone.utc).strftime("%Y-%m-%d")
head = {
    "_comment": old.get("_comment", "OpenSSL CVEs for the OpenSSL watch of nix/checks/supply-chain.sh. "
                        "Written by nix/advisories/refresh-openssl.sh from OpenSSL's release-metadata "
                        "(secjson/CVE-*.json and data.json); supplement entries are kept by hand."),
    "source": {"repository": "https://github.com/openssl/release-metadata",
               "commit": commit, "date": date},
    "lines": lines,
}
if old.get("_comment_supplement"):
    head["_comment_supplement"] = old["_comment_supplement"]
# one CVE per line: reviewable diffs
parts = [json.dumps(head, indent=2)[:-2] + ","]
def listing(key, items):
    body = ",\n".join("    " + json.dumps(i, ensure_ascii=False) for i in items)
    return f'  "{key}": [\n{body}\n  ]' if items else f'  "{key}": []'
parts.append(listing("supplement", supplement) + ",")
parts.append(listing("cves", cves))
tmpout = out.with_suffix(".json.tmp")
tmpout.write_text("\n".join(parts) + "\n}\n")
json.loads(tmpout.read_text())  # well-formed
os.replace(tmpout, out)
print(f"refresh-openssl: release-metadata {commit} ({date}): {len(cves)} CVEs, "
      f"{len(supplement)} supplement entries kept" +
      (f", superseded and dropped: {', '.join(dropped)}" if dropped else ""))
PY
