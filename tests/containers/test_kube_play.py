"""`podman kube play` of k8s/overlays/local: the Deployments and the bootstrap Job as
written (see kube_play.py for the few adaptations podman 4.3 and the host network need),
against the emulator on the host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from devenv.run.emulator import Emulator
from devenv.run.proc import free_port, http_ok, wait_until
from tests.containers.kube_play import SERVICES, playable
from tests.containers.memes import assert_captioned, settle, submit, upload_template
from tests.containers.podman import podman
from tests.containers.workloads import Manifest, find

pytestmark = pytest.mark.e2e

BOOTSTRAP = "memeforge-bootstrap-bootstrap"  # podman names a Pod's container <pod>-<container>


def container(service: str) -> str:
    """The container podman runs for a Deployment's first (only) replica."""
    return f"memeforge-{service}-pod-0-{service}"


@dataclass(frozen=True)
class Played:
    api_url: str
    bootstrap_exit: str
    deployments: dict[str, Manifest]


@pytest.fixture(scope="module")
def played(
    manifests: list[Manifest], emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Played]:
    port = free_port()
    play = playable(manifests, config=emulator.env, api_port=port)
    workdir = tmp_path_factory.mktemp("kube-play")
    files: list[Path] = []
    try:
        for name, content in play.secrets.items():
            podman("secret", "create", name, "-", stdin=content)
        for name, docs in (("bootstrap", play.bootstrap), ("services", play.services)):
            files.append(workdir / f"{name}.yaml")
            files[-1].write_text(yaml.safe_dump_all(docs))
        # The Job first, as in the cluster, where the services wait for its resources.
        podman("kube", "play", str(files[0]), timeout=300)
        bootstrap_exit = podman("wait", BOOTSTRAP, timeout=300).stdout.strip()
        podman("kube", "play", str(files[1]), timeout=300)
        api_url = f"http://127.0.0.1:{port}"
        wait_until(http_ok(f"{api_url}/healthz"), timeout=120, what="kube-played api", proc=None)
        yield Played(
            api_url=api_url,
            bootstrap_exit=bootstrap_exit,
            deployments={s: find(play.services, "Deployment", f"memeforge-{s}") for s in SERVICES},
        )
    finally:
        for name in [BOOTSTRAP, *(container(s) for s in SERVICES)]:
            logs = podman("logs", "--tail", "40", name, check=False)
            print(f"--- {name} log (tail) ---\n{logs.stdout}{logs.stderr}")
        for path in reversed(files):
            podman("kube", "down", str(path), check=False, timeout=120)
        for name in play.secrets:
            podman("secret", "rm", name, check=False)


def spec(played: Played, service: str) -> Manifest:
    containers: list[Manifest] = played.deployments[service]["spec"]["template"]["spec"][
        "containers"
    ]
    return containers[0]


def test_the_bootstrap_job_pod_completes(played: Played) -> None:
    assert played.bootstrap_exit == "0"


def test_the_deployments_render_memes(played: Played) -> None:
    with httpx.Client(base_url=played.api_url, timeout=30) as api:
        upload_template(api, "kube-gradient")
        for meme_id in submit(api, "kube-gradient", 3):
            assert_captioned(api, settle(api, meme_id))


def test_every_probe_passes(played: Played) -> None:
    api = spec(played, "api")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = api[probe]["httpGet"]
        url = f"http://127.0.0.1:{get['port']}{get['path']}"
        assert httpx.get(url, timeout=5).status_code == 200, probe
    for service in ("consumer", "renderer"):
        worker = spec(played, service)
        for probe in ("startupProbe", "livenessProbe"):
            command = worker[probe]["exec"]["command"]
            result = podman("exec", container(service), *command, check=False)
            assert result.returncode == 0, (service, probe, result.stderr)
        # podman turned the livenessProbe into the container's healthcheck.
        health = podman("healthcheck", "run", container(service), check=False)
        assert health.returncode == 0, (service, health.stdout, health.stderr)


def test_every_container_runs_with_the_manifests_security_context(played: Played) -> None:
    """docs/deploy.md "Security": uid 10001, non-root, read-only root."""
    probe = (
        "import json, os; status = dict(l.split(':', 1) for l in open('/proc/self/status')); "
        "print(json.dumps({'ids': [os.getuid(), os.getgid()], "
        "'nnp': status['NoNewPrivs'].strip(), 'caps': status['CapEff'].strip()}))"
    )
    for name in [container(s) for s in SERVICES]:
        found = json.loads(podman("exec", name, "python", "-c", probe).stdout)
        assert found == {"ids": [10001, 10001], "nnp": "1", "caps": "0" * 16}, name
        inspected = json.loads(podman("inspect", "--format", "{{json .HostConfig}}", name).stdout)
        assert inspected["ReadonlyRootfs"] is True, name
    renderer_env = podman("exec", container("renderer"), "printenv", "MEMEFORGE_RENDER_PROCESSES")
    # The downward API's value of limits.cpu (2) reached the renderer.
    assert renderer_env.stdout.strip() == str(
        spec(played, "renderer")["resources"]["limits"]["cpu"]
    )
