# Stand-in for `import nixpkgs { system; overlays; }`, for nix/checks/crane-eval.sh and
# pins-agree.sh. Only nixpkgs' primitives are stood in: the builders (stdenv.mkDerivation,
# runCommand*, fetchurl, writeText, makeSetupHook, mkShell, rustPlatform.buildRustPackage),
# the scope helpers crane's lib/default.nix calls (no cross-compilation here, so no
# splicing), `lib` (crane-eval-lib.nix) and leaf packages (pkg-config, postgresql, ...).
#
# Every builder call becomes a *record*: its arguments (functions shown as "<function>"),
# written with builtins.toFile as JSON, and that file's store path is the fake
# derivation's outPath. Strings that interpolate a derivation therefore carry its path,
# so crane-eval.sh can walk the whole graph from the flake's outputs, including
# derivations that are only referenced from another one's script (vendored crates,
# crane's implicit deps-only build). Needs a writable store: `--store DIR
# --read-write-mode`.
{
  system,
  overlays ? [ ],
  config ? { },
  # name -> directory: outputs that crane reads at evaluation time (import from
  # derivation), which cannot be built here; the directory stands in for the output.
  # A name matches the output `<name>-<version>-source`, whatever the version.
  ifdTrees ? { },
  lib,
}:
let
  b = builtins;

  platform = {
    inherit system;
    isLinux = lib.hasSuffix "-linux" system;
    isDarwin = lib.hasSuffix "-darwin" system;
    isAarch64 = lib.hasPrefix "aarch64-" system;
    isMinGW = false;
    canExecute = p: p.system == system;
    emulatorAvailable = _: false;
    rust = {
      rustcTarget = system;
      cargoEnvVarTarget = b.replaceStrings [ "-" ] [ "_" ] (lib.toLower system);
    };
  };

  # JSON-safe copy of a value; derivations and sources become their (context-carrying)
  # store paths, paths stay paths without being copied.
  sanitize =
    v:
    if lib.isFunction v then
      "<function>"
    else if b.isAttrs v then
      (if v ? outPath then "${v}" else b.mapAttrs (_: sanitize) v)
    else if b.isList v then
      map sanitize v
    else if b.isPath v then
      toString v
    else
      v;

  record =
    kind: args:
    let
      name =
        args.name or (if args ? pname && args ? version then "${args.pname}-${args.version}" else throw "${kind}: no name");
      data = {
        craneEvalRecord = kind;
        inherit name system;
        attrs = sanitize (b.removeAttrs args [
          "passthru"
          "meta"
        ]);
        passthru = sanitize (args.passthru or { });
        meta = sanitize (args.meta or { });
      };
      json = b.toJSON data;
      sourceOf = b.match "(.*)-[0-9][^-]*-source" name;
      tree = if sourceOf == null then null else ifdTrees.${b.head sourceOf} or null;
      # An import-from-derivation output: its stand-in tree is used in place (crane reads
      # it with readDir/readFile, which a chroot store would not serve); the record is
      # written next to it and names it.
      outPath =
        if tree == null then
          b.toFile name json
        else
          b.seq (b.toFile "${name}.ifd-record" (b.toJSON (data // { ifdOutPath = toString tree; }))) (
            toString tree
          );
      self =
        args
        // (args.passthru or { })
        // {
          inherit name outPath system;
          type = "derivation";
          drvPath = outPath;
          outputName = "out";
          out = self;
          meta = args.meta or { };
          passthru = args.passthru or { };
          overrideAttrs =
            f: record kind (args // (if lib.isFunction f then f args else f));
        };
    in
    self;

  stdenvFor = kind: {
    mkDerivation = record kind;
    hostPlatform = platform;
    buildPlatform = platform;
    targetPlatform = platform;
    inherit system;
    isDarwin = platform.isDarwin;
    isLinux = platform.isLinux;
    cc = leaf "cc" // {
      targetPrefix = "";
    };
  };
  stdenv = stdenvFor "stdenv.mkDerivation";

  # a package nixpkgs provides prebuilt: its own recipe is not evaluated here
  leaf = name: record "nixpkgs-package" { inherit name; };

  runCommandWith =
    kind: name: env: buildCommand:
    record kind (
      {
        inherit name buildCommand;
        passAsFile = [ "buildCommand" ] ++ (env.passAsFile or [ ]);
      }
      // b.removeAttrs env [ "passAsFile" ]
    );

  pythonPackages = {
    moto = leaf "python3-moto" // {
      optional-dependencies.server = [
        (leaf "python3-flask")
        (leaf "python3-flask-cors")
      ];
    };
    botocore = leaf "python3-botocore";
    cfn-lint = leaf "python3-cfn-lint";
  };

  mkShell =
    {
      name ? "nix-shell",
      packages ? [ ],
      inputsFrom ? [ ],
      ...
    }@args:
    let
      merge =
        attr:
        (args.${attr} or [ ])
        ++ lib.subtractLists inputsFrom (lib.flatten (map (d: d.${attr} or [ ]) inputsFrom));
    in
    record "mkShell" (
      b.removeAttrs args [
        "packages"
        "inputsFrom"
      ]
      // {
        inherit name;
        buildInputs = merge "buildInputs";
        nativeBuildInputs = packages ++ merge "nativeBuildInputs";
        propagatedBuildInputs = merge "propagatedBuildInputs";
        propagatedNativeBuildInputs = merge "propagatedNativeBuildInputs";
        phases = [ "buildPhase" ];
        buildPhase = ''{ echo "------------------------------------------------------------"; echo " WARNING: the existence of this path is not guaranteed."; } >> "$out"'';
        preferLocalBuild = true;
      }
    );

  callPackageWith =
    autoArgs: fn: args:
    let
      f = if lib.isFunction fn then fn else import fn;
      r = f (b.intersectAttrs (b.functionArgs f) autoArgs // args);
    in
    if b.isAttrs r then
      r
      // {
        override = newArgs: callPackageWith autoArgs fn (args // newArgs);
      }
    else
      r;

  base = self: {
    inherit lib system stdenv;
    stdenvNoCC = stdenvFor "stdenvNoCC.mkDerivation";
    pkgsBuildBuild = self;
    pkgsBuildHost = self;
    pkgsBuildTarget = self;
    pkgsHostHost = self;
    pkgsHostTarget = self;
    pkgsTargetTarget = self;
    pkgs = self;
    newScope = extra: callPackageWith (self // extra);
    callPackage = self.newScope { };
    makeScopeWithSplicing' =
      {
        f,
        ...
      }:
      lib.makeScope self.newScope f;
    # native builds only: every splice is the host's value
    splicePackages = splices: splices.pkgsHostTarget;

    fetchurl =
      {
        url ? null,
        urls ? [ url ],
        sha256 ? "",
        hash ? "",
        name ? b.baseNameOf (b.head urls),
        ...
      }@args:
      record "fetchurl" (
        args
        // {
          inherit name urls;
          outputHash = if hash != "" then hash else sha256;
          outputHashAlgo = if hash != "" then null else "sha256";
          outputHashMode = "flat";
        }
      );
    runCommand = runCommandWith "runCommand";
    runCommandLocal =
      name: env: runCommandWith "runCommandLocal" name (env // { preferLocalBuild = true; allowSubstitutes = false; });
    runCommandCC = runCommandWith "runCommandCC";
    writeText = name: text: record "writeText" { inherit name text; };
    writeShellScript = name: text: record "writeShellScript" { inherit name text; };
    writeShellScriptBin = name: text: record "writeShellScriptBin" { inherit name text; };
    makeSetupHook =
      {
        name,
        substitutions ? { },
        ...
      }@args:
      script:
      record "makeSetupHook" (
        args
        // {
          hookScript = b.readFile script;
          hookScriptPath = toString script;
        }
      );
    inherit mkShell;
    rustPlatform.buildRustPackage = record "rustPlatform.buildRustPackage";

    python3 = leaf "python3" // {
      withPackages = f: record "python3.withPackages" {
        name = "python3-env";
        packages = f pythonPackages;
      };
      pkgs = pythonPackages;
    };
    darwin.signingUtils = leaf "darwin-signing-utils";
  }
  // lib.genAttrs [
    "bashInteractive"
    "cargo"
    "cargo-nextest"
    "clippy"
    "coreutils"
    "docker-client"
    "jq"
    "nixfmt-tree"
    "openssl"
    "perl"
    "pgbouncer"
    "pkg-config"
    "postgresql"
    "rsync"
    "rustc"
    "rustfmt"
    "unzip"
    "writableTmpDirAsHomeHook"
    "zstd"
  ] leaf;

  pkgs = b.foldl' (acc: overlay: self: let super = acc self; in super // overlay self super) base overlays;
  fix = f: let x = f x; in x;
in
fix pkgs
