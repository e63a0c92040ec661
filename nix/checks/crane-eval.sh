#!/usr/bin/env bash
# Evaluates every crane call of the flake through crane's own lib/*.nix and checks each
# derivation that results. Needs nix-instantiate (Debian: nix-bin), python3 and tar; no
# nixpkgs, no network.
#   nix/checks/crane-eval.sh [TREE]      check TREE (default: this checkout)
#   nix/checks/crane-eval.sh --self-test planted faults must fail, the tree must pass
#
# How: crane-src.sh unpacks crane at flake.lock's rev from a local tarball and checks its
# NAR hash against flake.lock. crane-eval.nix evaluates flake.nix -> nix/outputs.nix for
# every system the flake declares, with that crane and stand-ins for nixpkgs' primitives
# (crane-eval-nixpkgs.nix); each builder call is recorded as JSON in a throwaway store and
# each call into crane is traced. The records reachable from the flake's outputs are the
# derivations that `nix build`/`nix flake check`/`nix develop` would build, crane's
# implicit ones included (deps-only builds, vendored crates, dummy sources, setup hooks).
#
# Rules (a failure names the derivation, the system and the phase or argument):
#  bin      A phase runs a program "$out/bin/X" (the path in command position: start of a
#           line, after ; && || | ( $( ` { or if/then/else/elif/do/while/until/exec/!)
#           only if this derivation installs X by then. Installs: crane's installFromCargoBuildLog
#           step (buildPackage's installPhase) installs meta.mainProgram and pname; a line
#           in the same or an earlier phase that writes "$out/bin/X" (ln, cp, install, mv,
#           touch, makeWrapper, or a > redirection). A crane deps-only derivation
#           (installPhase `prepareAndInstallCargoArtifactsDir`, pname ending in -deps)
#           installs cargo's target directory only, so no bin/ at all. Phases counted are
#           the ones that run: checkPhase only with doCheck, installCheckPhase only with
#           doInstallCheck, none that dont* disables; buildCommand replaces them all.
#  network  A derivation without outputHash (not fixed-output) has no network tool in
#           command position in a phase that runs, nor do setup hooks: curl, wget,
#           aria2c, nix-prefetch-*, git clone/fetch/pull/ls-remote, cargo
#           fetch/update/search/publish/login/generate-lockfile, cargo install without
#           --offline/--frozen, pip install/download without --no-index, npm/yarn install,
#           go get/mod download, rustup toolchain/target/component add/install, apt-get.
#           Fixed-output derivations carry a real hash (not empty, not a fake one).
#  vendor   Every crates.io package in Cargo.lock is vendored through a fixed-output
#           fetchurl whose hash is its Cargo.lock checksum.
#  args     Each argument the flake passes to a crane function is either read by crane
#           (a formal of the function, `args.NAME`/`args ? NAME`/a removeAttrs entry in
#           the function's file or a crane file it calls, or $NAME in one of their setup
#           hooks) or reaches stdenv.mkDerivation as a stdenv attribute or an environment
#           variable (CARGO_*/CRANE_* names must be crane's or cargo's own).
#  calls    Every `craneLib.X` in flake.nix and nix/*.nix was evaluated.
#  shell    The dev shell puts pgbouncer and postgresql on PATH; the toolchain from
#           rust-toolchain.toml has every target of nix/pins.json's architectures.
# Not seen: nixpkgs' real stdenv, setup hooks and builders, rust-overlay, the contents
# of scripts a phase runs (nix/build-zip.sh), and anything only a build shows.
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
    self_test_init crane-eval '^crane-eval: FAIL'
    check=("$here/crane-eval.sh")
    self_test_case unchanged ''
    # cargo-zigbuild as it was: buildPackage without cargoArtifacts, so crane derives the
    # deps-only build from all its arguments, the $out/bin install check included
    self_test_case implicit-deps-install-check '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/crate-tool.nix"
s = p.read_text(); old = "    inherit cargoArtifacts;\n"
assert s.count(old) == 1; p.write_text(s.replace(old, ""))' \
        'FAIL \[bin\] cargo-zigbuild-deps' 'installCheckPhase runs "\$out/bin/cargo-zigbuild"'
    # a non-fixed-output derivation that downloads
    self_test_case network-in-build '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/lambda-zip.nix"
s = p.read_text(); old = "    patchShebangs --build nix\n"
assert s.count(old) == 1; p.write_text(s.replace(old, old + "    cargo fetch --locked\n"))' \
        'FAIL \[network\] event-recorder-lambda-zip-x86_64' 'postPatch.*cargo fetch'
    # an argument crane neither reads nor passes on as a stdenv attribute (a typo)
    self_test_case unknown-crane-arg '
import sys, pathlib
p = pathlib.Path(sys.argv[1]) / "nix/checks.nix"
s = p.read_text(); old = "cargoClippyExtraArgs = "
assert s.count(old) == 1; p.write_text(s.replace(old, "cargoClipyExtraArgs = "))' \
        'FAIL \[args\] cargoClippy .*cargoClipyExtraArgs'
    # PgBouncer gone from the dev shell's packages and from the tests (whose inputs the
    # shell inherits through `checks`)
    self_test_case shell-without-pgbouncer '
import re, sys, pathlib
d = pathlib.Path(sys.argv[1])
for f in ("nix/outputs.nix", "nix/checks.nix"):
    p = d / f; s = p.read_text()
    s2 = re.sub(r"^ *pkgs\.pgbouncer\b.*\n", "", s, flags=re.M)
    assert s2 != s, f; p.write_text(s2)' \
        'FAIL \[shell\].*pgbouncer'
    self_test_done
fi

tree=$(cd "${1:-$repo}" && pwd -P)
command -v nix-instantiate >/dev/null || { echo "crane-eval: nix-instantiate not found (apt-get install nix-bin)" >&2; exit 2; }
work=$(mktemp -d /tmp/crane-eval-XXXXXX)
trap 'rm -rf "$work"' EXIT

crane_src_prepare "$tree" "$work" "$repo" || exit 1

# a throwaway store: the records are written there, nothing else is touched
if ! nix-instantiate --store "$work/store" --read-write-mode --eval --strict --json \
    "$here/crane-eval.nix" -A roots --arg root "$tree" --arg craneSrc "$CRANE_SRC" \
    --arg ifdTrees "$CRANE_IFD_ARG" >"$work/roots.json" 2>"$work/eval.log"; then
    grep -v '^trace: {"argNames"' "$work/eval.log" >&2 || true
    echo "crane-eval: FAIL: evaluating the flake through crane failed" >&2
    exit 1
fi

python3 - "$tree" "$CRANE_SRC" "$work" <<'PY'
import json, pathlib, re, sys, tomllib
from collections import defaultdict

tree, crane, work = map(pathlib.Path, sys.argv[1:4])
store = work / "store/nix/store"
roots = json.loads((work / "roots.json").read_text())
log = (work / "eval.log").read_text().splitlines()
calls = [json.loads(l[len("trace: "):]) for l in log if l.startswith('trace: {"argNames"')]
for l in log:
    if l.startswith("trace: warning:"):
        print("crane-eval: note:", l[len("trace: "):])

failures = defaultdict(set)  # message -> systems
def fail(rule, msg, system):
    failures[f"crane-eval: FAIL [{rule}] {msg}"].add(system)

# ---- the records, by the path the flake's strings carry
recs = {}
for f in store.iterdir():
    if f.is_file():
        try:
            d = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(d, dict) and "craneEvalRecord" in d:
            recs[d.get("ifdOutPath", f"/nix/store/{f.name}")] = d
ifd_paths = [p for p in recs if not p.startswith("/nix/store/")]
SP = re.compile(r"/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+")
def strings(v):
    if isinstance(v, dict):
        for x in v.values(): yield from strings(x)
    elif isinstance(v, list):
        for x in v: yield from strings(x)
    elif isinstance(v, str):
        yield v
def refs(d):
    out = set()
    for s in strings([d["attrs"], d["passthru"]]):
        out.update(p for p in SP.findall(s) if p in recs)
        out.update(p for p in ifd_paths if p in s)
    return out

reach = {}  # path -> set of systems
for system, outs in roots.items():
    todo = [p for group in outs.values() for p in (group.values() if isinstance(group, dict) else [group])]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen or p not in recs:
            continue
        seen.add(p)
        todo.extend(refs(recs[p]))
    for p in seen:
        reach.setdefault(p, set()).add(system)
systems = sorted(roots)

# ---- phases that run, in stdenv's order
ORDER = ["unpack", "patch", "configure", "build", "check", "install", "fixup", "installCheck", "dist"]
PHASE_KINDS = {"stdenv.mkDerivation", "stdenvNoCC.mkDerivation", "runCommand", "runCommandLocal",
               "runCommandCC", "mkShell"}
def truthy(v):
    return v not in (None, False, "", 0, "0")
def phases(a):
    """[(attribute, order, text)] of the phase texts that run."""
    if "buildCommand" in a:
        return [("buildCommand", ORDER.index("install"), a["buildCommand"])]
    out = []
    listed = a.get("phases")
    enabled = {g: True for g in ORDER}
    enabled["unpack"] = not truthy(a.get("dontUnpack"))
    enabled["configure"] = not truthy(a.get("dontConfigure"))
    enabled["build"] = not truthy(a.get("dontBuild"))
    enabled["check"] = truthy(a.get("doCheck"))
    enabled["install"] = not truthy(a.get("dontInstall"))
    enabled["fixup"] = not truthy(a.get("dontFixup"))
    enabled["installCheck"] = truthy(a.get("doInstallCheck"))
    enabled["dist"] = truthy(a.get("doDist"))
    for g in ORDER:
        if listed is not None and f"{g}Phase" not in listed:
            continue
        if not enabled[g]:
            continue
        cap = g[0].upper() + g[1:]
        for name in (f"pre{cap}", f"{g}Phase", f"post{cap}"):
            if isinstance(a.get(name), str):
                out.append((name, ORDER.index(g), a[name]))
    for lst, g in (("preConfigurePhases", "configure"), ("preBuildPhases", "build"),
                   ("preInstallPhases", "install"), ("preFixupPhases", "fixup"),
                   ("preDistPhases", "dist"), ("postPhases", None)):
        for name in a.get(lst) or []:
            if isinstance(a.get(name), str):
                out.append((name, (ORDER.index(g) - 0.5) if g else len(ORDER), a[name]))
    return out

CMD_BEFORE = re.compile(r"(?:^|;|&&|\|\||\||\(|\$\(|`|\{|\b(?:if|then|else|elif|do|while|until|exec|time|command)|!)\s*$")
def command_position(text, i):
    line_start = text.rfind("\n", 0, i) + 1
    before = text[line_start:i].rstrip('"').rstrip()
    # continuation lines belong to the previous command
    if not before and line_start >= 2 and text[line_start - 2] == "\\":
        return False
    return CMD_BEFORE.search(before) is not None
OUT_BIN = re.compile(r'"?\$(?:out|\{out\})/bin/([A-Za-z0-9._+-]+)')
WRITERS = re.compile(r"^\s*(?:ln|cp|install|mv|touch|makeWrapper|makeBinaryWrapper)\b")

# ---- rule: bin
checked = defaultdict(set)  # record name -> phases checked
for p, syss in reach.items():
    d = recs[p]
    if d["craneEvalRecord"] not in PHASE_KINDS:
        continue
    a = d["attrs"]
    ph = phases(a)
    checked[d["name"]].update(n for n, _, _ in ph)
    produced = {}
    if any("postBuildInstallFromCargoBuildLogOut" in t for n, _, t in ph if n == "installPhase"):
        for x in (d["meta"].get("mainProgram"), a.get("pname")):
            if x:
                produced[x] = ORDER.index("install")
    for name, order, text in ph:
        for m in OUT_BIN.finditer(text):
            if command_position(text, m.start()):
                continue
            line = text[text.rfind("\n", 0, m.start()) + 1:]
            line = line.split("\n", 1)[0]
            if WRITERS.search(line) or re.search(r">\s*" + re.escape(m.group(0)), line):
                produced[m.group(1)] = min(order, produced.get(m.group(1), order))
    deps_only = a.get("installPhase") == "prepareAndInstallCargoArtifactsDir" or str(a.get("pname", "")).endswith("-deps")
    for name, order, text in ph:
        for m in OUT_BIN.finditer(text):
            if not command_position(text, m.start()):
                continue
            x = m.group(1)
            if x in produced and produced[x] <= order:
                continue
            why = ("a crane deps-only derivation installs only cargo artifacts, no bin/"
                   if deps_only else "nothing before it installs that file")
            for s in syss:
                fail("bin", f'{d["name"]}: {name} runs "$out/bin/{x}", which this derivation does not install ({why})', s)

# ---- rule: network
NET = [
    (re.compile(r"(curl|wget|aria2c|nix-prefetch-[\w-]+)\b"), None),
    (re.compile(r"git\s+(clone|fetch|pull|ls-remote)\b"), None),
    (re.compile(r"cargo\s+(fetch|update|search|publish|login|generate-lockfile)\b"), None),
    (re.compile(r"cargo\s+install\b"), re.compile(r"--offline|--frozen")),
    (re.compile(r"(?:python3?\s+-m\s+)?pip3?\s+(install|download)\b"), re.compile(r"--no-index")),
    (re.compile(r"(npm\s+(install|ci)|yarn\s+install|go\s+(get|mod\s+download))\b"), None),
    (re.compile(r"rustup\s+(toolchain\s+install|target\s+add|component\s+add|install|update)\b"), None),
    (re.compile(r"apt-get\b"), None),
]
def network_uses(text):
    for rx, unless in NET:
        for m in rx.finditer(text):
            if not command_position(text, m.start()):
                continue
            line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
            if unless and unless.search(line):
                continue
            yield line.strip()
FAKE_HASH = re.compile(r"^(sha256-)?[A0]+=*$")
fod_count = 0
for p, syss in reach.items():
    d = recs[p]
    a = d["attrs"]
    if "outputHash" in a:
        fod_count += 1
        h = a.get("outputHash") or ""
        if not h or FAKE_HASH.match(h):
            for s in syss:
                fail("network", f'{d["name"]}: fixed-output derivation with no real hash ({h!r})', s)
        continue
    texts = [(n, t) for n, _, t in phases(a)] if d["craneEvalRecord"] in PHASE_KINDS else []
    if d["craneEvalRecord"] == "makeSetupHook":
        texts.append(("setup hook " + pathlib.Path(a.get("hookScriptPath", "")).name, a.get("hookScript", "")))
    for name, text in texts:
        for line in network_uses(text):
            for s in syss:
                fail("network", f'{d["name"]}: {name} is not fixed-output but runs `{line}`', s)

# ---- rule: vendor
lock = tomllib.load(open(tree / "Cargo.lock", "rb"))
fetched = {}
for p, syss in reach.items():
    d = recs[p]
    if d["craneEvalRecord"] == "fetchurl" and d["name"].startswith("cargo-src-"):
        fetched[(d["name"][len("cargo-src-"):], frozenset(syss))] = d["attrs"].get("outputHash")
by_name = defaultdict(dict)
for (nv, syss), h in fetched.items():
    for s in syss:
        by_name[s][nv] = h
registry = [pk for pk in lock.get("package", []) if "checksum" in pk and pk.get("source", "").startswith(("registry+", "sparse+"))]
for s in systems:
    for pk in registry:
        nv = f'{pk["name"]}-{pk["version"]}'
        if by_name[s].get(nv) != pk["checksum"]:
            fail("vendor", f"{nv} (Cargo.lock) is not vendored by a fetchurl with its checksum (got {by_name[s].get(nv)!r})", s)

# ---- rule: args
DEFAULT = (crane / "lib/default.nix").read_text()
scope_files = {m.group(1): crane / "lib" / m.group(2)
               for m in re.finditer(r"^\s*(\w+)\s*=\s*callPackage\s+\./([\w/.]+\.nix)", DEFAULT, re.M)}
def closure(fn):
    files, todo = [], [scope_files[fn]]  # the function's own file first
    while todo:
        f = todo.pop()
        if f in files or not f.exists():
            continue
        files.append(f)
        text = f.read_text()
        if f.suffix == ".nix":
            head = re.match(r"\s*(?:#[^\n]*\n\s*)*\{([^}]*)\}\s*:", text)
            for name in re.findall(r"\w+", head.group(1) if head else ""):
                if name in scope_files:
                    todo.insert(0, scope_files[name])
            todo.extend(f.parent / m for m in re.findall(r"\./([\w.]+\.sh)", text))
    return files
def crane_reads(fn, name, formals):
    if name in formals:
        return f"a formal of {fn}"
    n = re.escape(name)
    for f in closure(fn):
        text = f.read_text()
        if f.suffix == ".nix":
            if re.search(rf"\b\w*[aA]rgs\s*(\.|\?)\s*{n}\b", text) or re.search(rf'"{n}"', text) \
                    or re.search(rf"^\s*{n}\s*(\?[^\n]*)?,\s*$", text, re.M):
                return f"read in lib/{f.relative_to(crane / 'lib')}"
        elif re.search(rf"\$\{{?{n}\b", text):
            return f"read by lib/{f.relative_to(crane / 'lib')}"
    return None
STDENV = set("""name pname version src srcs sourceRoot strictDeps nativeBuildInputs buildInputs
propagatedBuildInputs propagatedNativeBuildInputs depsBuildBuild depsBuildTarget depsHostHost
depsTargetTarget checkInputs nativeCheckInputs installCheckInputs nativeInstallCheckInputs passthru
meta env outputs doCheck doInstallCheck doDist dontUnpack dontConfigure dontBuild dontInstall dontFixup
dontStrip dontPatchELF dontPatchShebangs dontWrapQtApps patches phases passAsFile __structuredAttrs
enableParallelBuilding enableParallelChecking separateDebugInfo allowedReferences
allowedRequisites disallowedReferences disallowedRequisites preferLocalBuild allowSubstitutes
hardeningDisable hardeningEnable setupHook shellHook outputHash outputHashAlgo outputHashMode
impureEnvVars requiredSystemFeatures stdenv""".split())
CARGO_ENV = re.compile(r"^CARGO_(BUILD_\w+|PROFILE_\w+|TARGET_\w+|NET_\w+|HTTP_\w+|TERM_\w+|REGISTRIES_\w+|HOME|INCREMENTAL|ENCODED_RUSTFLAGS|TARGET_DIR)$")
def stdenv_attr(name):
    return name in STDENV or re.match(r"^(pre|post)[A-Z]\w*$|^\w+Phase$|^\w+Phases$|^dont[A-Z]", name)
seen_calls = set()
arg_summary = {}
for c in calls:
    fn = c["craneEvalCall"]
    result = recs.get(c["result"])
    passed = set(result["attrs"]) if result else set()
    passed |= {k for k in ("meta", "passthru") if result and result[k]}  # recorded beside attrs
    rname = result["name"] if result else c["result"]
    seen_calls.add(fn)
    for a in c["argNames"]:
        how = crane_reads(fn, a, c["formals"])
        if how is None and a in passed:
            if re.match(r"^(CARGO|CRANE)_", a):
                if CARGO_ENV.match(a):
                    how = "cargo's own environment variable"
            elif re.match(r"^[A-Z_][A-Z0-9_]*$", a):
                how = "an environment variable of the build"
            elif stdenv_attr(a):
                how = "a stdenv.mkDerivation attribute"
        if how is None:
            where = "passed on to stdenv.mkDerivation, which has no such attribute" if a in passed else "dropped"
            fail("args", f"{fn} ({rname}): argument {a!r} is neither read by crane nor a stdenv attribute ({where})", c["system"])
        arg_summary.setdefault(fn, {})[a] = how

# ---- rule: calls (every craneLib.X of the flake's files was evaluated)
sites = defaultdict(set)
for f in [tree / "flake.nix"] + sorted(p for p in (tree / "nix").glob("*.nix")):
    for m in re.finditer(r"\bcraneLib\.(\w+)", f.read_text()):
        if m.group(1) not in ("overrideToolchain", "overrideScope"):
            sites[m.group(1)].add(f.relative_to(tree).as_posix())
for fn, files in sorted(sites.items()):
    if fn not in seen_calls:
        for s in systems:
            fail("calls", f"craneLib.{fn} ({', '.join(sorted(files))}) was never evaluated", s)

# ---- rule: shell and toolchain
pins = json.load(open(tree / "nix/pins.json"))
want_targets = {v["target"] for k, v in pins["architectures"].items() if not k.startswith("_")}
for s in systems:
    shell = recs.get(roots[s]["devShells"].get("default", ""))
    if not shell:
        fail("shell", "no devShells.default", s)
        continue
    names = {recs[p]["name"] for p in refs({"attrs": shell["attrs"].get("nativeBuildInputs", []), "passthru": {}})}
    for want in ("pgbouncer", "postgresql"):
        if want not in names:
            fail("shell", f"the dev shell ({shell['name']}) does not put {want} on PATH", s)
    tcs = [recs[p] for p, syss in reach.items() if s in syss and recs[p]["attrs"].get("pname") == "rust-toolchain"]
    for tc in tcs:
        missing = want_targets - set(tc["attrs"].get("targets", []))
        if missing:
            fail("shell", f"the Rust toolchain ({tc['attrs'].get('toolchainFile')}) lacks targets {sorted(missing)}", s)
    if not tcs:
        fail("shell", "no Rust toolchain from rust-toolchain.toml was evaluated", s)

if failures:
    for msg, syss in sorted(failures.items()):
        print(f"{msg} [{', '.join(sorted(syss))}]")
    sys.exit(1)

# ---- summary
print(f"crane-eval: ok: {len(reach)} derivations evaluated for {len(systems)} systems "
      f"({', '.join(systems)}); {fod_count} fixed-output, the rest offline")
for fn in sorted(arg_summary):
    print(f"crane-eval: args {fn}: " + "; ".join(f"{a} ({h})" for a, h in sorted(arg_summary[fn].items())))
groups = defaultdict(lambda: [0, set(), set()])
for p in reach:
    d = recs[p]
    name = d["name"]
    key = re.sub(r"^(cargo-package|cargo-src)-.*$", r"\1-*", name)
    g = groups[(key, d["craneEvalRecord"])]
    g[0] += 1
    g[1].add(name)
    g[2].update(checked.get(name, ()))
for (key, kind), (n, names, ph) in sorted(groups.items()):
    if kind in ("nixpkgs-package",):
        continue
    what = ", ".join(sorted(ph)) if ph else ("fixed-output" if kind == "fetchurl" else "no phases (" + kind + ")")
    print(f"crane-eval:   {key} x{n}: {what}")
PY
