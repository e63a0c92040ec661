#!/usr/bin/env bash
# Does a deployed function run the code of a commit? Rebuilds that commit's zip and compares.
#   nix/verify.sh --function NAME [--region REGION]             (reads the function with the AWS CLI)
#   nix/verify.sh --code-sha256 BASE64 [--arch x86_64|arm64]    (a hash as Lambda reports it)
# Options:
#   --commit REV           the commit to rebuild (default HEAD of this checkout)
#   --glibc 2.26|2.34      the glibc floor to build for (default: the commit's nix/pins.json
#                          default, 2.26, which runs on provided.al2 and provided.al2023). The
#                          floor is a build input: zig compiles OpenSSL's C against that glibc's
#                          headers and links against its symbol versions, so a 2.34 build is
#                          another binary and another zip; a function deployed from a 2.34
#                          build verifies only with --glibc 2.34.
#   --deployed-zip FILE    the deployed zip, for the report on a mismatch (checked against
#                          CodeSha256); without it the script downloads Code.Location
#   --report FILE          where the mismatch report goes (default ./verify-report.txt)
#   --max-report-size N    cap on the report, bytes (default 1048576; 0: no cap)
#   --out DIR              also keep what the rebuild wrote (zip, .sha256, SBOM, provenance,
#                          manifest.json) in DIR
#   --scratch DIR          scratch directory (default ${TMPDIR:-/tmp}/event-recorder-verify-$UID)
# Prints MATCH or MISMATCH with both hashes (base64 and hex). Exit 0 MATCH, 1 MISMATCH, 2 when
# it cannot tell (bad arguments, AWS error, build failure, nothing to compare).
#
# The commit is rebuilt by ITS OWN nix/build-zip.sh, in a detached `git worktree` at
# DIR/src (removed afterwards), for the function's architecture. CARGO_TARGET_DIR is honoured
# (default DIR/target) and only decides speed: the zip's bytes do not depend on it or on
# the scratch path. A warm target dir rebuilds in about a minute, but only when it was last
# built from the same path (build-zip.sh passes the checkout path to rustc as a remap, so a
# new path rebuilds every crate): keep --scratch and CARGO_TARGET_DIR the same from run to run.
#
# AWS: the AWS CLI (`aws`, v1 or v2) with the usual environment (AWS_PROFILE, AWS_REGION,
# AWS_ENDPOINT_URL, ...). A mismatch report needs diffoscope (Debian: diffoscope-minimal);
# without it the report holds sizes, hashes and a diff of the binaries' strings instead.
# Signed functions (Configuration.SigningJobArn set): see deploy/README.md, "Code signing".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
src=$(cd "$here/.." && pwd -P)
say() { echo "verify: $*" >&2; }
fail() { echo "verify: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

function= code_sha= arch= commit=HEAD glibc= region= deployed_zip= out=
report=$PWD/verify-report.txt max_report=1048576
scratch=${TMPDIR:-/tmp}/event-recorder-verify-$(id -u)
while [ $# -gt 0 ]; do
    case $1 in
        --function) function=${2:?}; shift 2 ;;
        --code-sha256) code_sha=${2:?}; shift 2 ;;
        --arch) arch=${2:?}; shift 2 ;;
        --commit) commit=${2:?}; shift 2 ;;
        --glibc) glibc=${2:?}; shift 2 ;;
        --region) region=${2:?}; shift 2 ;;
        --deployed-zip) deployed_zip=${2:?}; shift 2 ;;
        --report) report=${2:?}; shift 2 ;;
        --max-report-size) max_report=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --scratch) scratch=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; fail "unknown argument $1" ;;
    esac
done
[ -n "$function" ] || [ -n "$code_sha" ] || { usage >&2; fail "give --function NAME or --code-sha256 VALUE"; }
[ -n "$function" ] && [ -n "$code_sha" ] && fail "--function and --code-sha256 exclude each other"
case $max_report in ''|*[!0-9]*) fail "--max-report-size wants a number of bytes" ;; esac
if [ -n "$deployed_zip" ]; then
    [ -f "$deployed_zip" ] || fail "no file $deployed_zip"
    deployed_zip=$(cd "$(dirname "$deployed_zip")" && pwd -P)/$(basename "$deployed_zip")
fi
command -v python3 >/dev/null || fail "python3 is needed"
command -v git >/dev/null || fail "git is needed"

py() { python3 - "$@"; }
sha256_b64() { py "$1" <<'EOF'; }
import base64, hashlib, sys
print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())
EOF
b64_to_hex() { py "$1" <<'EOF'; }
import base64, binascii, sys
try:
    raw = base64.b64decode(sys.argv[1], validate=True)
except binascii.Error:
    raw = b""
print(raw.hex() if len(raw) == 32 else "")
EOF

work=$(mktemp -d "${TMPDIR:-/tmp}/event-recorder-verify-work-XXXXXX")
wt=
cleanup() {
    if [ -n "$wt" ]; then
        git -C "$src" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
        git -C "$src" worktree prune >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- what is deployed
aws_() {
    command -v aws >/dev/null || fail "the AWS CLI (aws) is needed for --function"
    AWS_PAGER= aws ${region:+--region "$region"} --output json "$@"
}
location= signing_job= signing_profile= runtime=
if [ -n "$function" ]; then
    aws_ lambda get-function --function-name "$function" >"$work/function.json" ||
        fail "aws lambda get-function --function-name $function failed"
    eval "$(py "$work/function.json" <<'EOF'
import json, shlex, sys
d = json.load(open(sys.argv[1]))
c = d.get("Configuration", {})
out = {
    "code_sha": c.get("CodeSha256", ""),
    "fn_arch": (c.get("Architectures") or ["x86_64"])[0],
    "package_type": c.get("PackageType", "Zip"),
    "runtime": c.get("Runtime", ""),
    "signing_job": c.get("SigningJobArn") or "",
    "signing_profile": c.get("SigningProfileVersionArn") or "",
    "location": (d.get("Code") or {}).get("Location", ""),
}
for k, v in out.items():
    print(f"{k}={shlex.quote(v)}")
EOF
)"
    [ "$package_type" = Zip ] || fail "$function is a $package_type function, not a zip"
    [ -z "$arch" ] || [ "$arch" = "$fn_arch" ] || fail "--arch $arch, but $function is $fn_arch"
    arch=$fn_arch
fi
arch=${arch:-x86_64}
case $arch in x86_64|arm64) ;; *) fail "--arch $arch: x86_64 or arm64" ;; esac
code_hex=$(b64_to_hex "$code_sha")
[ -n "$code_hex" ] || fail "CodeSha256 '$code_sha' is not a base64 SHA-256"

# ---------------------------------------------------------------- rebuild the commit
rev=$(git -C "$src" rev-parse --verify --quiet "$commit^{commit}") || fail "no commit $commit in $src"
mkdir -p "$(dirname "$scratch")"
scratch=$(cd "$(dirname "$scratch")" && pwd -P)/$(basename "$scratch")
mkdir -p "$scratch"
if command -v flock >/dev/null; then
    exec 8>"$scratch/.lock"
    flock -n 8 || { say "waiting for another run using $scratch"; flock 8; }
fi
if [ -e "$scratch/src" ]; then  # left by an interrupted run
    git -C "$src" worktree remove --force "$scratch/src" >/dev/null 2>&1 ||
        fail "$scratch/src exists and is not a worktree of $src: remove it or pick another --scratch"
fi
git -C "$src" worktree prune >/dev/null 2>&1 || true
git -C "$src" worktree add --detach --quiet "$scratch/src" "$rev" >&2 || fail "git worktree add failed"
wt=$scratch/src
[ -x "$wt/nix/build-zip.sh" ] || fail "commit $rev has no nix/build-zip.sh"
build=("$wt/nix/build-zip.sh" --out "$work/rebuilt")
if grep -q -- '--arch)' "$wt/nix/build-zip.sh"; then
    build+=(--arch "$arch")
elif [ "$arch" != x86_64 ]; then
    fail "commit $rev's build-zip.sh builds x86_64 only; $arch cannot come from it"
fi
[ -n "$glibc" ] && build+=(--glibc "$glibc")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$scratch/target}
say "rebuilding $rev for $arch in $wt (target dir $CARGO_TARGET_DIR)"
start=$(date +%s)
(cd "$wt" && "${build[@]}") >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log" >&2; fail "the build of $rev failed (log above)"; }
say "rebuilt in $(( $(date +%s) - start ))s"
manifest=$work/rebuilt/manifest.json
zip=$(ls "$work"/rebuilt/*.zip)
built_b64=$(sha256_b64 "$zip")
built_hex=$(b64_to_hex "$built_b64")
floor=$(py "$manifest" <<'EOF'
import json, sys; print(json.load(open(sys.argv[1])).get("glibc_floor", "?"))
EOF
)
if [ -n "$out" ]; then
    mkdir -p "$out" && cp "$work"/rebuilt/* "$out/"
fi

what=${function:+function $function}
what=${what:-CodeSha256 $code_sha}
summary() {  # VERDICT, then both hashes
    echo "$1"
    printf '  deployed: %s  (hex %s)  %s, %s\n' "$code_sha" "$code_hex" "$what" "$arch"
    printf '  rebuilt:  %s  (hex %s)  commit %s, glibc floor %s\n' "$built_b64" "$built_hex" "$rev" "$floor"
    [ -z "$signing_job" ] || echo "  (signed: the deployed hash is the signed zip's; the verdict rests on the checks above)"
}

# ---------------------------------------------------------------- the deployed zip
# Needed only for a report (unsigned) or for the content check (signed). Real Lambda
# answers get-function with a presigned S3 URL valid for about 10 minutes; an emulator
# may give a URL that leads nowhere (moto's does), hence --deployed-zip.
fetch_deployed() {  # -> path of a zip whose sha256 is CodeSha256, or nothing
    if [ -n "$deployed_zip" ]; then
        if [ "$(sha256_b64 "$deployed_zip")" = "$code_sha" ]; then
            echo "$deployed_zip"
        else
            say "--deployed-zip $deployed_zip is not the deployed code (sha256 $(sha256_b64 "$deployed_zip"))"
        fi
        return 0
    fi
    [ -n "$location" ] || { say "no deployed zip: give --deployed-zip FILE"; return 0; }
    if py "$location" "$work/deployed.zip" <<'EOF'
import shutil, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
        shutil.copyfileobj(r, f)
except Exception as e:
    print(f"verify: cannot download Code.Location ({type(e).__name__}: {e})", file=sys.stderr)
    sys.exit(1)
EOF
    then
        if [ "$(sha256_b64 "$work/deployed.zip")" = "$code_sha" ]; then
            echo "$work/deployed.zip"
        else
            say "the download of Code.Location is not the deployed code (URL expired or replaced?)"
        fi
    else
        say "no deployed zip: give --deployed-zip FILE (the file deployed, or 'aws lambda get-function' Code.Location downloaded within its 10 minutes)"
    fi
}

# compare the entries of two zips: every entry of the rebuilt one must be in the deployed one
# with the same bytes and mode; prints the deployed zip's other entries. Exit 0 if so.
compare_entries() {
    py "$1" "$2" <<'EOF'
import hashlib, sys, zipfile
built, deployed = (zipfile.ZipFile(p) for p in sys.argv[1:3])
d = {i.filename: i for i in deployed.infolist()}
ok = True
for i in built.infolist():
    j = d.pop(i.filename, None)
    if j is None:
        print(f"  entry {i.filename}: missing from the deployed zip"); ok = False; continue
    hb = hashlib.sha256(built.read(i)).hexdigest()
    hd = hashlib.sha256(deployed.read(j)).hexdigest()
    same_mode = (i.external_attr >> 16) == (j.external_attr >> 16)
    print(f"  entry {i.filename}: {'same bytes' if hb == hd else 'DIFFERENT bytes'} "
          f"(sha256 {hd}){'' if same_mode else ', different mode'}")
    ok &= hb == hd and same_mode
for name, j in d.items():
    print(f"  entry {name}: only in the deployed zip ({j.file_size} bytes)")
sys.exit(0 if ok else 1)
EOF
}

write_report() {  # DEPLOYED_ZIP
    local a=$work/diff/rebuilt b=$work/diff/deployed left right
    mkdir -p "$a" "$b" "$(dirname "$report")"
    py "$zip" "$a" "$1" "$b" <<'EOF'
import sys, zipfile
for z, d in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    zipfile.ZipFile(z).extractall(d)
EOF
    left=$a/bootstrap right=$b/bootstrap
    if ! [ -f "$right" ]; then left=$zip right=$1; fi   # no bootstrap: compare the zips
    if command -v diffoscope >/dev/null; then
        local cap=()
        [ "$max_report" -gt 0 ] && cap=(--max-report-size "$max_report" --max-text-report-size "$max_report")
        say "diffoscope $left $right -> $report"
        local rc=0
        diffoscope --no-progress --text "$report" --text-color never ${cap[@]+"${cap[@]}"} \
            --timeout 600 "$left" "$right" >/dev/null 2>"$work/diffoscope.err" || rc=$?
        case $rc in
            0|1) ;;
            *) say "diffoscope failed:"; tail -5 "$work/diffoscope.err" >&2 ;;
        esac
    else
        say "diffoscope is not installed (Debian: apt-get install diffoscope-minimal): a shorter report"
        {
            echo "No diffoscope on this machine: sizes, hashes and strings only."
            for f in "$left" "$right"; do
                printf '%s  %s bytes  sha256 %s\n' "$f" "$(wc -c <"$f" | tr -d ' ')" \
                    "$(b64_to_hex "$(sha256_b64 "$f")")"
            done
            echo "differing bytes: $(cmp -l "$left" "$right" 2>/dev/null | wc -l | tr -d ' ')"
            echo "--- strings (rebuilt) vs +++ strings (deployed):"
            diff <(strings -a -n 6 "$left" 2>/dev/null) <(strings -a -n 6 "$right" 2>/dev/null) || true
        } >"$report.full"
        if [ "$max_report" -gt 0 ]; then head -c "$max_report" "$report.full" >"$report"; rm -f "$report.full"
        else mv "$report.full" "$report"; fi
    fi
    if [ -s "$report" ]; then
        say "report: $report ($(wc -c <"$report" | tr -d ' ') bytes)"
    else
        say "the report is empty"
    fi
}

# ---------------------------------------------------------------- unsigned: hashes
if [ -z "$signing_job" ]; then
    if [ "$built_b64" = "$code_sha" ]; then
        summary MATCH
        exit 0
    fi
    summary MISMATCH
    case $runtime:$floor in
        provided.al2023:2.26) say "the function runs provided.al2023: a zip built with --glibc 2.34 would also run there; try it if that is how it was built" ;;
    esac
    dz=$(fetch_deployed)
    if [ -n "$dz" ]; then write_report "$dz"; else say "no report: the deployed zip is not at hand"; fi
    exit 1
fi

# ---------------------------------------------------------------- signed: the signing job
# Signer puts the signature in the zip, so CodeSha256 is the signed zip's hash and never
# the build's. What the job records about its input is the S3 object it read (bucket, key,
# version id), no hash of it: the rebuilt zip is compared with that object version's bytes.
echo "signed: $signing_job (profile version ${signing_profile:-?})"
job_id=${signing_job##*/}
aws_ signer describe-signing-job --job-id "$job_id" >"$work/job.json" ||
    fail "aws signer describe-signing-job --job-id $job_id failed"
eval "$(py "$work/job.json" <<'EOF'
import json, shlex, sys
j = json.load(open(sys.argv[1]))
s3 = (j.get("source") or {}).get("s3") or {}
so = (j.get("signedObject") or {}).get("s3") or {}
out = {"job_status": j.get("status", ""), "job_platform": j.get("platformId", ""),
       "job_revoked": "yes" if j.get("revocationRecord") else "",
       "src_bucket": s3.get("bucketName", ""), "src_key": s3.get("key", ""),
       "src_version": s3.get("version", ""),
       "signed_bucket": so.get("bucketName", ""), "signed_key": so.get("key", "")}
for k, v in out.items():
    print(f"{k}={shlex.quote(str(v))}")
EOF
)"
echo "  job: status $job_status, platform $job_platform${job_revoked:+, REVOKED}"
echo "  unsigned input: s3://$src_bucket/$src_key version $src_version"
echo "  signed output:  s3://$signed_bucket/$signed_key"
verdict= checks=0
if [ -n "$src_bucket" ] && [ -n "$src_version" ] &&
   aws_ s3api get-object --bucket "$src_bucket" --key "$src_key" --version-id "$src_version" \
       "$work/source.zip" >/dev/null; then
    src_b64=$(sha256_b64 "$work/source.zip")
    checks=$((checks + 1))
    if [ "$src_b64" = "$built_b64" ]; then
        echo "  the job's input is the rebuilt zip: sha256 $src_b64"
    else
        echo "  the job's input is NOT the rebuilt zip: sha256 $src_b64 (hex $(b64_to_hex "$src_b64"))"
        verdict=MISMATCH
    fi
else
    say "cannot read the job's input object (deleted version, or no s3:GetObjectVersion)"
fi
dz=$(fetch_deployed)
if [ -n "$dz" ]; then
    checks=$((checks + 1))
    echo "  deployed zip against the rebuilt one:"
    compare_entries "$zip" "$dz" || verdict=MISMATCH
fi
[ "$checks" -gt 0 ] || fail "nothing to compare: neither the job's input object nor the deployed zip could be read"
if [ "$verdict" = MISMATCH ]; then
    summary MISMATCH
    [ -n "$dz" ] && write_report "$dz"
    exit 1
fi
summary MATCH
[ "$checks" -eq 2 ] || say "only $checks of the 2 checks could run (see above)"
exit 0
