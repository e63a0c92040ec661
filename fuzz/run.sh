#!/usr/bin/env bash
# Fuzzes each target for a bounded time and fails if any input crashes one.
#
#   bash fuzz/run.sh [SECONDS]     # per target; default 60
#
# EVENT_RECORDER_FUZZ_FLAGS: extra `cargo fuzz build/run` flags, for example
# "--dev --sanitizer none" (a much quicker build: no optimisation and no ASan,
# which adds little here: the crate has no unsafe code and the C library it
# links is not instrumented either). Debug assertions are on either way.
#
# Installs what it needs if missing: the pinned nightly toolchain (rustup,
# minimal profile) and the pinned cargo-fuzz (into target/fuzz-tools, not
# ~/.cargo). If the pinned nightly cannot be installed, an installed `nightly`
# is used instead, with a warning.
# Each target runs on a scratch copy of its seed corpus, so the committed
# corpus never grows. Inputs that crash are kept in fuzz/artifacts/<target>/;
# to reproduce one, from the repository root:
#   PATH=target/fuzz-tools/bin:$PATH cargo +nightly-2026-10-30 fuzz run <target> <file>
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS per target, a whole number >= 1]" >&2
  exit 2
fi

CARGO_FUZZ_VERSION=0.13.2
TOOLCHAIN=${EVENT_RECORDER_FUZZ_TOOLCHAIN:-nightly-2026-10-30}
TARGETS=(decrypt_body parse_event)
read -r -a flags <<<"${EVENT_RECORDER_FUZZ_FLAGS:-}"

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools=$root/target/fuzz-tools
start=$SECONDS

has() { rustup run "$1" rustc --version >/dev/null 2>&1; }
if ! has "$TOOLCHAIN"; then
  echo "== installing the $TOOLCHAIN toolchain"
  if ! rustup toolchain install --no-self-update --profile minimal "$TOOLCHAIN"; then
    has nightly || exit 1
    echo "warning: $TOOLCHAIN could not be installed; using the installed nightly" >&2
    TOOLCHAIN=nightly
  fi
fi
echo "== toolchain: $(rustup run "$TOOLCHAIN" rustc --version)"

if [[ $("$tools/bin/cargo-fuzz" --version 2>/dev/null) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  cargo "+$TOOLCHAIN" install --quiet --locked --force --root "$tools" \
    --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
export PATH="$tools/bin:$PATH"
echo "== $(cargo-fuzz --version) ready ($((SECONDS - start)) s)"

build_start=$SECONDS
cargo "+$TOOLCHAIN" fuzz build ${flags[@]+"${flags[@]}"}
echo "== targets built in $((SECONDS - build_start)) s"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/event-recorder-fuzz-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

failed=()
summary=()
for target in "${TARGETS[@]}"; do
  corpus=$scratch/corpus/$target
  log=$scratch/$target.log
  mkdir -p "$corpus"
  cp fuzz/corpus/"$target"/* "$corpus"/
  echo "== $target: $seconds s on a copy of $(ls "$corpus" | wc -l) seed inputs"
  touch "$scratch/$target.started"
  status=0
  # -timeout: one input taking 10 s is a hang, reported as a crash.
  cargo "+$TOOLCHAIN" fuzz run ${flags[@]+"${flags[@]}"} "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  line="$target: ${execs:-?} executions (${rate:-?}/s), corpus $(ls "$corpus" | wc -l) inputs"
  if ((status != 0)); then
    line+=", FAILED (exit $status)"
    failed+=("$target")
    tail -n 60 "$log"
    find fuzz/artifacts/"$target" -type f -newer "$scratch/$target.started" 2>/dev/null |
      sed 's/^/  input that crashed it: /'
  fi
  summary+=("$line")
  echo "== $line"
done

echo
echo "== fuzzing summary ($((SECONDS - start)) s in all)"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "== crashes found in: ${failed[*]}" >&2
  exit 1
fi
