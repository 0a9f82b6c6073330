from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from memeforge_common.healthcheck import STUCK_EXIT_STATUS, Heartbeat, read_beats

pytestmark = pytest.mark.unit


def _check(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMEFORGE_HEARTBEAT_FILE": str(path)}
    cmd = [sys.executable, "-m", "memeforge_common.healthcheck", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def _age(path: Path, loop: str, seconds: float) -> None:
    beats = read_beats(path) or {}
    beats[loop] = time.time() - seconds
    path.write_text(json.dumps({"loops": beats}))


def test_fresh_heartbeat_is_healthy_and_stale_or_missing_is_not(tmp_path: Path) -> None:
    """README "Liveness": the healthcheck fails when a loop stops turning."""
    path = tmp_path / "heartbeat"
    assert _check(path).returncode == 1  # the loop never turned
    Heartbeat(path).beat("renderer")
    assert _check(path, "--max-age", "60").returncode == 0
    _age(path, "renderer", 120)
    assert _check(path, "--max-age", "60").returncode == 1


def test_each_loop_has_its_own_signal(tmp_path: Path) -> None:
    """docs/deploy.md "Probes": "one time per receive loop".
    The consumer's DLQ drains turning must not hide a stuck dispatch loop."""
    path = tmp_path / "heartbeat"
    beat = Heartbeat(path)
    for loop in ("dispatch", "drain:requests-dlq", "drain:renders-dlq"):
        beat.beat(loop)
    _age(path, "dispatch", 300)
    result = _check(path, "--max-age", "60")
    assert result.returncode == 1
    assert "dispatch" in result.stderr
    assert "drain" not in result.stderr


def test_a_loop_stopped_on_purpose_is_no_longer_expected(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "heartbeat")
    beat.beat("a")
    beat.beat("b")
    beat.forget("a")
    assert read_beats(tmp_path / "heartbeat") is not None
    assert set(read_beats(tmp_path / "heartbeat") or {}) == {"b"}


def test_the_default_max_age_covers_the_job_deadline(tmp_path: Path) -> None:
    """A loop quiet for less than the job deadline is healthy by default."""
    path = tmp_path / "heartbeat"
    Heartbeat(path).beat("renderer")
    env_deadline = {"MEMEFORGE_JOB_DEADLINE_S": "100", "MEMEFORGE_RECEIVE_WAIT_S": "20"}
    _age(path, "renderer", 99)
    env = {**os.environ, "MEMEFORGE_HEARTBEAT_FILE": str(path), **env_deadline}
    cmd = [sys.executable, "-m", "memeforge_common.healthcheck"]
    assert subprocess.run(cmd, env=env, check=False).returncode == 0
    _age(path, "renderer", 200)
    assert subprocess.run(cmd, env=env, check=False, capture_output=True).returncode == 1


WEDGED_WORKER = """
import time
from memeforge_common.healthcheck import Heartbeat
beat = Heartbeat(None)
beat.beat("dispatch")
beat.watch(0.5, every_s=0.1)
time.sleep(60)  # the loop never turns again
"""


def test_the_watchdog_exits_a_process_whose_loop_is_stuck() -> None:
    """README "Liveness": "a watchdog in the worker itself (which exits it)".
    Compose restarts on exit only: an unhealthy worker must exit by itself."""
    result = subprocess.run(
        [sys.executable, "-c", WEDGED_WORKER], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == STUCK_EXIT_STATUS


TURNING_WORKER = """
import time
from memeforge_common.healthcheck import Heartbeat
beat = Heartbeat(None)
beat.watch(5.0, every_s=0.1)
for _ in range(30):
    beat.beat("dispatch")
    time.sleep(0.1)
"""


def test_the_watchdog_leaves_a_turning_loop_alone() -> None:
    result = subprocess.run([sys.executable, "-c", TURNING_WORKER], timeout=50)
    assert result.returncode == 0
