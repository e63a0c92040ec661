#!/usr/bin/env python3
"""Write a deterministic single-entry zip: mkzip.py SRC ZIP [ENTRY_NAME].

The container bytes are written here field by field (not via zipfile) so they
cannot change with the Python version: DOS time 1980-01-01 00:00:00, made by
Unix (create_system=3), mode 0100755, raw deflate level 9 (wbits -15, memLevel 8),
no extra fields, no comment, no data descriptor. Only zlib's deflate output is
left as an input; its version is printed for the manifest.
"""
import os
import struct
import sys
import zipfile
import zlib

DOS_TIME = 0                                # 00:00:00
DOS_DATE = (0 << 9) | (1 << 5) | 1          # 1980-01-01
MODE = 0o100755


def main():
    src, dst = sys.argv[1], sys.argv[2]
    name = (sys.argv[3] if len(sys.argv) > 3 else os.path.basename(src)).encode()
    data = open(src, "rb").read()
    co = zlib.compressobj(9, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    comp = co.compress(data) + co.flush()
    crc = zlib.crc32(data) & 0xFFFFFFFF
    if len(comp) >= 0xFFFFFFFF or len(data) >= 0xFFFFFFFF:
        sys.exit("mkzip: zip64 not supported")
    common = struct.pack("<HHHHHIII", 20, 0, 8, DOS_TIME, DOS_DATE, crc,
                         len(comp), len(data))
    local = struct.pack("<I", 0x04034B50) + common + struct.pack("<HH", len(name), 0) + name
    central = (struct.pack("<IH", 0x02014B50, (3 << 8) | 20) + common
               + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, MODE << 16, 0) + name)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central),
                       len(local) + len(comp), 0)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(local + comp + central + eocd)
    # sanity: the stdlib reader agrees (CRC, size, mode)
    with zipfile.ZipFile(tmp) as z:
        (info,) = z.infolist()
        assert z.testzip() is None and info.file_size == len(data)
        assert info.external_attr >> 16 == MODE and info.create_system == 3
    os.replace(tmp, dst)
    print(f"zlib {zlib.ZLIB_RUNTIME_VERSION}")


if __name__ == "__main__":
    main()
