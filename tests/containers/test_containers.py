"""The three images, run as k8s/overlays/local says, against the emulator on the host.

Tests run in file order on one module-scoped set of containers: the drain test replaces
the renderer, and the last test inspects every container that ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.containers import podman
from tests.containers.conftest import SERVICES, ContainerStack
from tests.containers.memes import SETTLE_S, assert_captioned, settle, submit, upload_template

pytestmark = pytest.mark.e2e

TEMPLATE = "container-gradient"
# What podman itself puts into a container's root: its /etc/hosts, /etc/resolv.conf
# and /etc/hostname bind mounts (and so a changed /etc), /run/.containerenv.
PODMAN_MOUNT_POINTS = {
    "/etc",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/run",
    "/run/.containerenv",
}


@pytest.fixture(scope="module")
def api(containers: ContainerStack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {containers.api_key}"}
    with httpx.Client(base_url=containers.api_url, timeout=30, headers=headers) as client:
        upload_template(client, TEMPLATE)
        yield client


def test_memes_submitted_to_the_api_container_are_rendered(api: httpx.Client) -> None:
    for meme_id in submit(api, TEMPLATE, 6):
        assert_captioned(api, settle(api, meme_id))


def test_every_container_passes_its_image_healthcheck(containers: ContainerStack) -> None:
    for service in SERVICES:
        result = podman.podman("healthcheck", "run", containers.name(service), check=False)
        assert result.returncode == 0, (service, result.stdout, result.stderr)


def test_the_renderer_runs_pillow_simd_and_no_stock_pillow(containers: ContainerStack) -> None:
    """docs/deploy.md "renderer": pillow-simd and no stock Pillow."""
    probe = (
        "import importlib.metadata as m, json, PIL; "
        "print(json.dumps({'simd': m.version('pillow-simd'), 'pil': PIL.__version__, "
        "'dists': sorted(d.metadata['Name'].lower() for d in m.distributions())}))"
    )
    out = podman.podman("exec", containers.name("renderer"), "python", "-c", probe).stdout
    found = json.loads(out)
    assert found["simd"] == found["pil"]
    assert "pillow" not in found["dists"]


def test_stopping_a_loaded_renderer_drains_within_grace_and_loses_nothing(
    api: httpx.Client, containers: ContainerStack
) -> None:
    renderer = containers.name("renderer")
    grace = containers.specs["renderer"].termination_grace_s
    # A render takes milliseconds: memes keep arriving while the renderer is stopped, so
    # it is busy at SIGTERM and work is left for its successor.
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = [pool.submit(submit, api, TEMPLATE, 20) for _ in range(4)]
        first = batches[0].result(timeout=SETTLE_S)
        deadline = time.monotonic() + SETTLE_S
        while not any(state(api, i) in ("RENDERING", "DONE") for i in first[:5]):
            assert time.monotonic() < deadline, "no meme started rendering"
        podman.podman("stop", "--time", str(grace), renderer, timeout=grace + 30)
        # Memes that arrive while no renderer runs: the successor must render them too
        # (the batches above may all be done by the stop on a fast, quiet machine).
        arrived = submit(api, TEMPLATE, 5)
    ids = [meme_id for batch in batches for meme_id in batch.result()] + arrived
    stopped = json.loads(podman.podman("inspect", "--format", "{{json .State}}", renderer).stdout)
    # 0, not 137: the renderer drained on SIGTERM; podman did not have to SIGKILL it.
    assert (stopped["ExitCode"], stopped["OOMKilled"]) == (0, False), stopped
    left = [i for i in ids if state(api, i) != "DONE"]
    assert left, "every meme was done before the stop: no load to drain"
    containers.start("renderer", generation=1)
    for meme_id in ids:
        assert_captioned(api, settle(api, meme_id))


def state(api: httpx.Client, meme_id: str) -> str:
    return str(api.get(f"/memes/{meme_id}").json()["state"])


def test_no_container_wrote_outside_its_tmpfs(containers: ContainerStack) -> None:
    """docs/deploy.md "Security": "readOnlyRootFilesystem".
    Read-only roots held: nothing changed in any root filesystem (`podman diff`), no
    service hit "Read-only file system" (EROFS) on the way, and the workers' heartbeat
    lives on the tmpfs the manifests mount."""
    for name in containers.started:
        changes = json.loads(podman.podman("diff", "--format", "json", name).stdout or "{}")
        written = {
            path for paths in changes.values() for path in paths if path not in PODMAN_MOUNT_POINTS
        }
        assert not written, (name, changes)
        logs = podman.podman("logs", name)
        assert "Read-only file system" not in logs.stdout + logs.stderr, name
    for service in ("consumer", "renderer"):
        heartbeat = containers.specs[service].env["MEMEFORGE_HEARTBEAT_FILE"]
        assert any(heartbeat.startswith(path + "/") for path in containers.specs[service].scratch)
        mounts = podman.podman(
            "exec",
            containers.name(service, 1 if service == "renderer" else 0),
            "cat",
            "/proc/mounts",
        ).stdout
        assert f" {heartbeat.rsplit('/', 1)[0]} tmpfs rw," in mounts, mounts
