"""Liveness of the receive loops: each loop's last turn, in one file, checked two ways.

- ``Heartbeat.beat(loop)`` records that a loop turned (it also beats while it waits for
  a free slot, so a full, slow batch is not "stuck"). The file holds one wall-clock
  time per loop, so the consumer's DLQ drains cannot hide a stuck dispatch loop.
- ``python -m memeforge_common.healthcheck`` (Docker HEALTHCHECK, Kubernetes liveness
  and startup probes) exits 1 when any loop is older than ``liveness_max_age``.
- ``Heartbeat.watch()`` is the same check in a thread of the worker itself: a stuck
  loop makes the process exit, so plain ``restart: unless-stopped`` (compose, which
  restarts on exit only, never on "unhealthy") brings it back.

Liveness means the loops turn, never that AWS answers: an AWS outage must not restart
every worker.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

from memeforge_common.settings import get_settings

log = logging.getLogger(__name__)

# Exit status of a worker whose watchdog found a stuck loop (EX_SOFTWARE).
STUCK_EXIT_STATUS = 70


def read_beats(path: Path) -> dict[str, float] | None:
    """Loop name → time of its last turn (epoch seconds); None when there is no file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    beats = data.get("loops") if isinstance(data, dict) else None
    return {str(k): float(v) for k, v in beats.items()} if isinstance(beats, dict) else {}


def stale_loops(beats: dict[str, float], max_age_s: float, now: float) -> dict[str, float]:
    """The loops older than max_age_s, with their ages."""
    return {loop: now - at for loop, at in beats.items() if now - at > max_age_s}


class Heartbeat:
    """The last turn of each receive loop in this process, kept in memory and in a file."""

    def __init__(self, path: str | Path | None) -> None:
        self._path = Path(path) if path else None
        self._beats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def beat(self, loop: str) -> None:
        with self._lock:
            self._beats[loop] = time.time()
            self._write()

    def forget(self, loop: str) -> None:
        """A loop that stopped on purpose (shutdown) is no longer expected to turn."""
        with self._lock:
            self._beats.pop(loop, None)
            self._write()

    def stale(self, max_age_s: float) -> dict[str, float]:
        with self._lock:
            return stale_loops(dict(self._beats), max_age_s, time.time())

    def watch(self, max_age_s: float, *, every_s: float = 5.0) -> None:
        """Exit the process when a loop is stuck (started once; later calls do nothing).
        A thread, not a task: a blocked event loop must not be able to silence it."""
        if self._watchdog is not None:
            return

        def run() -> None:
            while True:
                time.sleep(every_s)
                stuck = self.stale(max_age_s)
                if stuck:
                    log.critical(
                        "receive loop stuck; exiting so the process is restarted",
                        extra={"loops": {k: round(v) for k, v in stuck.items()}},
                    )
                    logging.shutdown()
                    os._exit(STUCK_EXIT_STATUS)

        self._watchdog = threading.Thread(target=run, name="heartbeat-watchdog", daemon=True)
        self._watchdog.start()

    def _write(self) -> None:
        if self._path is None:
            return
        # Write then rename: a probe never reads half a file.
        tmp = self._path.with_name(self._path.name + ".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"loops": self._beats}))
            os.replace(tmp, self._path)


@functools.cache
def process_heartbeat(path: str | None) -> Heartbeat:
    """The one Heartbeat of this process for a file: every loop writes to it."""
    return Heartbeat(path)


def main() -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-age", type=float, default=settings.liveness_max_age)
    parser.add_argument("--file", default=settings.heartbeat_file)
    args = parser.parse_args()
    if not args.file:
        print("no heartbeat file configured (MEMEFORGE_HEARTBEAT_FILE)", file=sys.stderr)
        return 2
    beats = read_beats(Path(args.file))
    if not beats:
        print(f"no heartbeat yet at {args.file}", file=sys.stderr)
        return 1
    stuck = stale_loops(beats, args.max_age, time.time())
    if stuck:
        ages = ", ".join(f"{loop} {age:.0f}s" for loop, age in sorted(stuck.items()))
        print(f"stuck loops (max {args.max_age:.0f}s): {ages}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
