# The Lambda's `bootstrap`: the very bytes inside the zip (extracted, not rebuilt), checked
# against the bootstrap_sha256 that build-zip.sh recorded in manifest.json. A glibc
# executable for Amazon Linux on the zip's architecture (interpreter from
# pins.architectures): it is the artifact, not something to run on NixOS.
{
  runCommandLocal,
  python3,
  lambdaZip,
  pins,
}:
runCommandLocal "event-recorder-bootstrap-${lambdaZip.arch}"
  {
    nativeBuildInputs = [ python3 ];
    meta.mainProgram = pins.zip.entry;
  }
  ''
    mkdir -p "$out/bin"
    python3 - ${lambdaZip} ${lambdaZip.zipName} ${pins.zip.entry} "$out/bin/${pins.zip.entry}" <<'PY'
    import hashlib, json, os, sys, zipfile
    zdir, name, entry, dest = sys.argv[1:]
    want = json.load(open(os.path.join(zdir, "manifest.json")))["bootstrap_sha256"]
    with zipfile.ZipFile(os.path.join(zdir, name)) as z:
        data = z.read(entry)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        sys.exit(f"{entry} in {name}: sha256 {got}, manifest.json records {want}")
    with open(dest, "wb") as f:
        f.write(data)
    os.chmod(dest, 0o555)
    print(f"{dest}: {len(data)} bytes, sha256 {got}")
    PY
  ''
