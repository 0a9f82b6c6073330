"""podman from Python, configured like scripts/containers/ (runc, cgroupfs, host network)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.containers.workloads import WorkloadSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO_ROOT / "scripts" / "containers" / "containers.conf"


def available() -> str | None:
    """None where podman can be driven, else why not."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/containers/install-podman.sh)"
    return None


def podman(
    *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    result = subprocess.run(
        ["podman", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"podman {' '.join(args[:3])} ... exited {result.returncode}: {result.stderr[-2000:]}"
        )
    return result


def run_args(spec: WorkloadSpec, *, name: str, env: dict[str, str]) -> list[str]:
    """`podman run` arguments for spec on the host network; env overrides the spec's."""
    args = ["run", "--name", name, "--network", "host", "--user", spec.user]
    if spec.read_only_root:
        # Only the manifest's emptyDirs are writable: not podman's default /tmp, /run tmpfs.
        args += ["--read-only", "--read-only-tmpfs=false"]
    for path, size in spec.scratch.items():
        options = f"rw,mode=1777,size={_tmpfs_size(size)}" if size else "rw,mode=1777"
        args += ["--tmpfs", f"{path}:{options}"]
    for capability in spec.drop_capabilities:
        args += ["--cap-drop", capability]
    if spec.no_new_privileges:
        args += ["--security-opt", "no-new-privileges"]
    for key, value in sorted({**spec.env, **env}.items()):
        args += ["--env", f"{key}={value}"]
    return [*args, spec.image, *spec.command]


def _tmpfs_size(quantity: str) -> str:
    """A Kubernetes binary quantity (16Mi, 1Gi) as a tmpfs size (16m, 1g)."""
    for suffix in ("Ki", "Mi", "Gi"):
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + suffix[0].lower()
    return quantity
