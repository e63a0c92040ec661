#!/usr/bin/env python3
"""Audit gate for the Lambda `bootstrap` (Python 3 stdlib only; parses the ELF itself).

usage: audit.py [--arch x86_64|arm64] [--floor 2.26] [--forbid PATH]... [--json FILE] BINARY
       audit.py --self-test

Offences (each is named, exit status 1 if any):
  * an ELF machine other than the architecture's (x86-64 or AArch64, ELF64), or an
    interpreter other than its loader (nix/pins.json: architectures.<arch>)
  * a DT_NEEDED library outside glibc's own set and libgcc_s
  * a GLIBC_x.y version need (.gnu.version_r) above the floor
  * a build-machine path in the file: each --forbid PATH, plus $HOME, $CARGO_HOME,
    $CARGO_TARGET_DIR when set, and /nix/store always
  * with --dep-list FILE: no `.dep-v0` section (cargo-auditable's dependency list), a
    list that is not the JSON cargo-auditable writes, or a forbidden path or any other
    absolute path in it; the inflated list is written to FILE. --inflate PROG names a
    program that inflates zlib from stdin to stdout (the recipe passes its own, so the
    host Python's zlib is not needed); without it Python's zlib is used.
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys

PINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pins.json")
# glibc's own libraries and libgcc_s; the architecture's loader is added per arch
GLIBC_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
              "libgcc_s.so.1"}


def arch_pins(arch):
    with open(PINS) as f:
        arches = json.load(f)["architectures"]
    if arch.startswith("_") or arch not in arches:
        raise SystemExit(f"audit: unknown architecture {arch!r} (nix/pins.json has "
                         f"{', '.join(a for a in arches if not a.startswith('_'))})")
    return arches[arch]
PT_INTERP, SHT_DYNAMIC, SHT_DYNSYM = 3, 6, 11
SHT_VERNEED, SHT_VERSYM = 0x6FFFFFFE, 0x6FFFFFFF
DT_NEEDED, VER_FLG_WEAK, STB_WEAK = 1, 0x2, 2


def vkey(v):
    return tuple(int(x) for x in v.split("."))


def cstr(buf, off):
    return buf[off:buf.index(b"\0", off)].decode("utf-8", "replace")


def parse_elf(data):
    """Return dict: interp, needed, versions {name: {"lib", "weak_need", "syms", "weak_syms"}}."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    (e_type, e_machine, _, _, e_phoff, e_shoff, _, _, e_phentsize, e_phnum,
     e_shentsize, e_shnum, e_shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    out = {"machine": e_machine, "interp": None, "needed": [], "versions": {}, "sections": {}}
    for i in range(e_phnum):
        p_type, _, p_offset, _, _, p_filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == PT_INTERP:
            out["interp"] = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
            for i in range(e_shnum)]

    def sbytes(s):  # section contents
        return data[s[4]:s[4] + s[5]]

    if e_shstrndx < len(secs):
        names = sbytes(secs[e_shstrndx])
        out["sections"] = {cstr(names, s[0]): sbytes(s) for s in secs}

    verneed_idx = {}  # vna_other -> version name
    for s in secs:
        sh_type, link = s[1], s[6]
        if sh_type == SHT_DYNAMIC:
            strtab, dyn = sbytes(secs[link]), sbytes(s)
            for off in range(0, len(dyn), 16):
                tag, val = struct.unpack_from("<qQ", dyn, off)
                if tag == 0:
                    break
                if tag == DT_NEEDED:
                    out["needed"].append(cstr(strtab, val))
        elif sh_type == SHT_VERNEED:
            strtab, vn, off = sbytes(secs[link]), sbytes(s), 0
            while True:
                _, cnt, file_, aux, nxt = struct.unpack_from("<HHIII", vn, off)
                a = off + aux
                for _ in range(cnt):
                    _, flags, other, name, anext = struct.unpack_from("<IHHII", vn, a)
                    vname = cstr(strtab, name)
                    out["versions"][vname] = {"lib": cstr(strtab, file_),
                                              "weak_need": bool(flags & VER_FLG_WEAK),
                                              "syms": 0, "weak_syms": 0}
                    verneed_idx[other] = vname
                    if not anext:
                        break
                    a += anext
                if not nxt:
                    break
                off += nxt
    # count undefined dynamic symbols per version, and how many of them are weak
    dynsym = next((s for s in secs if s[1] == SHT_DYNSYM), None)
    versym = next((s for s in secs if s[1] == SHT_VERSYM), None)
    if dynsym and versym:
        syms, vers = sbytes(dynsym), sbytes(versym)
        for i in range(len(syms) // 24):
            _, st_info, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", syms, i * 24)
            vname = verneed_idx.get(struct.unpack_from("<H", vers, i * 2)[0] & 0x7FFF)
            if vname and st_shndx == 0:
                out["versions"][vname]["syms"] += 1
                if st_info >> 4 == STB_WEAK:
                    out["versions"][vname]["weak_syms"] += 1
    return out


def audit(path, floor, forbid, arch="x86_64", deps=False, inflate=None):
    want = arch_pins(arch)
    data = open(path, "rb").read()
    info = parse_elf(data)
    offences = []
    if info["machine"] != want["elf_machine"]:
        offences.append(f"ELF machine {info['machine']} is not {arch} ({want['elf_machine']})")
    if info["interp"] != want["interpreter"]:
        offences.append(f"ELF interpreter {info['interp']!r}, expected {want['interpreter']}")
    for lib in info["needed"]:
        if lib not in GLIBC_LIBS | {want["loader"]}:
            offences.append(f"NEEDED {lib} is not part of glibc/libgcc_s")
    glibc = {v: d for v, d in info["versions"].items()
             if re.fullmatch(r"GLIBC_\d+(\.\d+)+", v)}
    for v in sorted(glibc, key=lambda v: vkey(v[6:])):
        if vkey(v[6:]) > vkey(floor):
            offences.append(f"needs {v} (from {glibc[v]['lib']}), above the glibc floor {floor}")
    for p in sorted(set(forbid)):
        p = p.rstrip("/")
        if len(p) < 2:  # "/" or empty (e.g. HOME=/) would match everything
            continue
        hits = len(re.findall(re.escape(p.encode()) + rb"(?=/|\x00|\"|$)", data))
        if hits:
            offences.append(f"build-machine path {p} occurs {hits}x in the binary")
    dlist = None
    if deps:
        dlist, more = dep_list(info, forbid, inflate)
        offences += more
    hi = max(glibc, key=lambda v: vkey(v[6:]), default=None)
    strong = [v for v, d in glibc.items() if d["syms"] > d["weak_syms"]]
    hi_strong = max(strong, key=lambda v: vkey(v[6:]), default=None)
    summary = {
        "file": path, "architecture": arch, "size": len(data), "interp": info["interp"],
        "needed": info["needed"], "glibc_floor": floor,
        "highest_glibc": hi, "highest_glibc_non_weak": hi_strong,
        "weak_only_versions": sorted((v for v in glibc if v not in strong), key=lambda v: vkey(v[6:])),
        "offences": offences,
    }
    if dlist:
        summary["dep_v0"] = {"bytes": dlist["bytes"], "packages": dlist["packages"]}
        summary["_dep_list"] = dlist["list"]
    return summary


def dep_list(info, forbid, inflate):
    """cargo-auditable's list, inflated and checked; returns (list or None, offences)."""
    raw = info["sections"].get(".dep-v0")
    if not raw:
        return None, ["no .dep-v0 section: the dependency list is missing (not built by cargo-auditable?)"]
    if inflate:
        r = subprocess.run(inflate, input=raw, capture_output=True, shell=True)
        if r.returncode:
            return None, [f".dep-v0 does not inflate: {r.stderr.decode(errors='replace').strip()}"]
        text = r.stdout
    else:
        import zlib
        text = zlib.decompress(raw)
    try:
        deps = json.loads(text)
        names = [(p["name"], p["version"]) for p in deps["packages"]]
    except (ValueError, KeyError, TypeError) as e:
        return None, [f".dep-v0 is not cargo-auditable's JSON: {e}"]
    offences = []
    for p in sorted(set(forbid)):
        if len(p.rstrip("/")) >= 2 and p.rstrip("/").encode() in text:
            offences.append(f".dep-v0 names the build-machine path {p.rstrip('/')}")
    # the list holds names, versions, sources and edges: any absolute path is a leak
    for m in sorted(set(re.findall(rb'"(/[^"]*)"', text)))[:3]:
        offences.append(f".dep-v0 holds the path {m.decode(errors='replace')}")
    return {"bytes": len(raw), "packages": len(names), "list": deps}, offences


def report(s):
    print(f"audit: {s['file']} ({s['architecture']}, {s['size']} bytes)")
    print(f"  interpreter: {s['interp']}")
    print(f"  NEEDED: {', '.join(s['needed'])}")
    print(f"  highest GLIBC version: {s['highest_glibc']} (non-weak: {s['highest_glibc_non_weak']};"
          f" only weak symbols: {', '.join(s['weak_only_versions']) or 'none'}); floor {s['glibc_floor']}")
    if "dep_v0" in s:
        print(f"  .dep-v0: {s['dep_v0']['packages']} packages in {s['dep_v0']['bytes']} bytes")
    for o in s["offences"]:
        print(f"  OFFENCE: {o}")
    print("  result:", "FAIL" if s["offences"] else "pass")


def self_test():
    """Debian 12's /bin/ls needs GLIBC_2.33+ and libselinux: must fail at floor 2.26,
    and, being an x86-64 binary, must fail as an arm64 one."""
    ls = "/bin/ls"
    s = audit(ls, "2.26", ["/usr/share/locale"])
    report(s)
    text = "\n".join(s["offences"])
    assert "libc.so.6" in s["needed"], "parser did not find libc.so.6 in NEEDED"
    assert s["interp"] == arch_pins("x86_64")["interpreter"], "parser did not read PT_INTERP"
    assert "above the glibc floor 2.26" in text, "GLIBC floor check did not fire"
    assert "/usr/share/locale" in text, "path scan did not fire"
    ok = audit(ls, s["highest_glibc"][6:], [])
    assert not any("floor" in o for o in ok["offences"]), "floor == highest must pass"
    arm = "\n".join(audit(ls, s["highest_glibc"][6:], [], "arm64")["offences"])
    assert "ELF machine 62 is not arm64" in arm and "ld-linux-aarch64" in arm, arm
    nodeps = "\n".join(audit(ls, s["highest_glibc"][6:], [], deps=True)["offences"])
    assert "no .dep-v0 section" in nodeps, nodeps
    print("self-test: ok (/bin/ls rejected at floor 2.26, as arm64 and for its missing .dep-v0, as expected)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?")
    ap.add_argument("--floor", default="2.26")
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--forbid", action="append", default=[])
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--dep-list", help="require .dep-v0; write the inflated list here")
    ap.add_argument("--inflate", help="a shell command inflating zlib from stdin to stdout")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not a.binary:
        ap.error("BINARY required")
    forbid = a.forbid + ["/nix/store"] + [os.environ[k] for k in ("HOME", "CARGO_HOME", "CARGO_TARGET_DIR")
                                          if os.environ.get(k)]
    s = audit(a.binary, a.floor, forbid, a.arch, deps=bool(a.dep_list), inflate=a.inflate)
    report(s)
    listed = s.pop("_dep_list", None)
    if a.dep_list and listed is not None:
        with open(a.dep_list, "w") as f:
            json.dump(listed, f, indent=1, sort_keys=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=2)
    sys.exit(1 if s["offences"] else 0)


if __name__ == "__main__":
    main()
