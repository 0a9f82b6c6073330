# Credentials and IAM (included from the Makefile): least privilege and key rotation,
# proven against moto enforcing IAM. Both e2e modules also run in `make test`.
SOAK_ARGS ?=

.PHONY: test-credentials
test-credentials: $(STAMP) ## least-privilege identities + key rotation e2e (moto enforcing IAM, ~1 min)
	$(PY) -m pytest tests/e2e/test_least_privilege.py tests/e2e/test_rotation.py $(PYTEST_ARGS)

.PHONY: rotation-soak
rotation-soak: $(STAMP) ## key rotation under load, ~5 min: 6+ rotations, a revocation, no restarts (SOAK_ARGS)
	$(PY) -m bench.rotation_soak $(SOAK_ARGS)
