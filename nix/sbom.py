#!/usr/bin/env python3
"""CycloneDX 1.5 SBOM of the Lambda `bootstrap` (Python 3.11 stdlib only).

usage: sbom.py --metadata FILE --tree FILE --lock Cargo.lock --dep-list FILE
               --bootstrap FILE --target TRIPLE --openssl-version V
               --tool NAME=VERSION... --out FILE
       sbom.py --self-test

The components are the crates linked into `bootstrap` for its target and features, as
cargo's feature resolver sees a build of it (`cargo tree -e normal,no-proc-macro
--target TARGET --features ...`: no dev-dependencies, no proc macros, which run in the
compiler, no build-dependencies, which run in build scripts), plus the crates in
BUNDLED, whose bundled C source is compiled into the binary. Each has its licence
(Cargo.toml's SPDX expression), package URL and crates.io checksum from Cargo.lock.
OpenSSL itself is a component of its own; the Rust toolchain, zig and the cargo
plugins are tools.

Checked against `.dep-v0`, which cargo-auditable wrote into the binary while linking
it: every component must be listed there, at the same version, or the build fails,
naming the crate. `.dep-v0` lists more: it is made from `cargo metadata`, which unifies
features across dev-, build- and normal dependencies and marks some proc macros as
runtime, so it also names crates whose code never reaches the binary; the SBOM leaves
those out and records how many (property event-recorder:dep-v0-only-crates). Output:
no paths, no times, no random IDs (the serial number is derived from the binary's
sha256), keys sorted.
"""
import re
import argparse
import hashlib
import json
import sys
import tomllib
import uuid

# build-dependencies whose payload is linked, not just run: openssl-src builds the
# OpenSSL that openssl-sys links statically.
BUNDLED = {"openssl-src"}
ROOT = "event-recorder"


def linked_crates(metadata, root=ROOT):
    """{package id: package} reachable from `root` by normal, non-proc-macro edges."""
    pkgs = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    proc_macro = {i for i, p in pkgs.items()
                  if any("proc-macro" in t["kind"] for t in p["targets"])}
    root_id = next(i for i, p in pkgs.items() if p["name"] == root and p["source"] is None)
    seen, todo, bundled = {root_id}, [root_id], set()
    while todo:
        for dep in nodes[todo.pop()]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if pkgs[dep["pkg"]]["name"] in BUNDLED and "build" in kinds:
                bundled.add(dep["pkg"])
            if None not in kinds or dep["pkg"] in proc_macro or dep["pkg"] in seen:
                continue
            seen.add(dep["pkg"])
            todo.append(dep["pkg"])
    seen.discard(root_id)
    return root_id, {i: pkgs[i] for i in seen | bundled}, nodes


def from_dep_list(deps, root=ROOT):
    """(name, version) of every package .dep-v0 lists, runtime or build, but the root."""
    return {(p["name"], p["version"]) for p in deps["packages"]
            if not p.get("root") and not (p["name"] == root and p.get("source") == "local")}


def from_tree(text, root=ROOT):
    """(name, version) of each line `NAME vVERSION ...` of `cargo tree --prefix none`."""
    out = {(m[1], m[2]) for m in re.finditer(r"(?m)^(\S+) v(\S+)", text)}
    return {nv for nv in out if nv[0] != root}


def checksums(lock_text):
    lock = tomllib.loads(lock_text)
    return {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}


def purl(p):
    return f"pkg:cargo/{p['name']}@{p['version']}"


def licence(p):
    if p.get("license"):
        # Cargo still accepts the old "MIT/Apache-2.0"; SPDX spells it "MIT OR Apache-2.0"
        return [{"expression": re.sub(r"\s*/\s*", " OR ", p["license"])}]
    return [{"license": {"name": "unspecified (no SPDX expression in Cargo.toml)"}}]


def sbom(metadata, tree_text, lock_text, deps, bootstrap_sha256, target, tools, openssl_version):
    root_id, walked, nodes = linked_crates(metadata)
    sums = checksums(lock_text)
    tree = from_tree(tree_text)
    crates = {i: p for i, p in walked.items()
              if (p["name"], p["version"]) in tree or p["name"] in BUNDLED}
    ours = {(p["name"], p["version"]) for p in crates.values()}
    theirs = from_dep_list(deps)
    problems = []
    for name, version in sorted((tree | ours) - theirs):
        problems.append(f"{name} {version} is linked into bootstrap but not in its .dep-v0")
    for name, version in sorted(tree - ours):
        problems.append(f"{name} {version} is listed by cargo tree but not by cargo metadata")
    unlinked = len(theirs - ours)
    components = []
    for p in sorted(crates.values(), key=lambda p: (p["name"], p["version"])):
        if p["source"] != "registry+https://github.com/rust-lang/crates.io-index":
            problems.append(f"{p['name']} {p['version']} does not come from crates.io ({p['source']})")
        sha = sums.get((p["name"], p["version"]))
        if not sha:
            problems.append(f"{p['name']} {p['version']} has no checksum in Cargo.lock")
        c = {"type": "library", "bom-ref": purl(p), "name": p["name"], "version": p["version"],
             "licenses": licence(p), "purl": purl(p),
             "hashes": [{"alg": "SHA-256", "content": sha or ""}]}
        if p["name"] in BUNDLED:
            c["description"] = "build-dependency whose bundled C source is compiled into the binary"
        components.append(c)
    ossl_ref = f"pkg:generic/openssl@{openssl_version}"
    components.append({
        "type": "library", "bom-ref": ossl_ref, "name": "openssl", "version": openssl_version,
        "licenses": [{"license": {"id": "Apache-2.0"}}], "purl": ossl_ref,
        "description": "OpenSSL, built from the source openssl-src bundles and linked statically",
        "pedigree": {"ancestors": [{"type": "library", "name": "openssl-src",
                                    "version": next(p["version"] for p in crates.values()
                                                    if p["name"] == "openssl-src"),
                                    "purl": purl(next(p for p in crates.values()
                                                      if p["name"] == "openssl-src"))}]},
    })
    # edges among what is listed (normal edges only; openssl-sys -> OpenSSL)
    listed = set(crates) | {root_id}
    depends = []
    for i in sorted(listed, key=lambda i: ((crates.get(i) or {"name": ""})["name"],
                                           (crates.get(i) or {"version": ""})["version"])):
        ref = "root" if i == root_id else purl(crates[i])
        on = sorted({purl(crates[d["pkg"]]) for d in nodes[i]["deps"]
                     if d["pkg"] in crates and (None in {k["kind"] for k in d["dep_kinds"]}
                                                or crates[d["pkg"]]["name"] in BUNDLED)})
        if i in crates and crates[i]["name"] == "openssl-sys":
            on.append(ossl_ref)
        depends.append({"ref": ref, "dependsOn": sorted(on)})
    depends.append({"ref": ossl_ref, "dependsOn": []})
    root = next(p for p in metadata["packages"] if p["id"] == root_id)
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                     "event-recorder-bootstrap:" + bootstrap_sha256)),
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": n, "version": v}
                                     for n, v in sorted(tools.items())]},
            "component": {
                "type": "application", "bom-ref": "root", "name": "bootstrap",
                "version": root["version"],
                "description": f"{ROOT} Lambda bootstrap for {target}",
                "licenses": licence(root),
                "hashes": [{"alg": "SHA-256", "content": bootstrap_sha256}],
            },
        },
        "components": components,
        "dependencies": depends,
    }
    doc["metadata"]["properties"] = [
        {"name": "event-recorder:dep-v0-only-crates", "value": str(unlinked)},
        {"name": "event-recorder:target", "value": target}]
    return doc, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metadata")
    ap.add_argument("--tree")
    ap.add_argument("--lock")
    ap.add_argument("--dep-list")
    ap.add_argument("--bootstrap")
    ap.add_argument("--target")
    ap.add_argument("--openssl-version")
    ap.add_argument("--tool", action="append", default=[], help="NAME=VERSION")
    ap.add_argument("--out")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    need = ["metadata", "tree", "lock", "dep_list", "bootstrap", "target", "openssl_version", "out"]
    missing = [n for n in need if getattr(a, n) is None]
    if missing:
        ap.error("missing: " + ", ".join("--" + n.replace("_", "-") for n in missing))
    doc, problems = sbom(
        json.load(open(a.metadata)), open(a.tree).read(), open(a.lock).read(), json.load(open(a.dep_list)),
        hashlib.sha256(open(a.bootstrap, "rb").read()).hexdigest(), a.target,
        dict(t.split("=", 1) for t in a.tool), a.openssl_version)
    for p in problems:
        print(f"sbom: {p}", file=sys.stderr)
    if problems:
        sys.exit("sbom: FAIL: the SBOM and the binary's .dep-v0 disagree (or a crate is unsourced)")
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    extra = doc["metadata"]["properties"][0]["value"]
    print(f"sbom: {len(doc['components'])} components ({len(doc['components']) - 1} crates + OpenSSL),"
          f" all in .dep-v0, which also names {extra} crates"
          " that only proc macros, build scripts or tests use")


def self_test():
    """A tiny graph: root -> b (normal), root -> m (proc macro), root -> openssl-sys ->
    openssl-src (build, BUNDLED), b -> x (build), root -> d (dev). Linked: b,
    openssl-sys, openssl-src. A crate missing from .dep-v0 must be named."""
    reg = "registry+https://github.com/rust-lang/crates.io-index"

    def pkg(n, kind="lib", src=reg):
        return {"id": n, "name": n, "version": "1.0.0", "source": src, "license": "MIT",
                "targets": [{"kind": [kind]}]}
    md = {"packages": [pkg(ROOT, "bin", None), pkg("b"), pkg("m", "proc-macro"),
                       pkg("openssl-src"), pkg("x"), pkg("d"), pkg("openssl-sys")],
          "resolve": {"nodes": [
              {"id": ROOT, "deps": [{"pkg": "b", "dep_kinds": [{"kind": None}]},
                                    {"pkg": "m", "dep_kinds": [{"kind": None}]},
                                    {"pkg": "d", "dep_kinds": [{"kind": "dev"}]},
                                    {"pkg": "openssl-sys", "dep_kinds": [{"kind": None}]}]},
              {"id": "b", "deps": [{"pkg": "x", "dep_kinds": [{"kind": "build"}]}]},
              {"id": "openssl-sys", "deps": [{"pkg": "openssl-src", "dep_kinds": [{"kind": "build"}]}]},
              {"id": "m", "deps": []}, {"id": "openssl-src", "deps": []},
              {"id": "x", "deps": []}, {"id": "d", "deps": []}]}}
    lock = "\n".join(f'[[package]]\nname = "{n}"\nversion = "1.0.0"\nchecksum = "{n}00"\n'
                     for n in ["b", "m", "openssl-src", "x", "d", "openssl-sys"])
    dl = {"packages": [{"name": ROOT, "version": "1.0.0", "source": "local", "root": True},
                       {"name": "b", "version": "1.0.0", "source": "crates.io"},
                       {"name": "openssl-sys", "version": "1.0.0", "source": "crates.io"},
                       {"name": "m", "version": "1.0.0", "source": "crates.io"},
                       {"name": "x", "version": "1.0.0", "source": "crates.io", "kind": "build"},
                       {"name": "openssl-src", "version": "1.0.0", "source": "crates.io", "kind": "build"}]}
    tree = "event-recorder v1.0.0 (/somewhere)\nb v1.0.0\nopenssl-sys v1.0.0\nb v1.0.0 (*)\n"
    doc, problems = sbom(md, tree, lock, dl, "00" * 32, "t", {"rustc": "1"}, "3.0.0")
    names = [c["name"] for c in doc["components"]]
    assert names == ["b", "openssl-src", "openssl-sys", "openssl"], names
    assert not problems, problems
    assert "/somewhere" not in json.dumps(doc)
    # .dep-v0's m (proc macro) and x (build) are counted, not listed
    assert doc["metadata"]["properties"][0]["value"] == "2", doc["metadata"]["properties"]
    again, _ = sbom(md, tree, lock, dl, "00" * 32, "t", {"rustc": "1"}, "3.0.0")
    assert json.dumps(doc, sort_keys=True) == json.dumps(again, sort_keys=True), "not deterministic"
    # a linked crate that .dep-v0 does not list, or lists at another version
    dl["packages"] = [p for p in dl["packages"] if p["name"] != "b"]
    _, problems = sbom(md, tree, lock, dl, "00" * 32, "t", {}, "3.0.0")
    assert problems == ["b 1.0.0 is linked into bootstrap but not in its .dep-v0"], problems
    dl["packages"].append({"name": "b", "version": "1.0.1", "source": "crates.io"})
    _, problems = sbom(md, tree, lock, dl, "00" * 32, "t", {}, "3.0.0")
    assert problems == ["b 1.0.0 is linked into bootstrap but not in its .dep-v0"], problems
    print("sbom self-test: ok (proc macro, build and dev dependencies left out; a crate missing from .dep-v0 named)")


if __name__ == "__main__":
    main()
