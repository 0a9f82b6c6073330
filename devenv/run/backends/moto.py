"""moto in server mode: one light Python process serving S3, SQS and DynamoDB."""

from __future__ import annotations

import sys
from pathlib import Path

from devenv import REPO_ROOT
from devenv.run.emulator import Emulator
from devenv.run.proc import free_port, http_ok, spawn, wait_until


def start_moto(workdir: Path, *, aws_iam: bool = False) -> Emulator:
    """``aws_iam``: launch ``devenv.iam.moto_iam``, which evaluates IAM as AWS does once
    authentication is switched on (``devenv.iam.users.enforce_iam``)."""
    port = free_port()
    module = "devenv.iam.moto_iam" if aws_iam else "devenv.run.backends.moto_server"
    proc = spawn(
        [sys.executable, "-m", module, "--port", str(port)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "PYTHONPATH": str(REPO_ROOT)},
        log_path=str(workdir / "moto.log"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(http_ok(f"{url}/moto-api/"), timeout=60, what="moto server", proc=proc)
    return Emulator(backend="moto", env={"AWS_ENDPOINT_URL": url}, processes=[proc])
