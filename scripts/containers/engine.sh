# Sourced by the container scripts: picks the engine and the base image.
#   ENGINE            docker where an engine answers, else podman (MEMEFORGE_ENGINE forces one)
#   CONTAINERS_CONF   podman only: scripts/containers/containers.conf (see that file)
# shellcheck shell=bash
CONTAINERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REAL_BASE_IMAGE="python:3.11.15-slim-bookworm"
STANDIN_BASE_IMAGE="localhost/memeforge-base:bookworm"

pick_engine() {
  if [ -n "${MEMEFORGE_ENGINE:-}" ]; then
    ENGINE="$MEMEFORGE_ENGINE"
  elif command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v podman >/dev/null; then
    ENGINE=podman
  else
    echo "no container engine: 'docker info' failed and podman is not installed" >&2
    echo "  (scripts/containers/install-podman.sh installs podman on Debian)" >&2
    return 1
  fi
  if [ "$ENGINE" = podman ]; then
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$CONTAINERS_DIR/containers.conf}"
  fi
}
