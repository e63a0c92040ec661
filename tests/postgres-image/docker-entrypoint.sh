#!/bin/bash
# Entrypoint with the same contract as the official postgres image's:
#   POSTGRES_USER (postgres), POSTGRES_PASSWORD, POSTGRES_DB (= user), POSTGRES_HOST_AUTH_METHOD,
#   POSTGRES_INITDB_ARGS, *_FILE variants, /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz,sql.xz,sql.zst}.
# Readiness (what testcontainers waits for): on first start "database system is ready to accept
# connections" appears once on STDOUT (temporary init server, run by pg_ctl which sends the
# server's stderr to its stdout) and then once on STDERR (the real server's log).
set -euo pipefail

log() { echo "entrypoint: $*"; }
die() { echo "entrypoint: error: $*" >&2; exit 1; }

# `docker run img -c fsync=off` means `postgres -c fsync=off`.
if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi
# Anything else (bash, psql, ...) is run as is.
[[ "${1:-}" == postgres ]] || exec "$@"

# As root: prepare dirs, then re-run this script as the postgres user.
if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3775 /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# VAR_FILE=/run/secrets/x sets VAR from that file (Docker secrets convention).
for var in POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB POSTGRES_INITDB_ARGS; do
  file_var="${var}_FILE"
  if [[ -n "${!file_var:-}" ]]; then
    [[ -z "${!var:-}" ]] || die "both $var and $file_var are set"
    export "$var=$(<"${!file_var}")"
  fi
done
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [[ -s "$PGDATA/PG_VERSION" ]]; then
  log "database directory already initialised; skipping init"
  exec "$@"
fi

method="${POSTGRES_HOST_AUTH_METHOD:-}"
# Like the official image: refuse to start open to the network by accident.
if [[ -z "${POSTGRES_PASSWORD:-}" && "$method" != trust ]]; then
  die "POSTGRES_PASSWORD is not set. Set it, or set POSTGRES_HOST_AUTH_METHOD=trust to allow
  all connections without a password (never do that outside tests)."
fi
[[ "$method" != trust ]] || log "warning: POSTGRES_HOST_AUTH_METHOD=trust, no password is checked"

# initdb; its output (and the temporary server's log below) goes to stdout.
initdb_args=()
eval "initdb_args=(${POSTGRES_INITDB_ARGS:-})"  # eval: allow quoted args, as the official image does
initdb --username="$POSTGRES_USER" ${POSTGRES_PASSWORD:+--pwfile=/dev/stdin} "${initdb_args[@]}" \
  <<<"${POSTGRES_PASSWORD:-}"

# Default host method = how passwords get hashed (scram-sha-256 on 15, unless overridden by args).
[[ -n "$method" ]] || method="$(postgres -C password_encryption "${@:2}")"
printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"

# Temporary server on the unix socket only, with the user's extra args (e.g. -c fsync=off).
# (later -c wins, so ours come last; pg_ctl hands -o to a shell, hence %q.)
pg_ctl -D "$PGDATA" -w start -o "$(printf '%q ' "${@:2}" -c listen_addresses= -p 5432)"
export PGPASSWORD="${PGPASSWORD:-${POSTGRES_PASSWORD:-}}"
psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)

if [[ "$POSTGRES_DB" != postgres ]]; then
  "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
fi

psql+=(--dbname "$POSTGRES_DB")
for f in /docker-entrypoint-initdb.d/*; do
  [[ -e "$f" ]] || continue
  case "$f" in
    *.sh)
      log "running $f"
      # shellcheck source=/dev/null
      if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
    *.sql) log "running $f"; "${psql[@]}" -f "$f" ;;
    *.sql.gz) log "running $f"; gzip -dc "$f" | "${psql[@]}" ;;
    *.sql.xz) log "running $f"; xz -dc "$f" | "${psql[@]}" ;;
    *.sql.zst) log "running $f"; zstd -dc "$f" | "${psql[@]}" ;;
    *) log "ignoring $f" ;;
  esac
done

pg_ctl -D "$PGDATA" -m fast -w stop
unset PGPASSWORD
log "init complete; starting postgres"
# The real server logs to stderr, which Docker captures as the container's stderr stream.
exec "$@"
