# Deployment artefacts: container images, docker compose on LocalStack, Kubernetes
# manifests (k8s/), IAM policies (iam/), and their offline validation (docs/deploy.md).
#
# Included from the top-level Makefile (`include mk/deploy.mk`); every path is relative to
# the repository root. Only `images` and `compose-up` need a Docker engine; the checks
# need Python and, on first use, the package registries (tools go into .venv-deploy).

DEPLOY_VENV ?= .venv-deploy
IMAGE_TAG ?= local
# auto = AVX2 on amd64 (see services/renderer/Dockerfile); 0 for CPUs without AVX2.
PILLOW_SIMD_AVX2 ?= auto
# Set REQUIRE_DOCKER=1 to make `images` fail (not skip) without a Docker engine.
REQUIRE_DOCKER ?=
COMPOSE_UP_ARGS ?=
MEMEFORGE_IMAGES := api consumer renderer
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
images: ## docker build memeforge-{api,consumer,renderer}:IMAGE_TAG (default local; needs Docker)
	@if ! timeout 20 docker info >/dev/null 2>&1; then \
	  echo "make images: no Docker engine reachable ('docker info' failed): no image built."; \
	  echo "  The Dockerfiles are still checked offline: make dockerfile-lint."; \
	  if [ -n "$(REQUIRE_DOCKER)" ]; then exit 1; fi; \
	else \
	  set -e; for svc in $(MEMEFORGE_IMAGES); do \
	    echo "== docker build memeforge-$$svc:$(IMAGE_TAG)"; \
	    docker build -f services/$$svc/Dockerfile -t memeforge-$$svc:$(IMAGE_TAG) \
	      --build-arg PILLOW_SIMD_AVX2=$(PILLOW_SIMD_AVX2) . ; \
	  done; \
	  docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^memeforge-'; \
	fi

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
