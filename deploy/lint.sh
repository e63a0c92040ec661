#!/usr/bin/env bash
# Lints deploy/template.yaml with a pinned cfn-lint. Fails on any error or warning.
#   deploy/lint.sh [TEMPLATE] [-- EXTRA CFN-LINT ARGS]
# Installs cfn-lint (and its dependencies, pinned below) into a virtualenv of its own
# under ${EVENT_RECORDER_TOOLS_DIR:-$HOME/.cache/event-recorder-tools}, once; later runs
# reuse it. Needs python3 with the venv module (Debian: apt-get install python3-venv)
# and, for the first run, access to PyPI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
die() { echo "lint: $*" >&2; exit 1; }

template=$here/template.yaml
if [ $# -gt 0 ] && [ "$1" != "--" ]; then template=$1; shift; fi
[ "${1:-}" = "--" ] && shift
[ -f "$template" ] || die "no template at $template"

version=1.58.0
# `pip freeze` of a fresh install of cfn-lint==$version, so every run lints with the same code.
constraints="cfn-lint==$version
jsonpatch==1.48
jsonpointer==3.12
mpmath==1.3.0
networkx==3.6.1
PyYAML==6.0.4
regex==2026.11.19
sympy==1.14.0
typing_extensions==4.16.0"
python=${PYTHON:-python3}
command -v "$python" >/dev/null || die "$python not found"

tools=${EVENT_RECORDER_TOOLS_DIR:-${HOME:?}/.cache/event-recorder-tools}
venv=$tools/cfn-lint-$version
stamp=$venv/.installed   # written last: holds the constraints the venv was built from
mkdir -p "$tools"

installed() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$constraints" ] &&
    [ "$("$venv/bin/cfn-lint" --version 2>/dev/null)" = "cfn-lint $version" ]; }

if ! installed; then
    exec 9>"$venv.lock"
    flock 9   # another run may be installing the same venv
    if ! installed; then
        echo "lint: installing cfn-lint $version into $venv" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv" ||
            die "cannot create a virtualenv with $python (Debian: apt-get install python3-venv)"
        printf '%s\n' "$constraints" > "$venv/constraints.txt"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            --only-binary=:all: --constraint "$venv/constraints.txt" "cfn-lint==$version" ||
            die "pip install cfn-lint==$version failed"
        printf '%s' "$constraints" > "$stamp"
        installed || die "cfn-lint $version did not install correctly in $venv"
    fi
    exec 9>&-
fi

# Errors (E) and warnings (W) fail the run; informational findings (I) are
# shown but do not. Suppressions live in the template's Metadata, with reasons.
echo "lint: cfn-lint $version on $template" >&2
status=0
"$venv/bin/cfn-lint" --include-checks I --non-zero-exit-code warning \
    ${@+"$@"} -- "$template" || status=$?
if [ "$status" -eq 0 ]; then
    echo "lint: clean" >&2
else
    echo "lint: cfn-lint found problems (exit $status)" >&2
fi
exit "$status"
