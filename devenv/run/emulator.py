"""Start an AWS emulator on loopback and describe it as environment variables."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from devenv.run.proc import stop_all

BACKENDS = ("moto", "localstack")

# Dummy credentials for the emulator only. They are injected into child processes
# by the dev tooling; the services themselves read whatever the default chain finds.
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    # LocalStack verifies presigned URLs against the secret "test"; moto accepts anything.
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
}


@dataclass
class Emulator:
    backend: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Emulator settings that exist only for the test rig (e.g. LocalStack's GC), in words.
    tuning: dict[str, str] = field(default_factory=dict)

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """os.environ + emulator endpoints + dummy credentials (+ extra)."""
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("AWS_")]:
            del env[key]  # never leak a developer's real AWS identity into emulator runs
        env.update(EMULATOR_CREDENTIALS)
        env.update(self.env)
        env.update(extra or {})
        return env

    def stop(self, hurry: threading.Event | None = None) -> None:
        stop_all(self.processes[::-1], grace=5, hurry=hurry)


def start_emulator(backend: str | None = None, *, workdir: Path) -> Emulator:
    backend = backend or os.environ.get("MEMEFORGE_BACKEND", "moto")
    workdir.mkdir(parents=True, exist_ok=True)
    if backend == "moto":
        from devenv.run.backends.moto import start_moto

        return start_moto(workdir)
    if backend == "localstack":
        from devenv.run.backends.localstack import start_localstack

        return start_localstack(workdir)
    raise ValueError(f"unknown emulator backend {backend!r}; choose one of {BACKENDS}")
