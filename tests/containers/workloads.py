"""Read a rendered kustomize overlay (build/deploy/<overlay>.yaml) as container run specs.

The container e2e suite starts each service the way its Deployment (or the bootstrap Job)
says: same image, command, environment (ConfigMap, Secret and literal values), user,
read-only root and writable mounts. Only what a single container needs is read; a
cluster's own concerns (probes, scaling, scheduling) stay with `podman kube play`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

Manifest = dict[str, Any]


@dataclass(frozen=True)
class WorkloadSpec:
    """The first container of one Deployment or Job, resolved to plain values."""

    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    user: str
    read_only_root: bool
    drop_capabilities: list[str]
    no_new_privileges: bool
    termination_grace_s: int
    # emptyDir mounts: path -> size limit (a Kubernetes quantity such as "16Mi"), or "".
    scratch: dict[str, str] = field(default_factory=dict)


def load_manifests(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def workload(manifests: list[Manifest], kind: str, name: str) -> WorkloadSpec:
    obj = find(manifests, kind, name)
    pod = obj["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup", user))
    empty_dirs = {v["name"]: v["emptyDir"] for v in pod.get("volumes", []) if "emptyDir" in v}
    return WorkloadSpec(
        name=name,
        image=container["image"],
        command=list(container.get("command", [])) + list(container.get("args", [])),
        env=_environment(manifests, container),
        user=f"{user}:{group}",
        read_only_root=bool(security.get("readOnlyRootFilesystem", False)),
        drop_capabilities=list(security.get("capabilities", {}).get("drop", [])),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        termination_grace_s=int(pod.get("terminationGracePeriodSeconds", 30)),
        scratch={
            m["mountPath"]: str(empty_dirs[m["name"]].get("sizeLimit", ""))
            for m in container.get("volumeMounts", [])
            if m["name"] in empty_dirs
        },
    )


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    for obj in manifests:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise LookupError(f"no {kind} {name!r} in the rendered manifests")


def _environment(manifests: list[Manifest], container: Manifest) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
        elif "secretRef" in source:
            secret = find(manifests, "Secret", source["secretRef"]["name"])
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "resourceFieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = _resource_field(container, var["valueFrom"]["resourceFieldRef"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            try:
                secret = find(manifests, "Secret", ref["name"])
            except LookupError:
                if ref.get("optional"):
                    continue  # as in the cluster: an optional Secret that is absent sets nothing
                raise
            env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        else:
            raise ValueError(f"unsupported env source for {var['name']}: {var}")
    return env


def _resource_field(container: Manifest, ref: Manifest) -> str:
    """The downward API's value for a CPU limit with divisor 1 (what the manifests use)."""
    kind, resource = ref["resource"].split(".", 1)
    if resource != "cpu" or str(ref.get("divisor", "1")) != "1":
        raise ValueError(f"unsupported resourceFieldRef {ref}")
    quantity = str(container["resources"][kind]["cpu"])
    # Kubernetes rounds a fractional CPU up to the next whole core.
    millis = int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)
    return str(-(-millis // 1000))
