"""The timing budget a deployment must keep, as code: one home for the arithmetic.

The queue loop (worker.py) uses the reserve; scripts/check-manifests.py (Kubernetes) and
tests/unit/test_deploy_config.py (compose) check every deployment against these rules,
and the "timing budget" table in docs/deploy.md is checked against the manifests.

Pure Python with no imports, so the manifest checker can load it by path.
"""

from __future__ import annotations

# The last seconds of the shutdown budget are kept for handing messages back.
RELEASE_RESERVE_S = 3.0
# After the drain the process still closes its pool and clients, then exits.
EXIT_MARGIN_S = 10.0
# A started process needs a moment before its first heartbeat (imports, pool spawn).
STARTUP_MARGIN_S = 15.0
# The liveness heartbeat's default maximum age is job deadline + receive wait + this.
LIVENESS_SLACK_S = 30.0

# The settings' defaults that the budget depends on (a unit test keeps them equal to
# memeforge_common.settings), by environment variable.
DEFAULTS = {
    "MEMEFORGE_RECEIVE_WAIT_S": 20.0,
    "MEMEFORGE_SHUTDOWN_GRACE_S": 25.0,
    "MEMEFORGE_VISIBILITY_TIMEOUT_S": 60.0,
    "MEMEFORGE_JOB_DEADLINE_S": 180.0,
    "MEMEFORGE_STARTUP_WAIT_S": 300.0,
    "MEMEFORGE_RENDERING_TIMEOUT_S": 300.0,
    "MEMEFORGE_RENDERING_MARK_AFTER_S": 1.0,
}


def setting(env: dict[str, str], name: str) -> float:
    return float(env.get(name) or DEFAULTS[name])


def liveness_max_age(env: dict[str, str]) -> float:
    if env.get("MEMEFORGE_LIVENESS_MAX_AGE_S"):
        return float(env["MEMEFORGE_LIVENESS_MAX_AGE_S"])
    return (
        setting(env, "MEMEFORGE_JOB_DEADLINE_S")
        + setting(env, "MEMEFORGE_RECEIVE_WAIT_S")
        + LIVENESS_SLACK_S
    )


def worker_problems(env: dict[str, str], *, stop_grace_s: float) -> list[str]:
    """What is wrong with a queue worker's timing. ``stop_grace_s``: how long the
    platform waits between SIGTERM and SIGKILL (terminationGracePeriodSeconds,
    compose's stop_grace_period)."""
    wait = setting(env, "MEMEFORGE_RECEIVE_WAIT_S")
    grace = setting(env, "MEMEFORGE_SHUTDOWN_GRACE_S")
    visibility = setting(env, "MEMEFORGE_VISIBILITY_TIMEOUT_S")
    deadline = setting(env, "MEMEFORGE_JOB_DEADLINE_S")
    rendering = setting(env, "MEMEFORGE_RENDERING_TIMEOUT_S")
    problems = []
    if grace < wait + RELEASE_RESERVE_S:
        problems.append(
            f"shutdown grace {grace:g} s < receive wait {wait:g} s + release reserve "
            f"{RELEASE_RESERVE_S:g} s: a long poll under way at SIGTERM would be abandoned"
        )
    if stop_grace_s < grace + EXIT_MARGIN_S:
        problems.append(
            f"stop grace {stop_grace_s:g} s < shutdown grace {grace:g} s + exit margin "
            f"{EXIT_MARGIN_S:g} s: SIGKILL could come before held messages are released"
        )
    if stop_grace_s >= visibility:
        problems.append(
            f"stop grace {stop_grace_s:g} s >= visibility timeout {visibility:g} s: "
            "messages of a killed worker would reappear while it still drains"
        )
    if deadline >= rendering:
        problems.append(
            f"job deadline {deadline:g} s >= rendering timeout {rendering:g} s: the "
            "sweeper would re-send a job that still holds a slot"
        )
    mark_after = setting(env, "MEMEFORGE_RENDERING_MARK_AFTER_S")
    if mark_after >= rendering:
        problems.append(
            f"rendering mark after {mark_after:g} s >= rendering timeout {rendering:g} s: "
            "the sweeper would take a render still running (never marked) for a lost job"
        )
    if liveness_max_age(env) < deadline:
        problems.append(
            f"liveness max age {liveness_max_age(env):g} s < job deadline {deadline:g} s: "
            "a legitimately long job would get the worker restarted"
        )
    return problems


def startup_problems(env: dict[str, str], *, startup_budget_s: float) -> list[str]:
    """``startup_budget_s``: how long the startup probe lets a process come up."""
    wait = setting(env, "MEMEFORGE_STARTUP_WAIT_S")
    if startup_budget_s < wait + STARTUP_MARGIN_S:
        return [
            f"startup probe budget {startup_budget_s:g} s < startup wait {wait:g} s + "
            f"{STARTUP_MARGIN_S:g} s: a service started during an outage or before the "
            "bootstrap would be killed while it waits"
        ]
    return []
