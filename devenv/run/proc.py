"""Small process helpers: free ports, waiting for HTTP, stopping process trees."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A free TCP port on loopback (the OS picks it; we close and hand it on), never one
    this process has handed out before: the port is closed until its user binds it, so the
    OS may pick it again, and a bench that gave the api and the notifier's metrics server
    the same port failed at start (``address already in use``)."""
    with _HANDED_OUT_LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen[bytes] | None
) -> None:
    """Poll ``check`` until true; fail early and clearly if ``proc`` died meanwhile."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        if check():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(200 <= response.status < 500)
        except urllib.error.HTTPError as err:
            return err.code < 500
        except OSError:
            return False

    return check


def spawn(
    args: list[str], *, env: dict[str, str], log_path: str | None = None, console: bool = False
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group so that stopping it stops its children too.

    Output goes to ``log_path``, or to our own terminal with ``console``, else nowhere.
    """
    if console:
        return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log_path and not isinstance(out, int):
            out.close()


def stop(
    proc: subprocess.Popen[bytes],
    *,
    grace: float = 10.0,
    sig: int = signal.SIGTERM,
    hurry: threading.Event | None = None,
) -> int:
    """SIGTERM the process group, wait up to ``grace`` (cut short once ``hurry`` is set:
    a second Ctrl-C), then SIGKILL it. Always waits for the process: never abandons it."""
    return stop_all([proc], grace=grace, sig=sig, hurry=hurry)[0]


def stop_all(
    procs: Sequence[subprocess.Popen[bytes]],
    *,
    grace: float = 10.0,
    sig: int = signal.SIGTERM,
    hurry: threading.Event | None = None,
) -> list[int]:
    """``stop`` for several processes at once: every group is signalled first, so they
    drain side by side within one ``grace``, not one grace after another. Their exit codes,
    in order."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    deadline = time.monotonic() + grace
    for proc in running:
        while proc.poll() is None and time.monotonic() < deadline:
            if hurry is not None and hurry.is_set():
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
    for proc in running:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return [proc.returncode for proc in procs]
