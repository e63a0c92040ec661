# Sourced by the checks' --self-test (crane-eval.sh, pins-agree.sh, supply-chain.sh): copy
# the tree, plant one fault with a Python snippet, run the check on the copy, and require
# that it fails and says why; the unchanged copy must pass.
#   self_test_init NAME FAIL_RX   NAME: the check, for the temp dir; FAIL_RX: its failure
#                                 lines, a few of which are shown for each detected case
#   check=(COMMAND...)            what runs, with the copy's path appended; a case may
#                                 set it differently (options, environment)
#   self_test_case CASE EDIT [RX...]
#                                 CASE "unchanged" must pass; any other must fail with
#                                 output matching every RX (extended regular expressions)
#   self_test_done                prints the verdict and exits
# Needs snapshot.sh sourced first.

self_test_init() {
    st_tmp=$(mktemp -d "/tmp/$1-self-test-XXXXXX")
    st_fail_rx=$2
    st_fails=0
    trap 'rm -rf "$st_tmp"' EXIT
}

self_test_case() {
    local name=$1 edit=$2 dir=$st_tmp/$1 out rx
    shift 2
    mkdir -p "$dir"
    snapshot "$dir"
    if [ -n "$edit" ]; then python3 - "$dir" <<<"$edit"; fi
    if out=$("${check[@]}" "$dir" 2>&1); then
        if [ "$name" = unchanged ]; then
            echo "self-test: unchanged copy passes (ok)"
        else
            echo "self-test: $name: NOT detected"
            echo "$out" | sed 's/^/    /'
            st_fails=$((st_fails + 1))
        fi
        return
    fi
    if [ "$name" = unchanged ]; then
        echo "self-test: unchanged copy FAILS:"
        echo "$out" | sed 's/^/    /'
        st_fails=$((st_fails + 1))
        return
    fi
    for rx in "$@"; do
        if ! grep -qE -- "$rx" <<<"$out"; then
            echo "self-test: $name: failed, but without /$rx/:"
            echo "$out" | sed 's/^/    /'
            st_fails=$((st_fails + 1))
            return
        fi
    done
    echo "self-test: $name: detected (ok)"
    grep -E -- "$st_fail_rx" <<<"$out" | head -3 | sed 's/^/    /'
}

self_test_done() {
    if [ "$st_fails" -ne 0 ]; then echo "self-test: $st_fails case(s) wrong"; exit 1; fi
    echo "self-test: ok"
    exit 0
}
