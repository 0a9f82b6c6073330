#!/usr/bin/env bash
# make images: builds memeforge-{api,consumer,renderer}:$IMAGE_TAG with docker where an
# engine answers, else podman; on the real base where it can be pulled, else the stand-in
# (base-image.sh says which). Prints each build's time and the image sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/containers/engine.sh
source scripts/containers/engine.sh
pick_engine
IMAGE_TAG="${IMAGE_TAG:-local}"
PILLOW_SIMD_AVX2="${PILLOW_SIMD_AVX2:-auto}"
read -ra SERVICES <<<"${MEMEFORGE_IMAGES:-api consumer renderer}"

all_start=$(date +%s)
start=$all_start
base="$(scripts/containers/base-image.sh)"
echo "== base image $base ready in $(( $(date +%s) - start ))s"
build=("$ENGINE" build --build-arg "PYTHON_IMAGE=$base")
if [ "$ENGINE" = podman ]; then
  # --format docker keeps HEALTHCHECK (OCI images have no such field); host network and
  # chroot isolation are what works without a bridge or nested namespaces here.
  build+=(--format docker --network host --isolation chroot)
  # pip inside the build reaches the package index the way it does on this machine
  # (its index/proxy settings and CA bundle), read-only and only for the RUN steps.
  for path in /etc/pip.conf /etc/xdg/pip /etc/ssl/certs; do
    if [ -e "$path" ]; then build+=(-v "$path:$path:ro"); fi
  done
fi

build_one() {
  local svc=$1 start
  start=$(date +%s)
  echo "== build memeforge-$svc:$IMAGE_TAG"
  local args=()
  if [ "$svc" = renderer ]; then args+=(--build-arg "PILLOW_SIMD_AVX2=$PILLOW_SIMD_AVX2"); fi
  "${build[@]}" "${args[@]}" -f "services/$svc/Dockerfile" -t "memeforge-$svc:$IMAGE_TAG" .
  echo "== memeforge-$svc:$IMAGE_TAG built in $(( $(date +%s) - start ))s"
}

# The builds run at once: the renderer's pillow-simd compile holds one core for most of
# its build, the others' pip installs mostly wait on the index. Each one's output goes to
# build/images/<service>.log, printed as it finishes.
echo "== building with $ENGINE: ${SERVICES[*]} at once (logs in build/images/)"
mkdir -p build/images
declare -A pids=()
for svc in "${SERVICES[@]}"; do
  build_one "$svc" >"build/images/$svc.log" 2>&1 &
  pids[$svc]=$!
done
failed=()
for svc in "${SERVICES[@]}"; do
  rc=0
  wait "${pids[$svc]}" || rc=$?
  cat "build/images/$svc.log"
  if [ "$rc" -ne 0 ]; then failed+=("$svc"); fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "== image build failed: ${failed[*]} (logs above)" >&2
  exit 1
fi
echo "== images built in $(( $(date +%s) - all_start ))s"
echo "== image sizes (base $base)"
for svc in "${SERVICES[@]}"; do
  bytes="$("$ENGINE" image inspect --format '{{.Size}}' "memeforge-$svc:$IMAGE_TAG")"
  printf '  memeforge-%-9s %4d MB\n' "$svc" $(( bytes / 1000000 ))
done
