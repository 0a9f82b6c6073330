"""The whole product on one machine: emulator, bootstrap, and the four services."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devenv.run.emulator import Emulator, start_emulator
from devenv.run.proc import free_port, http_ok, spawn, stop, stop_all, wait_until

SERVICE_MODULES = {
    "consumer": "memeforge_consumer",
    "renderer": "memeforge_renderer",
    "api": "memeforge_api",
    # Last: the api (which the stack waits for) starts as early as before it existed.
    "notifier": "memeforge_notifier",
}


@dataclass
class Stack:
    emulator: Emulator
    env: dict[str, str]
    api_url: str
    workdir: Path
    # A key of the dev tenant, every scope (``Authorization: Bearer <api_key>``).
    api_key: str = ""
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # A service's own environment (e.g. its own AWS identity), by base name; default: env.
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Helper processes (e.g. a credentials vendor): stopped after the services.
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Set to cut every remaining grace period short (SIGKILL at once) during stop().
    hurry: threading.Event = field(default_factory=threading.Event)

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start_service(self, name: str, *, console: bool = False) -> subprocess.Popen[bytes]:
        base = name.split("-")[0]
        module = SERVICE_MODULES[base]
        log = None if console else str(self.log_path(name))
        env = self.service_env.get(name, self.service_env.get(base, self.env))
        proc = spawn([sys.executable, "-m", module], env=env, log_path=log, console=console)
        self.services[name] = proc
        return proc

    def stop_service(self, name: str, *, grace: float = 30.0) -> int:
        return stop(self.services.pop(name), grace=grace)

    def stop(self) -> None:
        # The api first (no new work), then the workers drain (side by side, as the pods
        # of a rollout do), then the emulator goes.
        apis = [proc for name, proc in self.services.items() if name.split("-")[0] == "api"]
        stop_all(apis, grace=30, hurry=self.hurry)
        workers = [proc for proc in self.services.values() if proc not in apis]
        stop_all(workers, grace=30, hurry=self.hurry)
        self.services.clear()
        stop_all(self.helpers[::-1], grace=5, hurry=self.hurry)
        self.helpers.clear()
        self.emulator.stop(self.hurry)


def bootstrap(env: dict[str, str]) -> None:
    """Run the same idempotent bootstrap command that compose and the k8s Job run."""
    subprocess.run(
        [sys.executable, "-m", "memeforge_common.bootstrap"], env=env, check=True, timeout=120
    )


DEV_TENANT = "dev"
# Load generators (drills, soaks) run one key far past a client's rate limit on purpose;
# the limit itself is tested on its own (tests/e2e/test_quotas.py).
UNLIMITED_RATE = {"MEMEFORGE_RATE_LIMIT_PER_MINUTE": "0"}


def register_webhook_secret(env: dict[str, str], tenant: str = DEV_TENANT) -> str:
    """The tenant's webhook signing secret (``whsec_…``), made by the admin command."""
    command = [sys.executable, "-m", "memeforge_common.endpoints", "set", "--tenant", tenant]
    done = subprocess.run(command, env=env, check=True, timeout=60, capture_output=True, text=True)
    return done.stdout.strip()


def create_key(env: dict[str, str], tenant: str = DEV_TENANT, *scopes: str) -> str:
    """A new API key for ``tenant`` (default: every scope), made by the admin command."""
    command = [sys.executable, "-m", "memeforge_common.keys", "create", "--tenant", tenant]
    command += ["--name", f"{tenant} (devenv)"] + [f"--scope={s}" for s in scopes]
    done = subprocess.run(command, env=env, check=True, timeout=60, capture_output=True, text=True)
    return done.stdout.strip()


def start_stack(
    workdir: Path,
    *,
    backend: str | None = None,
    api_port: int | None = None,
    settings: dict[str, str] | None = None,
    console: bool = False,
    emulator: Emulator | None = None,
    prepare: Callable[[Stack], None] | None = None,
    hurry: threading.Event | None = None,
) -> Stack:
    """Emulator → bootstrap → consumer, renderer, api, notifier. Stops what it started on
    failure.

    ``emulator``: use this one (the stack then owns it) instead of starting ``backend``.
    ``prepare``: runs after the bootstrap, before the services start (e.g. gives each
    service its own identity through ``service_env``, or starts ``helpers``).
    ``hurry``: when set, stop() kills what is left at once (see devenv.run.__main__).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    emulator = emulator or start_emulator(backend, workdir=workdir)
    port = api_port or free_port()
    env = emulator.child_env(
        {"MEMEFORGE_API_HOST": "127.0.0.1", "MEMEFORGE_API_PORT": str(port), **(settings or {})}
    )
    stack = Stack(emulator=emulator, env=env, api_url=f"http://127.0.0.1:{port}", workdir=workdir)
    if hurry is not None:
        stack.hurry = hurry
    try:
        bootstrap(env)
        stack.api_key = create_key(env)
        if prepare is not None:
            prepare(stack)
        for name in SERVICE_MODULES:
            stack.start_service(name, console=console)
        wait_until(
            http_ok(f"{stack.api_url}/healthz"), timeout=60, what="api", proc=stack.services["api"]
        )
    except BaseException:
        stack.stop()
        raise
    return stack
