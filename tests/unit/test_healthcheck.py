from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _check(path: Path, *args: str) -> int:
    env = {**os.environ, "MEMEFORGE_HEARTBEAT_FILE": str(path)}
    cmd = [sys.executable, "-m", "memeforge_common.healthcheck", *args]
    return subprocess.run(cmd, env=env, capture_output=True, check=False).returncode


def test_fresh_heartbeat_is_healthy_and_stale_or_missing_is_not(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    assert _check(beat) == 1  # the loop never turned
    beat.touch()
    assert _check(beat, "--max-age", "60") == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert _check(beat, "--max-age", "60") == 1
