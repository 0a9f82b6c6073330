#!/usr/bin/env bash
# Create .venv with pillow-simd (built from source, AVX2 where the CPU has it) and the
# project in editable mode. Idempotent; `make` calls it whenever pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PILLOW_SIMD_VERSION=12.1.1.post0
APT_PACKAGES=(libjpeg62-turbo-dev zlib1g-dev libfreetype6-dev libwebp-dev libraqm-dev)

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "memeforge needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

install_system_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing build libraries for pillow-simd: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if command -v dpkg-query >/dev/null 2>&1; then
  install_system_packages
else
  echo "not a Debian system: make sure libjpeg-turbo, zlib, freetype, libwebp, raqm headers exist" >&2
fi

PY=$(pick_python)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip

if ! "$VENV/bin/python" -m pip show -q pillow-simd >/dev/null 2>&1; then
  cc_flags="cc"
  grep -qw avx2 /proc/cpuinfo 2>/dev/null && cc_flags="cc -mavx2"
  echo "building pillow-simd $PILLOW_SIMD_VERSION with CC='$cc_flags'"
  CC="$cc_flags" "$VENV/bin/python" -m pip install -q --no-binary pillow-simd \
    "pillow-simd==$PILLOW_SIMD_VERSION"
fi
"$VENV/bin/python" -m pip install -q -e ".[dev]"
# setup.py marks the renderer's C module optional (the api and consumer images have no
# compiler), so a failed build would only show at the first render: check it here.
"$VENV/bin/python" -c 'import memeforge_renderer.engine._blend' || {
  echo "error: memeforge_renderer/engine/_blend.c did not build (is a C compiler installed?)" >&2
  exit 1
}

# pillow-simd and Pillow install the same `PIL` package: a stock Pillow pulled in by any
# dependency would silently replace the SIMD build.
if "$VENV/bin/python" -m pip show -q pillow >/dev/null 2>&1; then
  echo "error: a stock Pillow got installed beside pillow-simd (check dependencies)" >&2
  exit 1
fi
"$VENV/bin/python" -c 'import PIL, importlib.metadata as m; print("Pillow build:", "pillow-simd", m.version("pillow-simd"), "PIL", PIL.__version__)'
