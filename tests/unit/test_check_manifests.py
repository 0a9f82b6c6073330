"""scripts/check-manifests.py holds every Deployment to the timing budget
(memeforge_common/timing.py), docs/deploy.md's table to the manifests, and egress away
from the instance metadata service."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "k8s" / "base"


def _checker() -> Any:
    spec = importlib.util.spec_from_file_location(
        "check_manifests", ROOT / "scripts" / "check-manifests.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checker() -> Any:
    module = _checker()
    module.problems.clear()
    return module


def _config() -> dict[str, str]:
    lines = (BASE / "config.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def _deployment(name: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all((BASE / f"{name}.yaml").read_text()):
        if doc["kind"] == "Deployment":
            doc["metadata"]["namespace"] = "memeforge"
            return copy.deepcopy(doc)
    raise AssertionError(name)


def _env(checker: Any, deployment: dict[str, Any], **extra: str) -> dict[str, str]:
    env: dict[str, str] = checker.container_env(
        checker.pod_spec(deployment)["containers"][0], {"memeforge-config": _config()}
    )
    return {**env, **extra}


def _problems(checker: Any, deployment: dict[str, Any], worker: bool, **extra: str) -> list[str]:
    checker.problems.clear()
    checker.check_timing(deployment, _env(checker, deployment, **extra), worker=worker)
    return list(checker.problems)


@pytest.mark.parametrize(
    ("name", "worker"), [("renderer", True), ("consumer", True), ("api", False)]
)
def test_the_shipped_manifests_keep_the_budget(checker: Any, name: str, worker: bool) -> None:
    """docs/deploy.md "Timing budget": the shipped manifests keep it."""
    assert _problems(checker, _deployment(name), worker) == []


def test_grace_must_cover_the_receive_wait_plus_the_release(checker: Any) -> None:
    renderer = _deployment("renderer")
    [found] = _problems(checker, renderer, True, MEMEFORGE_SHUTDOWN_GRACE_S="21")
    assert "receive wait 20 s + release reserve" in found


def test_the_kill_must_come_after_the_shutdown_grace_and_a_margin(checker: Any) -> None:
    renderer = _deployment("renderer")
    renderer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
    [found] = _problems(checker, renderer, True)
    assert "stop grace 30 s < shutdown grace 25 s + exit margin" in found


def test_the_startup_probe_must_outlast_the_startup_wait(checker: Any) -> None:
    for name, worker in (("consumer", True), ("api", False)):
        deployment = _deployment(name)
        container = checker.pod_spec(deployment)["containers"][0]
        container["startupProbe"]["failureThreshold"] = 24
        [found] = _problems(checker, deployment, worker)
        assert "startup probe budget" in found
        assert "< startup wait 300 s" in found


def test_liveness_max_age_must_cover_the_job_deadline(checker: Any) -> None:
    renderer = _deployment("renderer")
    [found] = _problems(checker, renderer, True, MEMEFORGE_LIVENESS_MAX_AGE_S="90")
    assert "liveness max age 90 s < job deadline 180 s" in found


def test_the_job_deadline_must_stay_below_the_sweepers_rendering_timeout(checker: Any) -> None:
    renderer = _deployment("renderer")
    found = _problems(checker, renderer, True, MEMEFORGE_JOB_DEADLINE_S="400")
    assert any("rendering timeout 300 s" in line for line in found)


def test_the_docs_table_is_checked_against_the_manifests(checker: Any) -> None:
    """docs/deploy.md "Timing budget": the table is what the manifests set."""
    table = checker.doc_timing_table()
    assert table["receive wait"] == 20
    assert table["termination grace"] == 45
    assert table["liveness max age"] == 230
    checker.problems.clear()
    checker.check_doc_timing({"memeforge-renderer": {**table, "job deadline": 120.0}})
    assert checker.problems == [
        "docs/deploy.md says job deadline is 180 s; the manifests have 120 s"
    ]


def _policies() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((BASE / "networkpolicies.yaml").read_text())
    return [d for d in docs if d["kind"] == "NetworkPolicy"]


def test_the_shipped_egress_policy_keeps_pods_off_instance_metadata(checker: Any) -> None:
    """docs/deploy.md: the NetworkPolicy keeps pods off instance metadata."""
    checker.check_no_instance_metadata(_policies())
    assert checker.problems == []


def test_egress_open_to_instance_metadata_is_refused(checker: Any) -> None:
    policies = _policies()
    egress = next(p for p in policies if "Egress" in p["spec"]["policyTypes"])
    egress["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]})
    checker.check_no_instance_metadata(policies)
    assert checker.problems == [
        "an egress rule allows the instance metadata service 169.254.169.254/32"
    ]
    checker.problems.clear()
    checker.check_no_instance_metadata([p for p in policies if p is not egress])
    assert checker.problems == [
        "no egress NetworkPolicy for every pod that excludes 169.254.169.254/32"
    ]
