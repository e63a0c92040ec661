#!/usr/bin/env bash
# Runs a command as on a fresh machine, in a mount namespace of its own (root
# only) where no PostgreSQL server binaries and no Docker engine can be found:
#   .ci/as-fresh-machine.sh cargo test --locked
# Nothing outside the namespace changes; the mounts go when the command ends.
set -euo pipefail

if [[ "${1:-}" != --inside ]]; then
  exec unshare --mount --propagation private bash "$0" --inside "$@"
fi
shift

# Debian's PostgreSQL packages live here; links on PATH (such as
# /usr/local/bin/initdb) point in here too, and dangle once it is empty.
if [[ -d /usr/lib/postgresql ]]; then
  mount -t tmpfs -o ro,size=1m none /usr/lib/postgresql
fi
# Any server binary left on PATH becomes /dev/null (not a program).
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  for program in initdb postgres pg_ctl; do
    if [[ -f "$dir/$program" ]]; then
      mount --bind /dev/null "$dir/$program"
    fi
  done
done
# The Docker engine's socket, and DOCKER_HOST pointing nowhere.
if [[ -S /run/docker.sock ]]; then
  mount --bind /dev/null /run/docker.sock
fi
export DOCKER_HOST=unix:///nonexistent/docker.sock
unset EVENT_RECORDER_TEST_DATABASE_URL EVENT_RECORDER_TEST_POSTGRES

# The harness must find neither: say so before running, and stop if it could.
if command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  echo "as-fresh-machine: PostgreSQL's binaries are still visible" >&2
  exit 1
fi
if docker info >/dev/null 2>&1; then
  echo "as-fresh-machine: a Docker engine still answers" >&2
  exit 1
fi
echo "as-fresh-machine: no PostgreSQL binaries, no Docker engine"
exec "$@"
