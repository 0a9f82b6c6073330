#!/usr/bin/env bash
# make container-e2e: build the images with podman, render the manifests, then run
# tests/containers (the pipeline as containers, and `podman kube play` of the overlay)
# against the LocalStack backend on the host.
# Where podman cannot start at all (`podman info` fails) this skips with a loud message,
# unless MEMEFORGE_REQUIRE_CONTAINERS=1, then it fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/containers/engine.sh
source scripts/containers/engine.sh
export MEMEFORGE_ENGINE=podman
pick_engine
if ! command -v podman >/dev/null || ! info_err="$(podman info 2>&1 >/dev/null)"; then
  cat >&2 <<BANNER
################################################################################
# make container-e2e SKIPPED: podman cannot start here.
#   ${info_err:-podman is not installed (scripts/containers/install-podman.sh)}
################################################################################
BANNER
  [ -z "${MEMEFORGE_REQUIRE_CONTAINERS:-}" ] || exit 1
  exit 0
fi
VENV="${VENV:-.venv}"
# The manifests name the :local images.
export IMAGE_TAG=local
read -ra pytest_args <<<"${PYTEST_ARGS:-}"
start=$(date +%s)
# .ci/run builds them beside the tests and says so (each image once per run).
if [ -z "${MEMEFORGE_IMAGES_BUILT:-}" ]; then
  scripts/containers/build-images.sh
fi
echo "== images ready after $(( $(date +%s) - start ))s"
# The rendered overlay the tests read; `make lint` (CI runs it first) leaves it current.
if [ ! -f build/deploy/local.yaml ] || [ -n "$(find k8s -newer build/deploy/local.yaml)" ]; then
  DEPLOY_VENV="${DEPLOY_VENV:-.venv-deploy}" scripts/validate-deploy.sh k8s
fi
scripts/setup-localstack.sh
MEMEFORGE_CONTAINER_E2E=1 MEMEFORGE_BACKEND=localstack \
  "$VENV/bin/python" -m pytest -p no:cacheprovider tests/containers "${pytest_args[@]}"
echo "== container-e2e finished in $(( $(date +%s) - start ))s"
