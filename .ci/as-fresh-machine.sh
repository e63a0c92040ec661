#!/usr/bin/env bash
# Runs a command as on a fresh machine, in a mount namespace of its own (root
# only) where none of what a fresh machine lacks can be found: no PostgreSQL
# server binaries, no PgBouncer, no Docker engine, no OpenSSL headers and no
# OpenSSL pkg-config files:
#   .ci/as-fresh-machine.sh cargo test --locked
# Nothing outside the namespace changes; the mounts go when the command ends.
set -euo pipefail

if [[ "${1:-}" != --inside ]]; then
  exec unshare --mount --propagation private bash "$0" --inside "$@"
fi
shift

hide_dir() { # an empty read-only directory over $1
  if [[ -d $1 ]]; then mount -t tmpfs -o ro,size=1m none "$1"; fi
}
# Debian's PostgreSQL packages live here; links on PATH (such as
# /usr/local/bin/initdb) point in here too, and dangle once it is empty.
hide_dir /usr/lib/postgresql
# OpenSSL's headers (the arch directory holds opensslconf.h).
hide_dir /usr/include/openssl
for dir in /usr/include/*-linux-gnu/openssl; do hide_dir "$dir"; done
# Any program left on PATH (or where Debian puts PgBouncer) becomes /dev/null
# (not a program), and so does every pkg-config file of OpenSSL's.
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}" /usr/sbin /usr/local/sbin; do
  for program in initdb postgres pg_ctl pgbouncer; do
    if [[ -f "$dir/$program" ]]; then
      mount --bind /dev/null "$dir/$program"
    fi
  done
done
for pc in /usr/lib/*/pkgconfig/{openssl,libssl,libcrypto}.pc \
  /usr/{lib,share}/pkgconfig/{openssl,libssl,libcrypto}.pc; do
  if [[ -f $pc ]]; then mount --bind /dev/null "$pc"; fi
done
# The Docker engine's socket, and DOCKER_HOST pointing nowhere.
if [[ -S /run/docker.sock ]]; then
  mount --bind /dev/null /run/docker.sock
fi
export DOCKER_HOST=unix:///nonexistent/docker.sock
unset EVENT_RECORDER_TEST_DATABASE_URL EVENT_RECORDER_TEST_POSTGRES
unset OPENSSL_DIR OPENSSL_LIB_DIR OPENSSL_INCLUDE_DIR PKG_CONFIG_PATH

# The tests must find none of it: say so before running, and stop if they could.
visible=()
# `-x`: a program /dev/null stands in for is no longer executable.
for program in initdb postgres pgbouncer; do
  for dir in "${path_dirs[@]}" /usr/sbin /usr/local/sbin; do
    if [[ -x "$dir/$program" && ! -d "$dir/$program" ]]; then visible+=("$dir/$program"); fi
  done
done
for f in /usr/lib/postgresql/*/bin/initdb /usr/include/openssl/ssl.h \
  /usr/include/*-linux-gnu/openssl/opensslconf.h; do
  if [[ -e $f ]]; then visible+=("$f"); fi
done
if command -v pkg-config >/dev/null && pkg-config --exists openssl 2>/dev/null; then
  visible+=("pkg-config's openssl")
fi
if docker info >/dev/null 2>&1; then visible+=("a Docker engine"); fi
if ((${#visible[@]})); then
  echo "as-fresh-machine: still visible: ${visible[*]}" >&2
  exit 1
fi
echo "as-fresh-machine: no PostgreSQL binaries, PgBouncer, Docker engine, OpenSSL headers or .pc files"
exec "$@"
