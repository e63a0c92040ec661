#!/usr/bin/env bash
# Supply-chain gates, offline. Needs cargo (rust-toolchain.toml's), python3 >= 3.11,
# the crates of Cargo.lock in CARGO_HOME (`cargo fetch --locked` once), and the pinned
# cargo-deny: $CARGO_DENY, or cargo-deny on PATH (nix/fetch-tools.sh --tool cargo-deny
# builds it from the .crate pinned in nix/pins.json and prints its bin dir).
#   nix/checks/supply-chain.sh [--only GATE[,GATE]] [TREE]   check TREE (default: this checkout)
#   nix/checks/supply-chain.sh --self-test   planted faults must fail, the tree must pass
# EVENT_RECORDER_TODAY=YYYY-MM-DD replaces today's date in the age and expiry checks.
#
# Gates (a failure prints `supply-chain: FAIL [gate] ...`; all gates run, then exit 1):
#  snapshot  nix/advisories/rustsec-advisory-db.{tar.gz,json}: the tarball's sha256 and
#            advisory count are the JSON's, it holds only crates/**.md, the JSON's date is
#            its commit's, the snapshot is at most max_age_days old (from the commit's
#            date to today), and deny.toml's maximum-db-staleness is that same limit.
#  deny      cargo-deny --offline --locked with deny.toml, per target of nix/pins.json's
#            architectures: the shipped graph (event-recorder with the zip's features,
#            no dev-dependencies) for licenses, bans, sources and advisories; the whole
#            workspace (dev-dependencies included) for sources and advisories. The
#            advisory database is the snapshot, unpacked where cargo-deny looks for it:
#            <db-path>/<last segment of the db-url>-<xxh64 of the url>/crates, with
#            .git/FETCH_HEAD dated at the commit (cargo-deny reads only its mtime).
#  openssl   the OpenSSL built into the zip (openssl-src's +X.Y.Z in Cargo.lock) has no
#            CVE in nix/advisories/openssl-vulnerabilities.json whose affected range
#            in its line (X.Y) contains it, unless nix/advisories/openssl-accepted.json
#            accepts that CVE for that exact version, with a reason, until a date.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=snapshot.sh
. "$here/snapshot.sh"

if [ "${1:-}" = "--self-test" ]; then
    # shellcheck source=self-test.sh
    . "$here/self-test.sh"
    self_test_init supply-chain '^supply-chain: FAIL'
    # sc_case NAME ONLY EDIT ENV RX...: ONLY is the gate's --only value ("" for all
    # gates), ENV a `VAR=value` to run it under (or "")
    sc_case() {
        local name=$1 only=$2 edit=$3 env=$4
        shift 4
        check=(env ${env:+"$env"} "$here/supply-chain.sh" ${only:+--only "$only"})
        self_test_case "$name" "$edit" "$@"
    }
    sc_case unchanged '' '' ''
    # a licence that a real dependency uses, dropped from the allow-list
    sc_case licence-not-allowed '' '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "deny.toml"
s = p.read_text(); old = "    \"Unicode-3.0\",\n"
assert s.count(old) == 1; p.write_text(s.replace(old, ""))' '' \
        'FAIL \[deny\] x86_64-unknown-linux-gnu shipped' 'FAIL \[deny\] aarch64-unknown-linux-gnu shipped' \
        'error\[rejected\]' 'icu_collections-[0-9.]+/Cargo\.toml' 'rejected: license is not explicitly allowed'
    # an advisory against tokio-postgres 0.7.18 (Cargo.lock's) planted in a copy of
    # the snapshot, whose JSON is updated so that only the advisory can fail
    sc_case planted-advisory '' '
import gzip, hashlib, io, json, sys, pathlib, tarfile
d = pathlib.Path(sys.argv[1]) / "nix/advisories"
meta = json.loads((d / "rustsec-advisory-db.json").read_text())
src = tarfile.open(d / meta["tarball"])
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as out:
    for m in src.getmembers():
        out.addfile(m, src.extractfile(m) if m.isfile() else None)
    text = (b"```toml\n[advisory]\nid = \"RUSTSEC-9999-0001\"\npackage = \"tokio-postgres\"\n"
            b"date = \"2026-01-01\"\nurl = \"https://example.invalid/planted\"\n\n"
            b"[versions]\npatched = [\">= 0.7.19\"]\n```\n\n# Planted advisory\n\nSelf-test.\n")
    ti = tarfile.TarInfo("crates/tokio-postgres/RUSTSEC-9999-0001.md"); ti.size = len(text)
    ti.mtime = meta["commit_time"]; ti.mode = 0o644
    out.addfile(ti, io.BytesIO(text))
data = gzip.compress(buf.getvalue(), mtime=0)
(d / meta["tarball"]).write_bytes(data)
meta["sha256"] = hashlib.sha256(data).hexdigest(); meta["advisories"] += 1
(d / "rustsec-advisory-db.json").write_text(json.dumps(meta, indent=2))' '' \
        'FAIL \[deny\] x86_64-unknown-linux-gnu shipped' 'FAIL \[deny\] x86_64-unknown-linux-gnu workspace' \
        'ID: RUSTSEC-9999-0001' 'tokio-postgres 0\.7\.18'
    # a snapshot whose commit is older than the limit: the gate's age check and
    # cargo-deny's own staleness check both fail
    sc_case expired-snapshot '' '
import datetime, json, sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/advisories/rustsec-advisory-db.json"
meta = json.loads(p.read_text())
t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=meta["max_age_days"] + 10)
meta["commit_time"] = int(t.timestamp()); meta["date"] = t.strftime("%Y-%m-%d")
p.write_text(json.dumps(meta, indent=2))' '' \
        'FAIL \[snapshot\] .*days old, the limit is' 'repository is stale'
    # the real snapshot, judged on a "today" one day past its limit
    sc_case expired-by-date snapshot '' \
        "EVENT_RECORDER_TODAY=$(python3 -c '
import datetime, json, sys
m = json.load(open(sys.argv[1]))
print(datetime.date.fromisoformat(m["date"]) + datetime.timedelta(days=m["max_age_days"] + 1))
' "$repo/nix/advisories/rustsec-advisory-db.json")" \
        'FAIL \[snapshot\] .*days old, the limit is'
    # a CVE fixed in a later 3.6 release than the pinned one, not accepted
    sc_case planted-openssl-cve '' '
import json, sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/advisories/openssl-vulnerabilities.json"
d = json.loads(p.read_text())
d["supplement"].append({"id": "CVE-9999-0001", "published": "2026-12-01", "severity": "High",
    "affected": [{"from": "3.6.0", "fixed": "3.6.99"}], "source": "planted by the self-test"})
p.write_text(json.dumps(d))' '' \
        'FAIL \[openssl\] OpenSSL 3\.6\.3 .*CVE-9999-0001.*fixed in 3\.6\.99'
    # the official data alone: Cargo.lock pinning the previous openssl-src (3.6.2)
    sc_case openssl-older-pin openssl '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "Cargo.lock"
s = p.read_text(); old = "version = \"300.6.1+3.6.3\""
assert s.count(old) == 1; p.write_text(s.replace(old, "version = \"300.6.0+3.6.2\""))' '' \
        'FAIL \[openssl\] OpenSSL 3\.6\.2 .*CVE-2026-45447 \(High, .*fixed in 3\.6\.3'
    # the pinned OpenSSL without the acceptances: what they hold back
    sc_case openssl-without-acceptances openssl '
import json, sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/advisories/openssl-accepted.json"
d = json.loads(p.read_text()); d["accepted"] = []; p.write_text(json.dumps(d))' '' \
        'FAIL \[openssl\] OpenSSL 3\.6\.3 .*CVE-2026-54876'
    # acceptances past their date
    sc_case openssl-acceptance-expired openssl '' 'EVENT_RECORDER_TODAY=2099-01-01' \
        'FAIL \[openssl\] .*acceptance of CVE-2026-[0-9]+ for 3\.6\.3 expired on'
    self_test_done
fi

only=snapshot,deny,openssl
if [ "${1:-}" = "--only" ]; then only=$2; shift 2; fi
tree=$(cd "${1:-$repo}" && pwd -P)
case ",$only," in *,snapshot,*|*,deny,*|*,openssl,*) ;; *) echo "supply-chain: --only takes snapshot, deny, openssl" >&2; exit 2 ;; esac
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

work=$(mktemp -d /tmp/supply-chain-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail_file=$work/failures
: >"$fail_file"
fail() { echo "supply-chain: FAIL [$1] $2" | tee -a "$fail_file"; }
today=${EVENT_RECORDER_TODAY:-$(date -u +%F)}

# ---- snapshot: integrity, age, agreement with deny.toml; unpack it for cargo-deny
if want snapshot || want deny; then
    python3 - "$tree" "$work/advisory-dbs" "$today" "$only" >"$work/snapshot.out" <<'PY' || true
import datetime, hashlib, io, json, os, pathlib, re, sys, tarfile, tomllib

tree, dbs, today, only = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]
gate = "snapshot" in only.split(",")
def out(kind, msg):
    print(f"{kind}\t{msg}")

M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
def rotl(x, r): return ((x << r) | (x >> (64 - r))) & M
def rnd(acc, lane): return (rotl((acc + lane * P2) & M, 31) * P1) & M
def xxh64(data, seed):
    """XXH64, as cargo-deny names an advisory database's directory."""
    n, i = len(data), 0
    u64 = lambda j: int.from_bytes(data[j:j + 8], "little")
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed & M, (seed - P1) & M]
        while i + 32 <= n:
            v = [rnd(v[k], u64(i + 8 * k)) for k in range(4)]
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for x in v:
            h = ((h ^ rnd(0, x)) * P1 + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h = (rotl(h ^ rnd(0, u64(i)), 27) * P1 + P4) & M; i += 8
    if i + 4 <= n:
        h = (rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * P1 & M), 23) * P2 + P3) & M; i += 4
    while i < n:
        h = (rotl(h ^ (data[i] * P5 & M), 11) * P1) & M; i += 1
    h ^= h >> 33; h = h * P2 & M; h ^= h >> 29; h = h * P3 & M; h ^= h >> 32
    return h

adv = tree / "nix/advisories"
meta = json.loads((adv / "rustsec-advisory-db.json").read_text())
deny = tomllib.loads((tree / "deny.toml").read_text())
ok = True
def bad(msg):
    global ok
    ok = False
    if gate:
        out("FAIL", msg)

for k in ("commit", "date", "commit_time", "tarball", "sha256", "advisories", "max_age_days"):
    if k not in meta:
        out("FAIL", f"rustsec-advisory-db.json has no {k!r}"); sys.exit(0)
if not re.fullmatch(r"[0-9a-f]{40}", meta["commit"]):
    bad(f"commit {meta['commit']!r} is not 40 hex digits")
blob = (adv / meta["tarball"]).read_bytes()
sha = hashlib.sha256(blob).hexdigest()
intact = sha == meta["sha256"]
if not intact:
    bad(f"{meta['tarball']} has sha256 {sha}, rustsec-advisory-db.json says {meta['sha256']}")
members = []
with tarfile.open(fileobj=io.BytesIO(blob)) as t:
    for m in t.getmembers():
        if not (m.isfile() or m.isdir()) or not (m.name + "/").startswith("crates/") or ".." in m.name.split("/") \
                or (m.isfile() and not m.name.endswith(".md")):
            bad(f"{meta['tarball']}: unexpected entry {m.name!r}"); intact = False
        members.append(m)
count = sum(1 for m in members if m.isfile())
if count != meta["advisories"]:
    bad(f"{meta['tarball']} holds {count} advisories, rustsec-advisory-db.json says {meta['advisories']}")
cdate = datetime.datetime.fromtimestamp(meta["commit_time"], datetime.timezone.utc).date()
if cdate.isoformat() != meta["date"]:
    bad(f"date {meta['date']} is not the UTC date of commit_time ({cdate})")
age = (datetime.date.fromisoformat(today) - datetime.date.fromisoformat(meta["date"])).days
limit = meta["max_age_days"]
if age > limit:
    bad(f"the advisory snapshot (advisory-db {meta['commit'][:12]} of {meta['date']}) is {age} days old, "
        f"the limit is {limit} days: refresh it (nix/advisories/refresh.sh)")
adv_cfg = deny.get("advisories", {})
stale = adv_cfg.get("maximum-db-staleness", "")
if stale != f"P{limit}D":
    bad(f"deny.toml's maximum-db-staleness is {stale!r}, rustsec-advisory-db.json's max_age_days wants 'P{limit}D'")
if adv_cfg.get("db-path") != "$EVENT_RECORDER_ADVISORY_DBS":
    bad("deny.toml's advisories.db-path must be \"$EVENT_RECORDER_ADVISORY_DBS\" (the unpacked snapshot)")
urls = adv_cfg.get("db-urls", [])
if len(urls) != 1 or not re.fullmatch(r"https://[^/]+/[^?#]*[^/?#]", urls[0]):
    bad(f"deny.toml must name exactly one advisory db-url with a path and no trailing slash "
        f"(the snapshot's), not {urls!r}")
    urls = []
if ok and gate:
    out("OK", f"snapshot: advisory-db {meta['commit'][:12]} of {meta['date']}, {count} advisories, "
              f"sha256 matches, {age} days old (limit {limit}, deny.toml agrees)")
# unpack even when old (cargo-deny's own staleness check then fails too), never when
# the bytes are not the committed ones
if intact and len(urls) == 1:
    # cargo-deny lowercases the url, names the directory after its last path segment
    # and an XXH64 (seed 0xca80de71) of the lowercased url string (src/advisories/helpers/db.rs)
    url = urls[0].lower()
    name = url.rsplit("/", 1)[-1]
    db = dbs / f"{name}-{xxh64(url.encode(), 0xca80de71):016x}"
    (db / ".git").mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        t.extractall(db, filter="data")
    fh = db / ".git/FETCH_HEAD"
    fh.write_text(f"{meta['commit']}\t\tbranch 'main' of {urls[0]}\n")
    os.utime(fh, (meta["commit_time"], meta["commit_time"]))
    out("DB", str(dbs))
PY
    while IFS=$'\t' read -r kind msg; do
        case $kind in
            FAIL) fail snapshot "$msg" ;;
            OK) echo "supply-chain: ok $msg" ;;
            DB) export EVENT_RECORDER_ADVISORY_DBS=$msg ;;
        esac
    done <"$work/snapshot.out"
fi

# ---- deny: cargo-deny per target, shipped graph and whole workspace
if want deny; then
    pin() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(" ".join(v) if isinstance(v, list) else v)' "$tree/nix/pins.json" "$1"; }
    deny_ver=$(pin cargo_deny.version 2>/dev/null) || deny_ver=
    cargo_deny=${CARGO_DENY:-$(command -v cargo-deny || true)}
    targets=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["architectures"]
print(" ".join(v["target"] for k, v in a.items() if not k.startswith("_")))' "$tree/nix/pins.json")
    if [ -z "$deny_ver" ]; then
        fail deny "nix/pins.json has no cargo_deny.version"
    elif [ -z "$cargo_deny" ]; then
        fail deny "cargo-deny not found: PATH=\"\$(nix/fetch-tools.sh --tool cargo-deny):\$PATH\" or CARGO_DENY=..."
    elif [ "$("$cargo_deny" --version)" != "cargo-deny $deny_ver" ]; then
        fail deny "$cargo_deny is '$("$cargo_deny" --version)', nix/pins.json wants cargo-deny $deny_ver"
    else
        checks_all=(licenses bans sources advisories)
        checks_ws=(sources advisories)
        if [ -z "${EVENT_RECORDER_ADVISORY_DBS:-}" ]; then
            fail deny "no advisory snapshot to check against (see the snapshot failures): advisories not checked"
            checks_all=(licenses bans sources)
            checks_ws=(sources)
            # deny.toml's db-path must still expand; nothing is read from it
            export EVENT_RECORDER_ADVISORY_DBS=$work/no-advisory-db
        fi
        for target in $targets; do
            for graph in shipped workspace; do
                if [ $graph = shipped ]; then
                    scope=(--features vendored-openssl --exclude-dev); checks=("${checks_all[@]}")
                else
                    scope=(--workspace); checks=("${checks_ws[@]}")
                fi
                log=$work/deny-$target-$graph.log
                # cwd: the tree, so cargo reads its rust-toolchain.toml and .cargo config
                if (cd "$tree" && "$cargo_deny" --color never --offline --locked \
                        --manifest-path "$tree/Cargo.toml" --config "$tree/deny.toml" \
                        "${scope[@]}" --target "$target" check --show-stats --hide-inclusion-graph "${checks[@]}") >"$log" 2>&1; then
                    stats=$(grep -E '^ *(advisories|bans|licenses|sources) (ok|FAILED)' "$log" |
                        sed -E 's/^ +//; s/, 0 notes//' | paste -sd ';' | sed 's/;/; /g')
                    echo "supply-chain: ok deny $target $graph (${checks[*]}): $stats"
                    grep -E '^warning\[' "$log" | sort | uniq -c | sed 's/^ */    /' || true
                else
                    fail deny "$target $graph (${checks[*]}): cargo-deny failed:"
                    # the diagnostics, without codespan's drawing and licence blurbs
                    python3 - "$log" <<'PY'
import re, sys
out = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = line.rstrip()
    if re.match(r"(error|warning)\[", line) or "[ERROR]" in line or line.startswith("error:"):
        out.append(line)
    elif m := re.match(r"\s*┌─ (.*)", line):
        out.append("  at " + re.sub(r".*/registry/src/[^/]+/", "", m.group(1)))
    elif m := re.match(r"\s*(\d+ │ .*)", line):
        out.append("  " + m.group(1))
    elif m := re.match(r"\s*├ (.*)", line):
        if not re.match(r"\s*- |[\w.+-]+ - .*:$", m.group(1)):
            out.append("  " + m.group(1))
    elif m := re.match(r"\s*│[\s│━]*([A-Za-z].*)", line):
        out.append("  " + m.group(1))
for line in out[:60]:
    print("    " + line)
if len(out) > 60:
    print(f"    ... {len(out) - 60} more lines")
PY
                    grep -E '^ *(advisories|bans|licenses|sources) (ok|FAILED)' "$log" | sed 's/^ */    /' || true
                fi
            done
        done
    fi
fi

# ---- openssl: the pinned OpenSSL against the CVE list
if want openssl; then
    python3 - "$tree" "$today" >"$work/openssl.out" <<'PY' || true
import datetime, json, pathlib, re, sys, tomllib

tree, today = pathlib.Path(sys.argv[1]), datetime.date.fromisoformat(sys.argv[2])
adv = tree / "nix/advisories"
def out(kind, msg):
    print(f"{kind}\t{msg}")

lock = tomllib.loads((tree / "Cargo.lock").read_text())
srcs = [p for p in lock.get("package", []) if p["name"] == "openssl-src"]
if len(srcs) != 1:
    out("FAIL", f"Cargo.lock has {len(srcs)} openssl-src packages; the zip builds exactly one OpenSSL from it")
    sys.exit(0)
crate_ver = srcs[0]["version"]
m = re.fullmatch(r"\d+\.\d+\.\d+\+(\d+)\.(\d+)\.(\d+)", crate_ver)
if not m:
    out("FAIL", f"openssl-src {crate_ver}: no +X.Y.Z OpenSSL version in its build metadata")
    sys.exit(0)
pinned = tuple(int(x) for x in m.groups())
ver = ".".join(map(str, pinned))
line = f"{pinned[0]}.{pinned[1]}"

data = json.loads((adv / "openssl-vulnerabilities.json").read_text())
acc_path = adv / "openssl-accepted.json"
accepted = json.loads(acc_path.read_text()).get("accepted", []) if acc_path.exists() else []

def parse(v):
    """'3.6.2' -> (3, 6, 2); letter releases (1.1.1w) and others -> None."""
    mm = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", v)
    return tuple(int(x) for x in mm.groups()) if mm else None

hits, in_line = [], 0
for c in data["cves"] + data.get("supplement", []):
    for r in c["affected"]:
        lo = parse(r["from"])
        if lo is None or lo[:2] != pinned[:2]:
            continue
        in_line += 1
        if "fixed" in r:
            hi = parse(r["fixed"])
            affected = hi is None or lo <= pinned < hi
            how = f"fixed in {r['fixed']}"
        else:
            last = parse(r.get("last_affected", ""))
            affected = last is None or lo <= pinned <= last
            how = f"affects up to {r.get('last_affected')}; no fixed release recorded"
        if affected:
            hits.append((c, how))

failed = False
used = set()
for c, how in hits:
    acc = [a for a in accepted if a["id"] == c["id"] and a.get("openssl") == ver]
    if acc:
        a = acc[0]
        used.add(c["id"])
        if today > datetime.date.fromisoformat(a["expires"]):
            out("FAIL", f"acceptance of {c['id']} for {ver} expired on {a['expires']} "
                        f"(openssl-accepted.json): {c['id']} ({c['severity']}) {how}")
            failed = True
        else:
            out("NOTE", f"OpenSSL {ver}: {c['id']} ({c['severity']}, {how}) accepted until "
                        f"{a['expires']}: {a['reason']}")
        continue
    failed = True
    out("FAIL", f"OpenSSL {ver} (openssl-src {crate_ver}) has {c['id']} ({c['severity']}, published "
                f"{c.get('published', '?')}), {how}")
for a in accepted:
    if a["id"] not in used:
        out("NOTE", f"openssl-accepted.json: {a['id']} for {a.get('openssl')} matches nothing in OpenSSL {ver}; remove it")

src = data["source"]
src_age = (today - datetime.date.fromisoformat(src["date"])).days
out("NOTE", f"CVE list: release-metadata {src['commit'][:12]} of {src['date']} ({src_age} days old), "
            f"{len(data['cves'])} CVEs, plus {len(data.get('supplement', []))} newer ones by hand")
eol = data.get("lines", {}).get(line, {}).get("eol")
if eol and len(eol) == 10 and today > datetime.date.fromisoformat(eol):
    out("WARN", f"OpenSSL {line} reached end of life on {eol}: no more fixes for it upstream")
if not failed:
    out("OK", f"openssl: OpenSSL {ver} (openssl-src {crate_ver}): {in_line} affected ranges known "
              f"for {line}, no unaccepted CVE affects {ver}")
PY
    while IFS=$'\t' read -r kind msg; do
        case $kind in
            FAIL) fail openssl "$msg" ;;
            OK) echo "supply-chain: ok $msg" ;;
            NOTE) echo "supply-chain: note: $msg" ;;
            WARN) echo "supply-chain: WARNING: $msg" ;;
        esac
    done <"$work/openssl.out"
fi

if [ -s "$fail_file" ]; then
    echo "supply-chain: $(wc -l <"$fail_file") failure(s)"
    exit 1
fi
echo "supply-chain: ok ($only)"
