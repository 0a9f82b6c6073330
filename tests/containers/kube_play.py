"""A rendered overlay's Deployments and bootstrap Job, as `podman kube play` runs them here.

podman 4.3 (Debian bookworm) plays Pods and Deployments (one replica each) and reads the
ConfigMaps in the same file, but not Jobs or Secrets. So, and only so, the manifests are
adapted; commands, environment, probes and security contexts are left as they are:
  - the Job's pod template becomes a Pod (restartPolicy Never, as in the Job);
  - a Secret goes into podman's secret store, as the JSON map of base64 values podman
    reads for `envFrom: secretRef`;
  - no pod network here: every pod uses the host network, and the api listens on a free
    loopback port, which its probes name by number (podman refuses port mappings there);
  - the ConfigMap's AWS_ENDPOINT_URL (the in-cluster LocalStack) names the host emulator.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from tests.containers.workloads import Manifest, find

SERVICES = ("api", "consumer", "renderer")


@dataclass(frozen=True)
class Playable:
    bootstrap: list[Manifest]
    services: list[Manifest]
    # podman secret name -> its content (what `podman secret create NAME -` reads).
    secrets: dict[str, str]


def playable(manifests: list[Manifest], *, config: dict[str, str], api_port: int) -> Playable:
    job = copy.deepcopy(find(manifests, "Job", "memeforge-bootstrap"))
    deployments = [copy.deepcopy(find(manifests, "Deployment", f"memeforge-{s}")) for s in SERVICES]
    bootstrap_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": job["metadata"]["name"], "labels": job["metadata"]["labels"]},
        "spec": job["spec"]["template"]["spec"],
    }
    config_maps, secrets = [], {}
    for workload in [bootstrap_pod["spec"], *(d["spec"]["template"]["spec"] for d in deployments)]:
        workload["hostNetwork"] = True
        for source in workload["containers"][0].get("envFrom", []):
            if "configMapRef" in source:
                config_map = copy.deepcopy(
                    find(manifests, "ConfigMap", source["configMapRef"]["name"])
                )
                config_map["data"].update(config)
                config_maps.append(config_map)
            elif "secretRef" in source:
                name = source["secretRef"]["name"]
                secrets[name] = json.dumps(find(manifests, "Secret", name)["data"])
    _listen_on(find(deployments, "Deployment", "memeforge-api"), api_port)
    unique_maps = list({m["metadata"]["name"]: m for m in config_maps}.values())
    return Playable(
        bootstrap=[*unique_maps, bootstrap_pod],
        services=[*unique_maps, *deployments],
        secrets=secrets,
    )


def _listen_on(api: Manifest, port: int) -> None:
    container = api["spec"]["template"]["spec"]["containers"][0]
    for var in container["env"]:
        if var["name"] == "MEMEFORGE_API_PORT":
            var["value"] = str(port)
        elif var["name"] == "MEMEFORGE_API_HOST":
            var["value"] = "127.0.0.1"
    # No port mappings on the host network (podman refuses them): the probes name the
    # port by number instead of by its name in `ports`.
    names = {declared["name"] for declared in container.pop("ports")}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http_get = container[probe]["httpGet"]
        assert http_get["port"] in names, http_get
        http_get["port"] = port
