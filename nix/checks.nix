# `nix flake check`: formatting, clippy (warnings are errors), the test suite, the audit
# gate on the shipped binary, and the zip build. The Rust checks share one
# buildDepsOnly (cargoArtifacts) and run with the dev profile, like `cargo test` and
# `cargo clippy` without Nix (.ci/run).
{
  pkgs,
  craneLib,
  commonArgs,
  cargoArtifacts,
  pythonEnv,
  lambdaZip,
  lambdaZipArm64,
  bootstrap,
  bootstrapArm64,
  zipSrc,
  pins,
}:
{
  fmt = craneLib.cargoFmt {
    inherit (commonArgs) src;
    cargoExtraArgs = "--all";
  };

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--all-targets -- --deny warnings";
    }
  );

  # The README's `cargo test --locked`. The sandbox has no Docker: the harness's
  # local-binaries path starts a throwaway cluster from nixpkgs' postgresql (initdb and
  # postgres on PATH; not root in the sandbox, so it runs as the build user). moto comes
  # from nixpkgs instead of the harness's pip install (no PyPI in the sandbox), PgBouncer
  # from nixpkgs too; with
  # EVENT_RECORDER_MOTO_SERVER set, the botocore test uses `python3` from PATH: pythonEnv.
  tests = craneLib.cargoTest (
    commonArgs
    // {
      inherit cargoArtifacts;
      nativeBuildInputs = commonArgs.nativeBuildInputs ++ [
        pkgs.postgresql
        pkgs.pgbouncer # the pooler tests run it in transaction mode
        pythonEnv
        pkgs.writableTmpDirAsHomeHook
      ];
      env = (commonArgs.env or { }) // {
        EVENT_RECORDER_TEST_POSTGRES = "local";
        EVENT_RECORDER_MOTO_SERVER = "${pythonEnv}/bin/moto_server";
      };
    }
  );

  # nix/audit.py again, on each binary as shipped (extracted from its zip), plus a
  # negative control so this check can fail: a nixpkgs executable (store-path
  # interpreter, /nix/store strings) must be rejected.
  audit =
    pkgs.runCommandLocal "event-recorder-audit"
      {
        nativeBuildInputs = [ pkgs.python3 ];
      }
      ''
        for shipped in "${lambdaZip.arch} ${bootstrap}" "${lambdaZipArm64.arch} ${bootstrapArm64}"; do
          set -- $shipped
          python3 ${zipSrc}/nix/audit.py --arch "$1" --floor ${lambdaZip.glibc} "$2/bin/${pins.zip.entry}"
        done
        if python3 ${zipSrc}/nix/audit.py --floor ${lambdaZip.glibc} ${pkgs.coreutils}/bin/ls > control.log; then
          cat control.log
          echo "audit.py accepted ${pkgs.coreutils}/bin/ls: the gate cannot fail" >&2
          exit 1
        fi
        grep -q OFFENCE control.log
        echo "negative control rejected as expected:"
        grep OFFENCE control.log
        touch "$out"
      '';

  lambda-zip = lambdaZip;
  lambda-zip-arm64 = lambdaZipArm64;
}
