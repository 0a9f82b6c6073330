# Deployment artefacts: container images, docker compose on LocalStack, Kubernetes
# manifests (k8s/), IAM policies (iam/), their offline validation, and the containerized
# e2e run with podman where Docker is absent (docs/deploy.md).
#
# Included from the top-level Makefile (`include mk/deploy.mk`); every path is relative to
# the repository root. `images` needs docker or podman, `container-e2e` podman,
# `compose-up` Docker; the checks need Python and, on first use, the package registries
# (tools go into .venv-deploy).

DEPLOY_VENV ?= .venv-deploy
IMAGE_TAG ?= local
# auto = AVX2 on amd64 (see services/renderer/Dockerfile); 0 for CPUs without AVX2.
PILLOW_SIMD_AVX2 ?= auto
COMPOSE_UP_ARGS ?=
VALIDATE_DEPLOY := DEPLOY_VENV=$(DEPLOY_VENV) scripts/validate-deploy.sh

.PHONY: lint-deploy
lint-deploy: ## all offline deployment checks: hadolint, compose schema, k8s render + validate
	$(VALIDATE_DEPLOY) all

.PHONY: dockerfile-lint
dockerfile-lint: ## hadolint every services/*/Dockerfile (zero findings)
	$(VALIDATE_DEPLOY) dockerfiles

.PHONY: compose-validate
compose-validate: ## docker-compose.yml against the Compose spec (check-jsonschema) + yamllint
	$(VALIDATE_DEPLOY) compose

.PHONY: k8s-validate
k8s-validate: ## render k8s overlays; kubernetes-validate --strict, KEDA CRD schemas, rules, yamllint
	$(VALIDATE_DEPLOY) k8s

.PHONY: deploy-tools
deploy-tools: ## install the pinned validation tools into .venv-deploy
	$(VALIDATE_DEPLOY) setup

.PHONY: images
images: ## build memeforge-{api,consumer,renderer}:IMAGE_TAG: docker if an engine answers, else podman
	IMAGE_TAG=$(IMAGE_TAG) PILLOW_SIMD_AVX2=$(PILLOW_SIMD_AVX2) scripts/containers/build-images.sh

.PHONY: container-e2e
container-e2e: $(STAMP) ## podman: build the images, run the pipeline as containers + `podman kube play` of k8s/overlays/local
	VENV=$(VENV) DEPLOY_VENV=$(DEPLOY_VENV) PYTEST_ARGS="$(PYTEST_ARGS)" \
	  scripts/containers/e2e.sh

.PHONY: compose-up
compose-up: ## docker compose up --build (LocalStack + bootstrap + services); COMPOSE_UP_ARGS="--scale renderer=4"
	@if ! timeout 20 docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then \
	  echo "make compose-up: needs a Docker engine and the compose plugin ('docker info' /"; \
	  echo "  'docker compose version' failed). Without Docker: make run. Offline check: make compose-validate."; \
	  exit 1; \
	fi
	docker compose up --build $(COMPOSE_UP_ARGS)

.PHONY: compose-down
compose-down: ## stop and remove the compose stack (and LocalStack's state)
	docker compose down --volumes --remove-orphans

.PHONY: clean-deploy
clean-deploy: ## remove .venv-deploy and the rendered manifests (build/deploy)
	rm -rf $(DEPLOY_VENV) build/deploy
