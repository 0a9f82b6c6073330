#!/usr/bin/env bash
# Prints the base image the Dockerfiles should build FROM (their PYTHON_IMAGE build arg):
#   - python:3.11.15-slim-bookworm, the real base, where it is present or can be pulled;
#   - else a stand-in, Debian bookworm's own python3 from debootstrap, built once and kept
#     in the engine's image store (the cache: later runs reuse it).
# MEMEFORGE_BASE=real|standin skips the choice. Progress goes to stderr, the name to stdout.
set -euo pipefail
# shellcheck source=scripts/containers/engine.sh
source "$(dirname "$0")/engine.sh"
pick_engine
MIRROR="${MEMEFORGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${MEMEFORGE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# Bump when the stand-in's recipe changes, so cached copies are rebuilt.
STANDIN_RECIPE=3

have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

real_base() {
  local qualified="docker.io/library/$REAL_BASE_IMAGE"
  for name in "$REAL_BASE_IMAGE" "$qualified"; do
    if have_image "$name"; then echo "$name"; return 0; fi
  done
  echo "base: pulling $qualified ..." >&2
  if timeout 120 "$ENGINE" pull -q "$qualified" >/dev/null 2>/tmp/memeforge-pull.err; then
    echo "$qualified"; return 0
  fi
  echo "base: cannot pull $qualified: $(tail -n 1 /tmp/memeforge-pull.err)" >&2
  return 1
}

build_standin() {
  for tool in debootstrap tar; do
    command -v "$tool" >/dev/null || { echo "base: $tool is missing (install-podman.sh)" >&2; exit 1; }
  done
  root="$(mktemp -d /var/tmp/memeforge-base.XXXXXX)"
  trap 'rm -rf "$root"' EXIT  # root is global: the trap runs after this function returns
  echo "base: debootstrap bookworm from $MIRROR into $root (about a minute) ..." >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >&2
  # The same suites as the real image, so the renderer's apt-get sees security fixes.
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
SOURCES
  chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' >&2
  # Python's C headers, as the real image has them (pillow-simd compiles against them),
  # without libpython3.11-dev's static library and -dev dependencies.
  chroot "$root" sh -c 'cd /tmp && apt-get download -qq libpython3.11-dev \
    && dpkg-deb -x libpython3.11-dev_*.deb dev && cp -a dev/usr/include/. /usr/include/ \
    && rm -rf dev libpython3.11-dev_*.deb' >&2
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  # What python:*-slim leaves out too: package lists, caches, docs (copyrights stay).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/*
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  tar --numeric-owner -C "$root" -c . | "$ENGINE" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change "LABEL org.memeforge.standin-recipe=$STANDIN_RECIPE" \
    - "$STANDIN_BASE_IMAGE" >&2
}

standin_base() {
  local recipe
  recipe="$("$ENGINE" image inspect --format '{{ index .Config.Labels "org.memeforge.standin-recipe" }}' \
    "$STANDIN_BASE_IMAGE" 2>/dev/null || true)"
  if [ "$recipe" = "$STANDIN_RECIPE" ]; then
    echo "base: stand-in $STANDIN_BASE_IMAGE (cached)" >&2
  else
    build_standin
    echo "base: stand-in $STANDIN_BASE_IMAGE (built)" >&2
  fi
  echo "$STANDIN_BASE_IMAGE"
}

case "${MEMEFORGE_BASE:-auto}" in
  real) real_base ;;
  standin) standin_base ;;
  auto) real_base || standin_base ;;
  *) echo "MEMEFORGE_BASE must be real, standin or auto" >&2; exit 2 ;;
esac
