#!/usr/bin/env bash
# End-to-end check of nix/verify.sh against moto (Lambda emulated on 127.0.0.1):
#   1. deploys the zip of HEAD (create-function, provided.al2023, x86_64) and requires
#      `nix/verify.sh --function ... --commit HEAD` to print MATCH and exit 0;
#   2. deploys a zip built from HEAD with one byte of src/ changed (update-function-code)
#      and requires MISMATCH, exit 1 and a non-empty diffoscope report;
#   3. the signed path, with Signer stood in (moto has none): get-function gains a
#      SigningJobArn whose job read HEAD's zip from a versioned bucket; the deployed zip is
#      HEAD's plus one entry; requires MATCH, the job's input checked and the entry listed.
#   nix/checks/verify-e2e.sh [--zip-dir DIR] [--scratch DIR] [--keep]
# --zip-dir DIR: HEAD's x86_64 zip already built by nix/build-zip.sh (DIR holds
#   event-recorder-lambda.zip and manifest.json); without it, this script builds it.
# --scratch DIR: verify.sh's scratch directory, also used for the changed build (the same
#   checkout path is what lets a warm CARGO_TARGET_DIR rebuild in about a minute).
# CARGO_TARGET_DIR is honoured. moto[server] 5.2.5 and awscli, pinned below, go into a
# virtualenv of their own under ${EVENT_RECORDER_TOOLS_DIR:-$HOME/.cache/event-recorder-tools}
# (PyPI on first use). Needs diffoscope (Debian: diffoscope-minimal) for the report check.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
src=$(cd "$here/../.." && pwd -P)
say() { echo "verify-e2e: $*" >&2; }
die() { echo "verify-e2e: FAIL: $*" >&2; exit 1; }

zip_dir= keep=
scratch=${TMPDIR:-/tmp}/event-recorder-verify-$(id -u)
while [ $# -gt 0 ]; do
    case $1 in
        --zip-dir) zip_dir=$(cd "${2:?}" && pwd -P); shift 2 ;;
        --scratch) scratch=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
command -v diffoscope >/dev/null || die "diffoscope is needed (Debian: apt-get install diffoscope-minimal)"
t0=$(date +%s)
lap() { echo "verify-e2e: $1 took $(( $(date +%s) - $2 ))s" >&2; }

# ---- pinned moto and AWS CLI (pip freeze of a fresh install of the two)
moto=5.2.5 awscli=1.46.2
constraints="moto[server]==$moto
awscli==$awscli
annotated-types==0.8.0
antlr4-python3-runtime==4.13.2
attrs==26.1.0
aws-xray-sdk==2.15.0
blinker==1.9.0
boto3==1.44.8
botocore==1.44.8
certifi==2026.10.19.post1
cffi==2.1.1
cfn-lint==1.58.0
charset-normalizer==3.5.3
click==8.5.1
colorama==0.4.6
cryptography==50.0.2
docker==7.2.0
docutils==0.19
Flask==3.1.3
flask-cors==6.0.5
graphql-core==3.3.2
idna==3.20
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
joserfc==1.8.0
jsonpatch==1.48
jsonpath-ng==1.17.0
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-path==0.5.0
jsonschema-specifications==2025.9.1
lazy-object-proxy==1.13.0
MarkupSafe==3.0.4
mpmath==1.3.0
networkx==3.6.1
openapi-schema-validator==0.9.0
openapi-spec-validator==0.9.0
pathable==0.6.0
py-partiql-parser==0.6.3
pyasn1==0.6.5
pycparser==3.12
pydantic==2.14.4
pydantic-settings==2.16.3
pydantic_core==2.50.5
pyparsing==3.3.3
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
PyYAML==6.0.4
referencing==0.37.0
regex==2026.12.2
requests==2.34.2
responses==0.26.3
rfc3339-validator==0.1.4
rpds-py==2026.9.1
rsa==4.7.2
s3transfer==0.19.3
six==1.17.0
sympy==1.14.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
wrapt==2.5.2
xmltodict==1.0.4"
tools=${EVENT_RECORDER_TOOLS_DIR:-${HOME:?}/.cache/event-recorder-tools}
venv=$tools/verify-e2e-moto-$moto-awscli-$awscli
stamp=$venv/.installed
mkdir -p "$tools"
installed() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$constraints" ] &&
    [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/aws" ]; }
if ! installed; then
    exec 9>"$venv.lock"
    flock 9
    if ! installed; then
        say "installing moto $moto and awscli $awscli into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "cannot create a virtualenv (Debian: apt-get install python3-venv)"
        printf '%s\n' "$constraints" | grep -v '^moto\[' >"$venv/constraints.txt"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            --only-binary=:all: --constraint "$venv/constraints.txt" \
            "moto[server]==$moto" "awscli==$awscli" || die "pip install failed"
        printf '%s' "$constraints" >"$stamp"
    fi
    exec 9>&-
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/event-recorder-verify-e2e-XXXXXX")
moto_pid= wt=
cleanup() {
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null && wait "$moto_pid" 2>/dev/null
    if [ -n "$wt" ]; then
        git -C "$src" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
        git -C "$src" worktree prune >/dev/null 2>&1 || true
    fi
    if [ -n "$keep" ]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

mkdir -p "$scratch"
scratch=$(cd "$scratch" && pwd -P)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$scratch/target}
head=$(git -C "$src" rev-parse HEAD)

# A build at $scratch/src (the path verify.sh builds at): HEAD, optionally with one byte changed.
build_at_scratch() {  # OUT [mutate]
    [ -e "$scratch/src" ] && { git -C "$src" worktree remove --force "$scratch/src" >/dev/null 2>&1 ||
        die "$scratch/src exists and is not a worktree"; }
    git -C "$src" worktree add --detach --quiet "$scratch/src" "$head"
    wt=$scratch/src
    if [ "${2:-}" = mutate ]; then
        # one byte of a string literal that the binary carries: 'd' -> 'D'
        python3 - "$wt/src/bin/bootstrap.rs" <<'EOF' || die "the literal to change is gone from src/bin/bootstrap.rs: pick another in this script"
import sys
p = sys.argv[1]; s = open(p).read()
old = '"start-up failed"'
if s.count(old) != 1:
    sys.exit(1)
open(p, "w").write(s.replace(old, '"start-up faileD"'))
EOF
        [ "$(git -C "$wt" diff --numstat | awk '{print $1+$2}')" = 2 ] || die "the change is not one line"
    fi
    (cd "$wt" && nix/build-zip.sh --arch x86_64 --out "$1") >"$1.log" 2>&1 || {
        tail -30 "$1.log" >&2; die "build failed ($1)"; }
    git -C "$src" worktree remove --force "$wt"; wt=
}

t=$(date +%s)
if [ -n "$zip_dir" ]; then
    [ -f "$zip_dir/event-recorder-lambda.zip" ] || die "no event-recorder-lambda.zip in $zip_dir"
    cp "$zip_dir/event-recorder-lambda.zip" "$zip_dir/manifest.json" "$W/"
    good=$W
    say "HEAD's zip from $zip_dir"
else
    say "building HEAD ($head) at $scratch/src"
    build_at_scratch "$W/good"
    good=$W/good
    lap "the build of HEAD" "$t"
fi
good_b64=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["zip_sha256_base64"])' "$good/manifest.json")
t=$(date +%s)
say "building HEAD with one byte of src/bin/bootstrap.rs changed"
build_at_scratch "$W/bad" mutate
lap "the changed build" "$t"
bad_b64=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["zip_sha256_base64"])' "$W/bad/manifest.json")
[ "$good_b64" != "$bad_b64" ] || die "the changed source gave the same zip"

# ---- moto
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$W/moto.log" 2>&1 &
moto_pid=$!
python3 - "$port" <<'EOF' || die "moto did not listen on port $port"
import socket, sys, time
end = time.time() + 30
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close(); sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
EOF
export PATH=$venv/bin:$PATH AWS_ENDPOINT_URL=http://127.0.0.1:$port \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN= \
    AWS_REGION=eu-west-2 AWS_DEFAULT_REGION=eu-west-2 AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PROFILE= AWS_PAGER=
unset AWS_SESSION_TOKEN AWS_PROFILE
fn=event-recorder-verify-e2e
role=$(aws iam create-role --role-name "$fn" --output text --query Role.Arn \
    --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
deployed=$(aws lambda create-function --function-name "$fn" --runtime provided.al2023 \
    --architectures x86_64 --handler bootstrap --role "$role" \
    --zip-file "fileb://$good/event-recorder-lambda.zip" --output text --query CodeSha256)
[ "$deployed" = "$good_b64" ] || die "moto reports CodeSha256 $deployed for a zip of sha256 $good_b64"

run_verify() {  # NAME, then verify.sh's arguments; sets rc, leaves stdout in $W/NAME.out
    local name=$1; shift
    local t=$(date +%s)
    rc=0
    "$src/nix/verify.sh" --function "$fn" --commit HEAD --scratch "$scratch" "$@" \
        >"$W/$name.out" 2>"$W/$name.err" || rc=$?
    sed 's/^/    /' "$W/$name.out" >&2
    lap "verify ($name)" "$t"
}

# ---- 1: the deployed zip is HEAD's
run_verify match --report "$W/match-report.txt"
[ "$rc" = 0 ] || { cat "$W/match.err" >&2; die "verify exited $rc on HEAD's own zip (want 0)"; }
[ "$(head -1 "$W/match.out")" = MATCH ] || die "verify did not print MATCH on HEAD's own zip"
grep -q "deployed: $good_b64 " "$W/match.out" || die "verify did not print the deployed hash"
grep -q "rebuilt:  $good_b64 " "$W/match.out" || die "verify did not print the rebuilt hash"
[ ! -e "$W/match-report.txt" ] || die "verify wrote a report on a match"

# ---- 2: the deployed zip is one byte of source away
deployed=$(aws lambda update-function-code --function-name "$fn" \
    --zip-file "fileb://$W/bad/event-recorder-lambda.zip" --output text --query CodeSha256)
[ "$deployed" = "$bad_b64" ] || die "moto reports CodeSha256 $deployed after the update, want $bad_b64"
# moto's Code.Location names a bucket it does not have: the deployed zip is passed in.
run_verify mismatch --deployed-zip "$W/bad/event-recorder-lambda.zip" \
    --report "$W/mismatch-report.txt" --max-report-size 262144
[ "$rc" = 1 ] || { cat "$W/mismatch.err" >&2; die "verify exited $rc on the changed zip (want 1)"; }
[ "$(head -1 "$W/mismatch.out")" = MISMATCH ] || die "verify did not print MISMATCH on the changed zip"
grep -q "deployed: $bad_b64 " "$W/mismatch.out" || die "verify did not print the deployed hash"
grep -q "rebuilt:  $good_b64 " "$W/mismatch.out" || die "verify did not print the rebuilt hash"
[ -s "$W/mismatch-report.txt" ] || { cat "$W/mismatch.err" >&2; die "no diffoscope report"; }
size=$(wc -c <"$W/mismatch-report.txt" | tr -d ' ')
[ "$size" -le $((262144 + 4096)) ] || die "the report ($size bytes) is over its cap"
grep -q "faileD" "$W/mismatch-report.txt" || say "note: the report does not show the changed string"
say "report: $size bytes; its first lines:"
head -8 "$W/mismatch-report.txt" | cut -c1-160 | sed 's/^/    /' >&2

# ---- 3: a signed function, with Signer stood in (moto has no signing jobs): the job's
# input is HEAD's zip, kept as a version in a versioned bucket; the deployed zip is HEAD's
# zip with one more entry (where real Signer puts its signature is not documented).
aws s3api create-bucket --bucket "$fn-unsigned" \
    --create-bucket-configuration LocationConstraint=eu-west-2 >/dev/null
aws s3api put-bucket-versioning --bucket "$fn-unsigned" --versioning-configuration Status=Enabled
version=$(aws s3api put-object --bucket "$fn-unsigned" --key unsigned/event-recorder-lambda.zip \
    --body "$good/event-recorder-lambda.zip" --output text --query VersionId)
# a later object under the same key: verify must read the job's version, not the latest
aws s3api put-object --bucket "$fn-unsigned" --key unsigned/event-recorder-lambda.zip \
    --body "$W/bad/event-recorder-lambda.zip" >/dev/null
python3 - "$good/event-recorder-lambda.zip" "$W/signed.zip" <<'EOF2'
import shutil, sys, zipfile
shutil.copy(sys.argv[1], sys.argv[2])
with zipfile.ZipFile(sys.argv[2], "a") as z:
    z.writestr("stand-in-signature", b"not a real signature")
EOF2
signed_b64=$(aws lambda update-function-code --function-name "$fn" \
    --zip-file "fileb://$W/signed.zip" --output text --query CodeSha256)
job=0123abcd-0000-4000-8000-00000000e2e0
cat >"$W/job.json" <<EOF2
{"jobId": "$job", "status": "Succeeded", "platformId": "AWSLambda-SHA384-ECDSA",
 "profileVersion": "E2eTest123",
 "source": {"s3": {"bucketName": "$fn-unsigned", "key": "unsigned/event-recorder-lambda.zip",
                   "version": "$version"}},
 "signedObject": {"s3": {"bucketName": "$fn-unsigned", "key": "signed/$job.zip"}}}
EOF2
mkdir -p "$W/stub"
cat >"$W/stub/aws" <<EOF2
#!/usr/bin/env bash
# Signer stood in; get-function gains the signing fields; the rest is the real CLI.
case " \$* " in
    *" signer describe-signing-job "*) cat "$W/job.json" ;;
    *" lambda get-function "*) "$venv/bin/aws" "\$@" | python3 -c '
import json, sys
d = json.load(sys.stdin)
d["Configuration"]["SigningJobArn"] = "arn:aws:signer:eu-west-2:123456789012:/signing-jobs/$job"
d["Configuration"]["SigningProfileVersionArn"] = "arn:aws:signer:eu-west-2:123456789012:/signing-profiles/e2e/E2eTest123"
json.dump(d, sys.stdout)' ;;
    *) exec "$venv/bin/aws" "\$@" ;;
esac
EOF2
chmod +x "$W/stub/aws"
PATH=$W/stub:$PATH run_verify signed --deployed-zip "$W/signed.zip" --report "$W/signed-report.txt"
[ "$rc" = 0 ] || { cat "$W/signed.err" >&2; die "verify exited $rc on the signed function (want 0)"; }
grep -qx MATCH "$W/signed.out" || die "verify did not print MATCH on the signed function"
grep -q "the job's input is the rebuilt zip" "$W/signed.out" || die "verify did not check the job's input"
grep -q "entry bootstrap: same bytes" "$W/signed.out" || die "verify did not compare bootstrap"
grep -q "entry stand-in-signature: only in the deployed zip" "$W/signed.out" ||
    die "verify did not list the deployed zip's extra entry"
grep -q "deployed: $signed_b64 " "$W/signed.out" || die "verify did not print the signed zip's hash"

lap "verify-e2e" "$t0"
echo "verify-e2e: pass (MATCH on HEAD's zip, MISMATCH and a report on the changed one, MATCH on a stand-in signed one)"
