"""Which emulator backends this run must have (CI requires them all)."""

from __future__ import annotations

import os

import pytest


def required_backends() -> set[str]:
    """MEMEFORGE_REQUIRE_BACKENDS, e.g. "moto,localstack": missing ones fail, not skip."""
    return set(filter(None, os.environ.get("MEMEFORGE_REQUIRE_BACKENDS", "").split(",")))


def unavailable(backend: str, reason: str) -> None:
    """Skip the test for a backend that is not installed, or fail if it is required."""
    if backend in required_backends():
        pytest.fail(f"required backend {backend} is not available: {reason}")
    pytest.skip(f"backend {backend} not installed: {reason}")
