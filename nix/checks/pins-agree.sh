#!/usr/bin/env bash
# The flake and the non-Nix recipe must take their pins from the same files, with the
# same values. Needs nix-instantiate (Debian: nix-bin), python3 >= 3.11, tar and crane's
# source tarball (see crane-src.sh); no nixpkgs, no network.
#   nix/checks/pins-agree.sh [TREE]      check TREE (default: this checkout)
#   nix/checks/pins-agree.sh --self-test show that the check fails on planted drift
# Checks:
#  1. The non-Nix side: build-zip.sh and fetch-tools.sh read nix/pins.json next to
#     themselves and the Rust channel from rust-toolchain.toml; every pin key they read
#     exists in pins.json (for each host the flake supports).
#  2. The Nix side, read from the flake's outputs (nix/checks/pins-agree.nix evaluates
#     flake.nix and nix/outputs.nix through crane's real lib, as crane-eval.sh does, with
#     stand-ins for nixpkgs' primitives): zig version, wheel URL/sha256/filename per host,
#     cargo-zigbuild version/.crate URL/sha256 per host, glibc floor, zip name, Rust
#     channel. Each must equal what the scripts read. The flake's Rust toolchain must come
#     from rust-toolchain.toml.
#  3. No .nix file hard-codes a pinned value, a long hex hash, an SRI hash, a package
#     URL host of the pins, or (in nix/) any x.y.z version: they could drift silently.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=crane-src.sh
. "$here/crane-src.sh"

# shellcheck source=snapshot.sh
. "$here/snapshot.sh"

if [ "${1:-}" = "--self-test" ]; then
    # shellcheck source=self-test.sh
    . "$here/self-test.sh"
    self_test_init pins-agree '^pins-agree: (FAIL|MISMATCH|LITERAL)'
    check=("$here/pins-agree.sh")
    # each case: a name and a python snippet that plants one kind of drift in a copy
    self_test_case unchanged ''
    # the zig version written into nix/zig.nix instead of read from the pins
    self_test_case zig-version-literal '
import json, sys, pathlib
d = pathlib.Path(sys.argv[1]); p = d / "nix/zig.nix"
v = json.load(open(d / "nix/pins.json"))["zig"]["version"]
s = p.read_text(); old = "inherit (pins.zig) version;"
assert old in s; p.write_text(s.replace(old, f"version = \"{v}\";"))'
    # a wheel hash written into nix/zig.nix
    self_test_case zig-sha256-literal '
import json, sys, pathlib
d = pathlib.Path(sys.argv[1]); p = d / "nix/zig.nix"
w = json.load(open(d / "nix/pins.json"))["zig"]["wheels"]["x86_64-linux"]
s = p.read_text(); old = "inherit (wheel) url sha256;"
assert old in s; p.write_text(s.replace(old, "inherit (wheel) url;\n    sha256 = \"%s\";" % w["sha256"]))'
    # the flake reads its own copy of the pins, which drifted (no literal in any .nix file)
    self_test_case second-pin-file '
import json, sys, pathlib
d = pathlib.Path(sys.argv[1]); p = d / "nix/pins.nix"
pins = json.load(open(d / "nix/pins.json")); pins["cargo_zigbuild"]["version"] += "-drift"
json.dump(pins, open(d / "nix/pins-flake.json", "w"))
s = p.read_text(); assert "./pins.json" in s; p.write_text(s.replace("./pins.json", "./pins-flake.json"))'
    # the Rust toolchain chosen in Nix instead of from rust-toolchain.toml
    self_test_case rust-channel-in-nix '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/outputs.nix"
s = p.read_text(); old = "p.rust-bin.fromRustupToolchainFile ../rust-toolchain.toml"
assert old in s; p.write_text(s.replace(old, "p.rust-bin.stable.latest.default"))'
    # the non-Nix recipe reading a pin key that does not exist
    self_test_case script-reads-missing-key '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/build-zip.sh"
s = p.read_text(); assert "$(pin zig.version)" in s
p.write_text(s.replace("$(pin zig.version)", "$(pin zig.version_typo)"))'
    # the flake building every zip for the default architecture
    self_test_case arch-not-passed '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/lambda-zip.nix"
s = p.read_text(); old = "build-zip.sh --arch ${arch} "
assert old in s; p.write_text(s.replace(old, "build-zip.sh "))'
    self_test_done
fi

tree=$(cd "${1:-$repo}" && pwd -P)
command -v nix-instantiate >/dev/null || { echo "pins-agree: nix-instantiate not found (apt-get install nix-bin)" >&2; exit 2; }

work=$(mktemp -d /tmp/pins-agree-XXXXXX)
trap 'rm -rf "$work"' EXIT
crane_src_prepare "$tree" "$work" "$repo" || exit 1
# a throwaway store: the stand-in builders write their records there
nix_json=$(nix-instantiate --store "$work/store" --read-write-mode --eval --strict --json \
    "$tree/nix/checks/pins-agree.nix" --arg root "$tree" --arg craneSrc "$CRANE_SRC" \
    --arg ifdTrees "$CRANE_IFD_ARG" 2>"$work/eval.log") || {
    grep -v '^trace: {"argNames"' "$work/eval.log" >&2 || true
    echo "pins-agree: FAIL: evaluating the flake's pin consumers failed" >&2; exit 1; }

python3 - "$tree" "$nix_json" <<'PY'
import json, pathlib, re, sys, tomllib

tree = pathlib.Path(sys.argv[1])
nix = json.loads(sys.argv[2])
errors = []
def fail(kind, msg): errors.append(f"pins-agree: {kind}: {msg}")

# ---- 1. the non-Nix side: what build-zip.sh / fetch-tools.sh read
pins = json.load(open(tree / "nix/pins.json"))
channel = tomllib.load(open(tree / "rust-toolchain.toml", "rb"))["toolchain"]["channel"]

def lookup(key):
    v = pins
    for k in key.split("."):
        if not isinstance(v, dict) or k not in v:
            raise KeyError(key)
        v = v[k]
    return " ".join(v) if isinstance(v, list) else str(v)

read = {}  # key (with $host) -> set of scripts
for script in ("nix/build-zip.sh", "nix/fetch-tools.sh"):
    text = (tree / script).read_text()
    if not re.search(r'^pins=\$here/pins\.json$', text, re.M):
        fail("FAIL", f"{script} does not read pins from nix/pins.json next to itself")
    for key in re.findall(r'\bpin\s+"?([A-Za-z0-9_.$]+)"?\)', text):
        read.setdefault(key, set()).add(script)
build_zip = (tree / "nix/build-zip.sh").read_text()
if not re.search(r'tomllib\.load\(.*\["toolchain"\]\["channel"\].*rust-toolchain\.toml', build_zip):
    fail("FAIL", "build-zip.sh no longer takes the Rust channel from rust-toolchain.toml")

systems = nix["systems"]
def script_value(key, system):
    try:
        return lookup(key.replace("$host", system))
    except KeyError as e:
        fail("FAIL", f"{', '.join(sorted(read.get(key, ['?'])))} reads pin '{e.args[0]}', "
                     "which nix/pins.json does not have")
        return None
arches = [a for a in pins.get("architectures", {}) if not a.startswith("_")]
# fetch-tools.sh's crate_tool reads "$key.version" etc. for each tool it is called for
crate_keys = [n.replace("-", "_") for n in
              re.findall(r'^crate_tool ([a-z-]+)$', (tree / "nix/fetch-tools.sh").read_text(), re.M)]
def expand(key):  # one concrete key per architecture / crate tool the script reads
    if "$arch" in key:
        return [key.replace("$arch", a) for a in arches]
    if "$key" in key:
        return [key.replace("$key", c) for c in crate_keys]
    return [key]
for key in read:
    for system in (systems if "$host" in key else systems[:1]):
        for k in expand(key):
            script_value(k, system)

# ---- 2. the Nix side must equal the scripts' values, key by key
pairs = [("rust-toolchain.toml channel", channel, nix["rust_channel"])]
for key in list(read):  # the crate tools' keys as read, for pair() below
    if "$key" in key:
        for k in expand(key):
            read.setdefault(k, set()).update(read[key])
def pair(key, nixval, system=systems[0]):
    if key not in read:
        fail("FAIL", f"no recipe script reads '{key}' any more; update pins-agree.sh's mapping")
        return
    pairs.append((f"{key} [{system}]" if "$host" in key else key,
                  script_value(key, system), nixval))
for system in systems:
    z = nix["zig"][system]
    pair("zig.version", z["version"], system)
    pair("zig.wheels.$host.url", z["url"], system)
    pair("zig.wheels.$host.sha256", z["sha256"], system)
    pair("zig.wheels.$host.filename", z["filename"], system)
for tool in ("cargo_zigbuild", "cargo_auditable"):
    for system in systems:
        c = nix[tool][system]
        pair(f"{tool}.version", c["version"], system)
        pair(f"{tool}.crate_url", c["url"], system)
        pair(f"{tool}.crate_sha256", c["sha256"], system)
pair("glibc.default", nix["glibc"])
for a in arches:
    if a not in nix["arch"]:
        fail("MISMATCH", f"architecture {a} of nix/pins.json has no zip in the flake")
        continue
    if not nix["arch"][a]["passes_arch"]:
        fail("FAIL", f"nix/lambda-zip.nix does not pass --arch {a} to build-zip.sh")
    pairs.append((f"architectures.{a}.zip_name",
                  script_value(f"architectures.{a}.zip_name", systems[0])
                  if "architectures.$arch.zip_name" in read else None,
                  nix["arch"][a]["zip_name"]))
if "architectures.$arch.zip_name" not in read:
    fail("FAIL", "build-zip.sh no longer reads architectures.$arch.zip_name; update pins-agree.sh")
for what, script_val, nix_val in pairs:
    if script_val is None:
        continue
    if script_val != nix_val:
        fail("MISMATCH", f"{what}: non-Nix recipe reads {script_val!r}, the flake uses {nix_val!r}")
    else:
        print(f"pins-agree: same  {what} = {nix_val}")

# the flake's Rust toolchain: from rust-toolchain.toml, nowhere else
outputs = (tree / "nix/outputs.nix").read_text()
if "fromRustupToolchainFile ../rust-toolchain.toml" not in outputs:
    fail("FAIL", "nix/outputs.nix does not take the toolchain from rust-toolchain.toml")
nix_files = [tree / "flake.nix"] + sorted((tree / "nix").rglob("*.nix"))
for f in nix_files:
    for m in re.finditer(r'rust-bin\.(stable|beta|nightly|selectLatestNightlyWith)\b', f.read_text()):
        fail("FAIL", f"{f.relative_to(tree)} picks a Rust toolchain itself ({m.group(0)})")

# ---- 3. no literals in .nix files
def values(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if not k.startswith("_"):
                yield from values(x)
    elif isinstance(v, list):
        for x in v:
            yield from values(x)
    else:
        yield str(v)
pinned = {v for v in values({k: pins[k] for k in ("zig", "cargo_zigbuild", "cargo_auditable")})}
pinned.add(channel)
pinned = {v for v in pinned if len(v) >= 4}
generic = [
    (r'\b[0-9a-f]{32,}\b', "a hex hash"),
    (r'sha(256|512)-[A-Za-z0-9+/]{40,}={0,2}', "an SRI hash"),
    (r'files\.pythonhosted\.org|static\.crates\.io|ziglang\.org/(download|builds)', "a pinned artifact's host"),
]
def strip_comment(line):  # full-line and ` # ` trailing comments
    if line.lstrip().startswith("#"):
        return ""
    i = line.find(" # ")
    return line if i < 0 else line[:i]
for f in nix_files:
    rel = f.relative_to(tree)
    for n, line in enumerate(f.read_text().splitlines(), 1):
        for v in pinned:
            if v in line:
                fail("LITERAL", f"{rel}:{n} contains the pinned value {v!r}; read it from nix/pins.nix")
        code = strip_comment(line)
        for rx, what in generic:
            if re.search(rx, code):
                fail("LITERAL", f"{rel}:{n} contains {what}: {code.strip()}")
        # versions: flake.nix may name its inputs' refs; nothing in nix/ may name a version
        if rel.parts[0] == "nix" and re.search(r'(?<![\w.])\d+\.\d+\.\d+(?![\w.])', code):
            fail("LITERAL", f"{rel}:{n} contains a version literal: {code.strip()}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"pins-agree: ok ({len(pairs)} values agree; {len(nix_files)} .nix files free of pinned literals)")
PY
