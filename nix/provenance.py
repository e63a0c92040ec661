#!/usr/bin/env python3
"""Build provenance of the Lambda zip: an in-toto Statement v1 whose predicate is SLSA
v1 provenance (Python 3 stdlib only).

usage: provenance.py --zip ZIP --manifest manifest.json --sbom SBOM --src CHECKOUT
                     --source-commit REV|unknown --source-clean true|false|unknown
                     --builder nix|non-nix --out FILE

What it states: the zip (subject, by sha256) was built by nix/build-zip.sh for this
architecture and glibc floor (external parameters) from this commit, clean or not, with
these pinned inputs (resolved dependencies: Cargo.lock, rust-toolchain.toml,
nix/pins.json and flake.lock by sha256; the toolchain, zig, cargo-zigbuild,
cargo-auditable and OpenSSL by their pinned versions and hashes), on a Nix or a non-Nix
builder. The SBOM and manifest.json are byproducts. No times, host names, paths or
random IDs: the same commit and pins give the same bytes.

SLSA Build Level 1: the provenance exists and describes the build, but the build
writes it itself and nothing signs it, so it proves nothing against a dishonest
builder. Rebuilding (nix/verify.sh) is what proves a zip came from a commit.
"""
import argparse
import hashlib
import json
import os
import re
import sys

# Names, not addresses: nothing is published at a URL for them (README, "Provenance").
BUILD_TYPE = "urn:event-recorder:build-type:build-zip:v1"
BUILDERS = {"nix": "urn:event-recorder:builder:nix-flake",
            "non-nix": "urn:event-recorder:builder:build-zip-sh"}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def statement(zip_path, manifest, sbom_path, src, commit, clean, builder):
    m = json.load(open(manifest))
    pins = json.load(open(os.path.join(src, "nix/pins.json")))
    lock = open(os.path.join(src, "Cargo.lock")).read()
    ossl = re.search(r'name = "openssl-src"\nversion = "([^"]+)"\nsource = "[^"]+"\nchecksum = "([0-9a-f]+)"', lock)
    files = [{"name": f, "digest": {"sha256": sha256(os.path.join(src, f))}}
             for f in ("Cargo.lock", "rust-toolchain.toml", "nix/pins.json", "flake.lock")
             if os.path.exists(os.path.join(src, f))]
    source = {"name": "source", "annotations": {"tree_clean": clean}}
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        source["digest"] = {"gitCommit": commit}
    else:
        source["annotations"]["commit"] = commit
    tools = [
        {"name": "rustc", "annotations": {"version": m["toolchain"]["rustc"]}},
        {"name": "cargo", "annotations": {"version": m["toolchain"]["cargo"]}},
        # one wheel per build host, all pinned (by sha256) in nix/pins.json above; the
        # zip's bytes do not depend on which host's wheel ran
        {"name": "zig", "annotations": {"version": pins["zig"]["version"]}},
    ]
    for key in ("cargo_zigbuild", "cargo_auditable"):
        tools.append({"name": key.replace("_", "-"), "uri": pins[key]["crate_url"],
                      "digest": {"sha256": pins[key]["crate_sha256"]},
                      "annotations": {"version": pins[key]["version"]}})
    if ossl:
        tools.append({"name": "openssl-src", "digest": {"sha256": ossl[2]},
                      "annotations": {"version": ossl[1], "openssl": m["openssl"]["version"]}})
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": os.path.basename(zip_path), "digest": {"sha256": sha256(zip_path)}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": "nix/build-zip.sh",
                    "architecture": m["architecture"],
                    "target": m["target"],
                    "glibc_floor": m["glibc_floor"],
                    "source": {"commit": commit, "tree_clean": clean},
                },
                "internalParameters": {"source_date_epoch": m["source_date_epoch"]},
                "resolvedDependencies": [source] + files + tools,
            },
            "runDetails": {
                "builder": {"id": BUILDERS[builder]},
                "metadata": {},
                "byproducts": [
                    {"name": os.path.basename(sbom_path), "digest": {"sha256": sha256(sbom_path)},
                     "mediaType": "application/vnd.cyclonedx+json"},
                    {"name": "manifest.json", "digest": {"sha256": sha256(manifest)},
                     "mediaType": "application/json"},
                ],
            },
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("zip", "manifest", "sbom", "src", "source-commit", "out"):
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--source-clean", required=True, choices=["true", "false", "unknown"])
    ap.add_argument("--builder", required=True, choices=sorted(BUILDERS))
    a = ap.parse_args()
    clean = {"true": True, "false": False, "unknown": None}[a.source_clean]
    doc = statement(a.zip, a.manifest, a.sbom, a.src, a.source_commit, clean, a.builder)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
