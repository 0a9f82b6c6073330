"""The product as containers: the project's images, started the way k8s/overlays/local says.

Runs under `make container-e2e`, which builds the images and renders the manifests first
and sets MEMEFORGE_CONTAINER_E2E=1; a plain `make test` skips this directory with that hint.
The AWS emulator runs on the host (the session `emulator` fixture, LocalStack backend under
make container-e2e); every container shares the host network and reaches it on loopback.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from memeforge_common.apikeys import generate_key

from devenv.run.emulator import Emulator
from devenv.run.proc import free_port, http_ok, wait_until
from tests.containers import podman
from tests.containers.workloads import Manifest, WorkloadSpec, load_manifests, workload

RENDERED = Path(__file__).resolve().parents[2] / "build" / "deploy" / "local.yaml"
SERVICES = ("api", "consumer", "renderer")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("MEMEFORGE_CONTAINER_E2E") == "1":
        return
    skip = pytest.mark.skip(reason="container e2e: run `make container-e2e` (builds the images)")
    for item in items:
        if "tests/containers/" in item.nodeid:
            item.add_marker(skip)


@dataclass
class ContainerStack:
    """Containers named <service>-<run id>; api_url is the containerized api on loopback."""

    specs: dict[str, WorkloadSpec]
    env: dict[str, str]
    api_url: str
    api_key: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started: list[str] = field(default_factory=list)

    def name(self, service: str, generation: int = 0) -> str:
        return f"mf-{service}-{self.run_id}" + (f"-{generation}" if generation else "")

    def start(self, service: str, generation: int = 0) -> str:
        name = self.name(service, generation)
        args = podman.run_args(self.specs[service], name=name, env=self.env)
        podman.podman(args[0], "--detach", *args[1:])
        self.started.append(name)
        return name

    def remove_all(self) -> None:
        for name in reversed(self.started):
            logs = podman.podman("logs", "--tail", "40", name, check=False)
            print(f"--- {name} log (tail) ---\n{logs.stdout}{logs.stderr}")
            podman.podman("rm", "--force", "--time", "5", name, check=False)


@pytest.fixture(scope="session")
def manifests() -> list[Manifest]:
    reason = podman.available()
    if reason is not None:
        pytest.fail(reason)
    if not RENDERED.exists():
        pytest.fail(f"{RENDERED} is missing: `make k8s-validate` renders it")
    return load_manifests(RENDERED)


@pytest.fixture(scope="module")
def containers(manifests: list[Manifest], emulator: Emulator) -> Iterator[ContainerStack]:
    port = free_port()
    env = {
        **emulator.env,
        # Loopback only (the Deployment's 0.0.0.0 is for a pod's own network namespace),
        # on a free port: the host network is shared with everything else here.
        "MEMEFORGE_API_HOST": "127.0.0.1",
        "MEMEFORGE_API_PORT": str(port),
    }
    stack = ContainerStack(
        specs={s: workload(manifests, "Deployment", f"memeforge-{s}") for s in SERVICES}
        | {"bootstrap": workload(manifests, "Job", "memeforge-bootstrap")},
        env=env,
        api_url=f"http://127.0.0.1:{port}",
        api_key=generate_key().token,
    )
    try:
        bootstrap = stack.name("bootstrap")
        # The first key as the k8s Job gets it (its optional Secret), for tenant "containers".
        first_key = {
            "MEMEFORGE_FIRST_API_KEY": stack.api_key,
            "MEMEFORGE_FIRST_API_KEY_TENANT": "containers",
        }
        args = podman.run_args(stack.specs["bootstrap"], name=bootstrap, env=env | first_key)
        stack.started.append(bootstrap)
        podman.podman(*args, timeout=300)
        for service in SERVICES:
            stack.start(service)
        wait_until(
            http_ok(f"{stack.api_url}/healthz"), timeout=120, what="api container", proc=None
        )
        yield stack
    finally:
        stack.remove_all()
