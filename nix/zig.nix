# zig, exactly the build the non-Nix path uses: the PyPI `ziglang` wheel named in
# nix/pins.json for this host, fetched by its pinned sha256. The wheel is a zip holding
# ziglang/zig (a static executable) and ziglang/lib; zig finds lib/ next to its own
# executable, so the two stay together and bin/zig is a symlink to them.
{
  lib,
  stdenvNoCC,
  fetchurl,
  unzip,
  pins,
}:
let
  system = stdenvNoCC.hostPlatform.system;
  wheel =
    pins.zig.wheels.${system}
      or (throw "nix/pins.json has no zig wheel for ${system} (pinned: ${lib.concatStringsSep ", " (builtins.attrNames pins.zig.wheels)})");
in
stdenvNoCC.mkDerivation {
  pname = "zig";
  inherit (pins.zig) version;

  src = fetchurl {
    inherit (wheel) url sha256;
    name = wheel.filename;
  };

  nativeBuildInputs = [ unzip ];

  unpackPhase = ''
    runHook preUnpack
    unzip -q "$src" 'ziglang/zig' 'ziglang/lib/*' 'ziglang/LICENSE' -d .
    runHook postUnpack
  '';

  installPhase = ''
    runHook preInstall
    mkdir -p "$out/lib" "$out/bin"
    cp -r ziglang "$out/lib/ziglang"
    chmod -R a+rX "$out/lib/ziglang"
    chmod 0755 "$out/lib/ziglang/zig"
    ln -s ../lib/ziglang/zig "$out/bin/zig"
    runHook postInstall
  '';

  # A static upstream binary: byte-for-byte the wheel's, no strip/patchelf.
  dontFixup = true;

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    got=$("$out/bin/zig" version)
    if [ "$got" != "${pins.zig.version}" ]; then
      echo "zig from ${wheel.filename} reports $got, nix/pins.json pins ${pins.zig.version}" >&2
      exit 1
    fi
    runHook postInstallCheck
  '';

  meta = {
    description = "zig from the pinned ziglang wheel (nix/pins.json)";
    homepage = "https://ziglang.org";
    license = lib.licenses.mit;
    platforms = builtins.attrNames pins.zig.wheels;
    mainProgram = "zig";
  };
}
