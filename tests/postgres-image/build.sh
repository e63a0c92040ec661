#!/usr/bin/env bash
# Build a local stand-in for the official `postgres:15` image from Debian packages, because no
# container registry is reachable here. testcontainers-modules' Postgres works with it via
# `Postgres::default().with_name("event-recorder-test-postgres").with_tag("15")`.
# Usage: build.sh [--force] [IMAGE:TAG]   (needs a running dockerd: .ci/dockerd.sh start)
set -euo pipefail

force=0
if [[ "${1:-}" == --force ]]; then force=1; shift; fi
image="${1:-event-recorder-test-postgres:15}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mirror=http://deb.debian.org/debian  # same mirror as the host's apt sources

docker info >/dev/null 2>&1 || { echo "docker daemon not reachable (try .ci/dockerd.sh start)" >&2; exit 1; }
if [[ $force == 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image already exists (use --force to rebuild)"; exit 0
fi

if ! command -v mmdebstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # Only refresh the package lists if the install fails without it.
  apt-get install -y -qq mmdebstrap >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }
fi

start=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Minimal rootfs: Essential:yes packages (no apt) + postgresql-15 and its dependencies.
# Size trims: no docs/man pages/translations, and no LLVM (~130 MB): postgres simply runs
# without JIT when llvmjit.so is absent, like a build without --with-llvm.
# postgresql-common's postinst creates a "15/main" cluster; drop it, the entrypoint runs initdb.
# en_US.utf8 is the official image's locale.
# shellcheck disable=SC2016  # hooks get the chroot path as $1
mmdebstrap --variant=essential --include=postgresql-15,locales \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/llvmjit*' \
  --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/bitcode/*' \
  --dpkgopt='path-exclude=/usr/lib/*/libLLVM*' --dpkgopt='path-exclude=/usr/lib/*/libz3.so*' \
  --customize-hook='chroot "$1" pg_dropcluster 15 main && mkdir "$1/docker-entrypoint-initdb.d"' \
  --customize-hook='echo "en_US.UTF-8 UTF-8" >"$1/etc/locale.gen" && chroot "$1" locale-gen' \
  bookworm "$tmp/rootfs.tar" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb ${mirror}-security bookworm-security main"

cp "$here/Dockerfile" "$here/docker-entrypoint.sh" "$tmp/"
chmod 755 "$tmp/docker-entrypoint.sh"
docker build -t "$image" "$tmp"

echo "built $image in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
