#!/usr/bin/env bash
# What the web UI's end-to-end tests need, idempotently:
#
#   /usr/bin/chromium        Debian's Chromium (Playwright drives it; it cannot download
#                            its own browsers here), installed with apt-get when missing
#   .cache/axe-core/         axe-core from npm (test-only; never served by the api)
#
# Playwright itself is a Python dev dependency (pyproject.toml).
set -euo pipefail

AXE_CORE_VERSION=4.11.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AXE_PREFIX="$ROOT/.cache/axe-core"
AXE_JS="$AXE_PREFIX/node_modules/axe-core/axe.min.js"

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

if [ ! -x /usr/bin/chromium ]; then
    echo "setup-browser: installing chromium"
    apt_install chromium fonts-dejavu-core
fi

installed=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$AXE_PREFIX/node_modules/axe-core/package.json" 2>/dev/null || true)
if [ ! -f "$AXE_JS" ] || [ "$installed" != "$AXE_CORE_VERSION" ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    echo "setup-browser: fetching axe-core $AXE_CORE_VERSION from npm"
    npm install --silent --no-audit --no-fund --prefix "$AXE_PREFIX" "axe-core@$AXE_CORE_VERSION"
fi
echo "setup-browser: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), axe-core $AXE_CORE_VERSION"
