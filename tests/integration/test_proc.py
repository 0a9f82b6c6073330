"""Stopping process groups (devenv.run.proc), as make run and every test stack do."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from devenv.run.proc import spawn, stop_all, wait_until

pytestmark = pytest.mark.integration

# On SIGTERM a child says so, then exits 0 only once every child has said so: it exits 3
# if it waited for the others in vain, as it would if they were signalled one by one.
CHILD = """
import signal, sys, time
log, children = sys.argv[1], int(sys.argv[2])

def on_term(*_):
    with open(log, "a") as out:
        out.write("term\\n")
    for _ in range(200):
        with open(log) as seen:
            if seen.read().count("term") == children:
                sys.exit(0)
        time.sleep(0.1)
    sys.exit(3)

signal.signal(signal.SIGTERM, on_term)
with open(log, "a") as out:
    out.write("ready\\n")
while True:
    time.sleep(1)
"""


def test_stop_all_signals_every_process_before_it_waits_for_one(tmp_path: Path) -> None:
    log, children = tmp_path / "events", 3
    procs = [
        spawn([sys.executable, "-c", CHILD, str(log), str(children)], env=dict(os.environ))
        for _ in range(children)
    ]
    wait_until(
        lambda: log.exists() and log.read_text().count("ready") == children,
        timeout=60,
        what="children",
        proc=None,
    )
    assert stop_all(procs, grace=60) == [0] * children
