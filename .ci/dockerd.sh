#!/usr/bin/env bash
# Start/stop a Docker daemon for the tests (testcontainers talks to /var/run/docker.sock).
# This machine has no init system, so dockerd is run in the background by hand.
#   .ci/dockerd.sh start   install docker.io if needed, start dockerd, wait until it answers
#   .ci/dockerd.sh stop    stop the dockerd started by `start` and wait for it to exit
set -euo pipefail

STATE_DIR="${DOCKERD_STATE_DIR:-/tmp/event-recorder-dockerd}"
PIDFILE="$STATE_DIR/dockerd.pid"
LOG="$STATE_DIR/dockerd.log"
# dockerd spawns (and on SIGTERM stops) its own containerd when none is running; it records its pid here.
CONTAINERD_PIDFILE=/var/run/docker/containerd/containerd.pid

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
our_pid() { cat "$PIDFILE" 2>/dev/null || true; }

start() {
  if docker info >/dev/null 2>&1; then
    echo "dockerd: already running"; return 0
  fi
  if ! command -v dockerd >/dev/null && [[ ! -x /usr/sbin/dockerd ]]; then
    echo "dockerd: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The package's service scripts can't start anything here (no systemd); we start dockerd below.
    apt-get install -y -qq docker.io >/dev/null
  fi
  export PATH="$PATH:/usr/sbin:/sbin"
  mkdir -p "$STATE_DIR"
  local launched=""
  if alive "$(our_pid)"; then
    echo "dockerd: pid $(our_pid) is running but not answering yet"
  else
    # Defaults work in this VM (overlay2 on ext4, iptables via Debian's nft backend),
    # which -p/-P port publishing to 127.0.0.1 needs. Env overrides for odd sandboxes,
    # e.g. DOCKERD_FLAGS="--iptables=false --storage-driver=vfs".
    # setsid: own session, so the daemon outlives this shell and CI job-control signals.
    # shellcheck disable=SC2086
    setsid dockerd --pidfile "$PIDFILE" ${DOCKERD_FLAGS:-} >"$LOG" 2>&1 </dev/null &
    launched=$!
    echo "dockerd: started pid $launched, log $LOG"
  fi
  for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then echo "dockerd: ready"; return 0; fi
    alive "$launched" || alive "$(our_pid)" || break
    sleep 1
  done
  echo "dockerd: not ready after 60s (or it exited); log follows:" >&2
  cat "$LOG" >&2
  return 1
}

stop() {
  local pid cpid
  pid="$(our_pid)"
  if ! alive "$pid"; then
    echo "dockerd: not running (none started by this script)"; rm -f "$PIDFILE"; return 0
  fi
  cpid="$(cat "$CONTAINERD_PIDFILE" 2>/dev/null || true)"
  kill -TERM "$pid"
  # dockerd stops running containers first (10s grace each), so allow a while.
  for _ in $(seq 60); do alive "$pid" || break; sleep 1; done
  if alive "$pid"; then echo "dockerd: still running after 60s, killing" >&2; kill -KILL "$pid"; fi
  # Its managed containerd normally exits with it; make sure.
  if alive "$cpid"; then
    kill -TERM "$cpid"
    for _ in $(seq 20); do alive "$cpid" || break; sleep 0.5; done
  fi
  rm -f "$PIDFILE"
  echo "dockerd: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
