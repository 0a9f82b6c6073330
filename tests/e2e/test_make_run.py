"""``make run`` (python -m devenv.run) as a real process tree, stopped by signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devenv.run.proc import free_port, http_ok, stop, wait_until

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (services, their pools, the emulator)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    wait_until(lambda: text in log.read_text(), timeout=120, what=repr(text), proc=proc)


def test_a_second_signal_during_shutdown_hurries_it_and_leaves_no_orphans(
    tmp_path: Path,
) -> None:
    """README: "Ctrl-C stops all". A second SIGTERM/Ctrl-C while `make run` is stopping
    speeds the stop up; it never abandons it with the emulator or a service still running.
    README "`make run RUN_ARGS="--port 9000"` picks another API port": it answers there."""
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "devenv.run", "--port", str(port), "--backend", "moto"],
            # A long receive wait makes the workers' graceful stop slow: the second signal
            # lands while stack.stop() is still waiting for them.
            env={**os.environ, "MEMEFORGE_RECEIVE_WAIT_S": "20"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_for_line(log, "memeforge is up", run)
        assert http_ok(f"http://127.0.0.1:{port}/healthz")()
        children = _descendants(run.pid)
        assert len(children) >= 4, children  # emulator, consumer, renderer, api (+ pools)

        run.send_signal(signal.SIGTERM)
        _wait_for_line(log, "stopping…", run)
        run.send_signal(signal.SIGINT)  # what a second Ctrl-C sends
        assert run.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        stop(run, grace=60)

    output = log.read_text()
    assert "signal again: killing what is still running" in output, output[-3000:]
    assert output.rstrip().endswith("stopped."), output[-3000:]
    assert "Traceback" not in output.split("stopping…", 1)[1], output[-3000:]
    assert [pid for pid in children if _alive(pid)] == []
    assert not http_ok(f"http://127.0.0.1:{port}/healthz")()
