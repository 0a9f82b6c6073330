"""A webhook receiver on loopback (tests, the chaos drill): records deliveries, answers as told.

Each path is one scenario: ``fail(path, n)`` answers 500 to its first n deliveries,
``stall(path)`` holds its first delivery open until ``release``, then hangs up
(recorded with status 0); everything else
answers 204. ``down()`` / ``up()`` close and reopen the listening socket on the same
port (a receiver that is away for a while).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devenv.run.proc import free_port


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    # When it arrived (epoch seconds): a signature's timestamp is judged against this, not
    # against the moment a drill gets round to checking it.
    received_at: float = field(default_factory=time.time)


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    _failures: dict[str, int] = field(default_factory=dict)
    _stalls: dict[str, threading.Event] = field(default_factory=dict)
    _stalled: dict[str, threading.Event] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def fail(self, path: str, times: int) -> None:
        self._failures[path] = times

    def stall(self, path: str) -> threading.Event:
        """Hold the first delivery to ``path`` open; returns an event set once it came."""
        self._stalls[path] = threading.Event()
        self._stalled[path] = threading.Event()
        return self._stalled[path]

    def release(self, path: str) -> None:
        self._stalls[path].set()

    def to(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def wait_for(self, path: str, *, ok: int = 1, timeout: float = 120.0) -> list[Delivery]:
        """Deliveries to ``path`` once ``ok`` of them were answered 2xx (or the timeout)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.to(path)
            if sum(200 <= d.status < 300 for d in found) >= ok:
                return found
            time.sleep(0.2)
        return self.to(path)

    def _answer(self, path: str) -> int:
        stall = self._stalls.get(path)
        if stall is not None and not self._stalled[path].is_set():
            self._stalled[path].set()
            stall.wait(timeout=120)
            return 0  # hang up without an answer
        with self._lock:
            left = self._failures.get(path, 0)
            if left:
                self._failures[path] = left - 1
                return 500
        return 204

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._answer(self.path)
                with receiver._lock:
                    receiver.deliveries.append(
                        Delivery(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.up()
    try:
        yield running
    finally:
        for stall in running._stalls.values():
            stall.set()
        running.down()
