#!/usr/bin/env bash
# Security gate on deploy/template.yaml: a pinned checkov must find no failed check,
# and every check the template skips must say why.
#   deploy/checkov.sh [TEMPLATE]   check TEMPLATE (default: deploy/template.yaml)
#   deploy/checkov.sh --self-test  show that the gate fails on planted problems
# Installs checkov (and its dependencies, pinned in checkov-requirements.txt) into a
# virtualenv of its own under ${EVENT_RECORDER_TOOLS_DIR:-$HOME/.cache/event-recorder-tools},
# once; later runs reuse it. Needs python3 with the venv module (Debian: apt-get install
# python3-venv) and, for the first run, access to PyPI. The scan itself is offline
# (--skip-download).
#
# Skips live in the template, in each resource's Metadata:
#   checkov: {skip: [{id: CKV_..., comment: <why it does not apply>}]}
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
die() { echo "checkov: $*" >&2; exit 1; }

version=3.3.30
requirements=$here/checkov-requirements.txt
python=${PYTHON:-python3}
command -v "$python" >/dev/null || die "$python not found"
[ -f "$requirements" ] || die "no $requirements"
grep -qx "checkov==$version" "$requirements" || die "$requirements does not pin checkov==$version"

tools=${EVENT_RECORDER_TOOLS_DIR:-${HOME:?}/.cache/event-recorder-tools}
venv=$tools/checkov-$version
stamp=$venv/.installed   # written last: holds the requirements the venv was built from
mkdir -p "$tools"

installed() { [ -f "$stamp" ] && cmp -s "$stamp" "$requirements" &&
    [ "$("$venv/bin/checkov" --version 2>/dev/null)" = "$version" ]; }

install() {
    installed && return
    exec 9>"$venv.lock"
    flock 9   # another run may be installing the same venv
    if ! installed; then
        echo "checkov: installing checkov $version into $venv" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv" ||
            die "cannot create a virtualenv with $python (Debian: apt-get install python3-venv)"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            --only-binary=:all: --constraint "$requirements" "checkov==$version" ||
            die "pip install checkov==$version failed"
        cp "$requirements" "$stamp"
        installed || die "checkov $version did not install correctly in $venv"
    fi
    exec 9>&-
}

# Scans the templates given in one checkov run (its start-up is most of the time) and
# prints a verdict for each: it fails on a failed check, a skip without a reason, or a
# file checkov does not read as a template (no check passed). Fails if any fails.
gate() {
    local report status=0 files=()
    for f in "$@"; do files+=(--file "$f"); done
    report=$(mktemp /tmp/checkov-report-XXXXXX.json)
    # checkov's exit status is 1 on failed checks; the report says which.
    "$venv/bin/checkov" --framework cloudformation --skip-download --output json \
        "${files[@]}" >"$report" 2>"$report.err" || true
    "$venv/bin/python" - "$report" "$@" <<'EOF' || status=$?
import json, os, sys

report, templates = sys.argv[1], [os.path.realpath(t) for t in sys.argv[2:]]
try:
    data = json.load(open(report))
except ValueError:
    data = {}
if isinstance(data, list):  # one entry per framework; only cloudformation runs
    data = next((d for d in data if d.get("check_type") == "cloudformation"), {})
results = data.get("results", {})
version = data.get("summary", {}).get("checkov_version", "?")


def of(kind, template):
    return [c for c in results.get(kind, [])
            if os.path.realpath(c.get("file_abs_path", "")) == template]


failing = 0
for template in templates:
    passed, failed, skipped = (of(kind, template)
                               for kind in ("passed_checks", "failed_checks", "skipped_checks"))
    problems = [f"FAILED {c['check_id']} {c['resource']}: {c['check_name']}" for c in failed]
    for c in skipped:
        comment = (c.get("check_result", {}).get("suppress_comment") or "").strip()
        if not comment or comment == "No comment provided":
            problems.append(f"SKIPPED WITHOUT A REASON {c['check_id']} {c['resource']}")
    if not passed:
        problems.append("no check passed: not read as a CloudFormation template")
    for line in problems:
        print(f"checkov: {line}")
    verdict = "fail" if problems else "pass"
    failing += bool(problems)
    print(f"checkov: {version} on {template}: {len(passed)} passed, {len(failed)} failed, "
          f"{len(skipped)} skipped (each with its reason): {verdict}")
sys.exit(1 if failing else 0)
EOF
    if [ "$status" -ne 0 ] && [ -s "$report.err" ]; then tail -5 "$report.err" | sed 's/^/    /'; fi
    rm -f "$report" "$report.err"
    return "$status"
}

self_test() {
    self_test_dir=$(mktemp -d /tmp/checkov-self-test-XXXXXX)
    trap 'rm -rf "$self_test_dir"' EXIT
    local cases=() expected=()
    # a case: its name, the verdict the gate must give, and a python snippet that
    # edits the copy of the template at argv[1]
    plant() {
        local copy=$self_test_dir/$1.yaml
        cp "$here/template.yaml" "$copy"
        if [ -n "$3" ]; then "$python" - "$copy" <<<"$3"; fi
        cases+=("$copy")
        expected+=("$2")
    }
    plant unchanged pass ''
    # a queue with encryption turned off
    plant unencrypted-queue fail '
import sys, pathlib
p = pathlib.Path(sys.argv[1]); s = p.read_text()
planted = """  PlantedQueue:
    Type: AWS::SQS::Queue
    Properties:
      SqsManagedSseEnabled: false

Outputs:
"""
assert "\nOutputs:\n" in s
p.write_text(s.replace("\nOutputs:\n", "\n" + planted, 1))'
    # a skip whose reason was removed
    plant skip-without-reason fail '
import re, sys, pathlib
p = pathlib.Path(sys.argv[1]); s = p.read_text()
s2 = re.sub(r"(- id: CKV_AWS_21\n)\s+comment: >-\n(\s{14}.*\n)+", r"\1", s, count=1)
assert s2 != s
p.write_text(s2)'
    # a file checkov does not read as a template
    plant not-a-template fail '
import sys, pathlib
pathlib.Path(sys.argv[1]).write_text("just: text\n")'

    local out i name verdict fails=0
    out=$(gate "${cases[@]}" 2>&1) || true
    for i in "${!cases[@]}"; do
        name=$(basename "${cases[$i]}" .yaml)
        verdict=$(grep -F " on $(realpath "${cases[$i]}"): " <<<"$out" |
            sed -n 's/.*: \(pass\|fail\)$/\1/p')
        if [ "$verdict" = "${expected[$i]}" ]; then
            echo "self-test: $name: ${verdict}ed (ok)"
        else
            echo "self-test: $name: ${verdict:-no verdict}, expected ${expected[$i]}"
            fails=$((fails + 1))
        fi
    done
    { grep -E '^checkov: (FAILED|SKIPPED|no check)' <<<"$out" || true; } | sed 's/^/    /'
    if [ "$fails" -ne 0 ]; then
        sed 's/^/    /' <<<"$out"
        echo "self-test: $fails case(s) wrong" >&2
        return 1
    fi
    echo "self-test: the gate passes the template and fails each planted problem"
}

install
if [ "${1:-}" = "--self-test" ]; then
    self_test
else
    template=${1:-$here/template.yaml}
    [ -f "$template" ] || die "no template at $template"
    gate "$template"
fi
