"""devenv/run/backends/localstack_hook: the GC policy and the slow-collection log that the
launcher starts LocalStack's interpreter with (docs/localstack.md "Garbage collection").
Run in a real interpreter with the hook on its PYTHONPATH, as the launcher does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devenv.run.backends.localstack import (
    GC_FREEZE_TRIGGER,
    GC_LOG,
    HOOK_DIR,
    slow_collections,
    start_localstack,
)

pytestmark = pytest.mark.unit

# The interpreter, told (or not) to freeze: prints its frozen objects before and after.
FREEZE_SCRIPT = """
import gc, os, sys, time
trigger = os.environ.get("MEMEFORGE_LOCALSTACK_GC_FREEZE") or sys.argv[1]
before = gc.get_freeze_count()
open(trigger, "w").close()  # what the launcher does once LocalStack is ready
deadline = time.monotonic() + 30
while not os.path.exists(trigger + ".done") and time.monotonic() < deadline:
    time.sleep(0.01)
print(before, gc.get_freeze_count())
"""


def _run(script: str, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "PYTHONPATH": str(HOOK_DIR), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_the_heap_is_frozen_only_once_the_launcher_says_ready(tmp_path: Path) -> None:
    trigger = tmp_path / GC_FREEZE_TRIGGER
    before, after = map(
        int, _run(FREEZE_SCRIPT, {"MEMEFORGE_LOCALSTACK_GC_FREEZE": str(trigger)}).split()
    )
    assert before == 0  # not at start-up: only when told
    assert after > 0
    assert int(trigger.with_name(f"{trigger.name}.done").read_text()) > 0


def test_what_survives_after_ready_is_frozen_too_and_young_garbage_is_not(
    tmp_path: Path,
) -> None:
    """Objects that outlive a refreeze tick join the frozen heap (a later full collection
    does not scan them); a garbage cycle made before the tick is collected, not frozen."""
    trigger = tmp_path / GC_FREEZE_TRIGGER
    script = FREEZE_SCRIPT.replace(
        "print(before, gc.get_freeze_count())",
        "import weakref\n"
        "class Node: pass\n"
        "frozen = gc.get_freeze_count()\n"
        "kept = [[i] for i in range(50_000)]\n"
        "cycle = Node(); cycle.me = cycle; dead = weakref.ref(cycle); del cycle\n"
        "time.sleep(2.5)\n"
        "print(gc.get_freeze_count() - frozen >= 50_000, dead() is None)",
    )
    out = _run(script, {"MEMEFORGE_LOCALSTACK_GC_FREEZE": str(trigger)})
    assert out.split() == ["True", "True"]


def test_without_the_setting_nothing_is_frozen(tmp_path: Path) -> None:
    trigger = tmp_path / GC_FREEZE_TRIGGER
    env = {"MEMEFORGE_LOCALSTACK_GC_FREEZE": ""}
    script = FREEZE_SCRIPT.replace("time.monotonic() + 30", "time.monotonic() + 0.5")
    assert _run(script, env, str(trigger)).split() == ["0", "0"]
    assert not trigger.with_name(f"{trigger.name}.done").exists()


def test_collections_over_the_threshold_are_logged_with_their_generation(tmp_path: Path) -> None:
    env = {
        "MEMEFORGE_LOCALSTACK_GC_LOG": str(tmp_path / GC_LOG),
        "MEMEFORGE_LOCALSTACK_GC_LOG_MS": "0",
    }
    _run("import gc; gc.collect(); gc.collect(1)", env)
    logged = slow_collections(tmp_path)
    assert {1, 2} <= {c.generation for c in logged}
    assert all(c.t1 > c.t0 and c.cpu_ms >= 0 and c.rss_mib > 0 for c in logged)


def test_over_the_threshold_only(tmp_path: Path) -> None:
    env = {
        "MEMEFORGE_LOCALSTACK_GC_LOG": str(tmp_path / GC_LOG),
        "MEMEFORGE_LOCALSTACK_GC_LOG_MS": "60000",
    }
    _run("import gc; gc.collect()", env)
    assert slow_collections(tmp_path) == []


def test_an_unknown_policy_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMEFORGE_LOCALSTACK_GC", "off")
    with pytest.raises(ValueError, match="choose one of"):
        start_localstack(tmp_path)
    assert list(tmp_path.iterdir()) == []
