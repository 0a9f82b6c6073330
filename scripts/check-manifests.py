#!/usr/bin/env python3
"""Check rendered Kubernetes manifests (one overlay's `kubectl kustomize` output).

    check-manifests.py --overlay local|aws --keda-out keda.yaml --core-out core.yaml rendered.yaml

1. Splits the output: KEDA objects (keda.sh/*) go to --keda-out, the rest to --core-out
   (which kubernetes-validate then checks against the Kubernetes OpenAPI schemas).
2. Validates the KEDA objects against the CRDs checked in under k8s/schemas/keda (their
   openAPIV3Schema, made strict: an unknown field is an error, as `kubectl apply` with
   server-side field validation would say) plus what the CRD cannot say: the
   aws-sqs-queue trigger's metadata keys.
3. Checks the deployment rules that schemas cannot express: hardened pods, probes, the
   timing budget (services/common/memeforge_common/timing.py: shutdown grace covers a
   long poll, SIGKILL comes after the grace plus a margin and before the visibility
   timeout, startup probes outlast the startup wait, liveness max age covers the job
   deadline) and docs/deploy.md's "Timing budget" table against it, autoscaling and disruption
   budgets for every Deployment, ingress only to the api, no credentials or emulator
   endpoints in the aws overlay.

Runs with the validation venv (.venv-deploy: PyYAML and jsonschema come with yamllint and
check-jsonschema). Exit status 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "k8s" / "schemas" / "keda"
NAMESPACE = "memeforge"
HEALTHCHECK = ["python", "-m", "memeforge_common.healthcheck"]
# The aws-sqs-queue scaler's metadata (KEDA pkg/scalers/aws_sqs_queue_scaler.go).
SQS_TRIGGER_KEYS = frozenset(
    {
        "queueURL",
        "queueURLFromEnv",
        "queueLength",
        "activationQueueLength",
        "awsRegion",
        "awsEndpoint",
        "scaleOnInFlight",
        "scaleOnDelayed",
        "identityOwner",
        "awsRoleArn",
    }
)
# Which queue each worker consumes, by the setting that names it.
QUEUE_SETTING = {
    "memeforge-consumer": "MEMEFORGE_REQUEST_QUEUE",
    "memeforge-renderer": "MEMEFORGE_RENDER_QUEUE",
    "memeforge-notifier": "MEMEFORGE_NOTIFICATION_QUEUE",
}
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
IMDS = "169.254.169.254/32"
# Rows of the doc's timing table that come straight from a setting.
TIMING_ROWS = {
    "receive wait": "MEMEFORGE_RECEIVE_WAIT_S",
    "shutdown grace": "MEMEFORGE_SHUTDOWN_GRACE_S",
    "visibility timeout": "MEMEFORGE_VISIBILITY_TIMEOUT_S",
    "job deadline": "MEMEFORGE_JOB_DEADLINE_S",
    "rendering mark": "MEMEFORGE_RENDERING_MARK_AFTER_S",
    "startup wait": "MEMEFORGE_STARTUP_WAIT_S",
}
# The api holds no messages: only these rows describe it too.
API_ROWS = {"termination grace", "startup probe budget", "startup wait", "shutdown grace"}


def _load_timing() -> Any:
    """memeforge_common/timing.py, by path: this venv does not install the services."""
    path = ROOT / "services" / "common" / "memeforge_common" / "timing.py"
    spec = importlib.util.spec_from_file_location("memeforge_timing", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


timing = _load_timing()

# Strings that would mean the aws overlay talks to an emulator or carries keys.
AWS_OVERLAY_FORBIDDEN = (
    "localstack",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "000000000000",
)

problems: list[str] = []


def problem(obj: dict[str, Any] | None, message: str) -> None:
    where = f"{obj['kind']}/{obj['metadata']['name']}: " if obj else ""
    problems.append(where + message)


# --- KEDA CRD schemas -----------------------------------------------------------------------
def strict(schema: Any) -> Any:
    """openAPIV3Schema → JSON Schema: unknown fields rejected, k8s extensions understood."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if schema.get("nullable"):
        out.pop("nullable")
        if "type" in out:
            out["type"] = [
                *([out["type"]] if isinstance(out["type"], str) else out["type"]),
                "null",
            ]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            # ObjectMeta is not spelled out in CRDs; the core validation covers its shape.
            schema["properties"]["metadata"] = {"type": "object"}
            schema["required"] = sorted({*schema.get("required", []), "spec"})
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
            validators[(f"{group}/{version['name']}", kind)] = cls(schema)
    return validators


def check_keda(objects: list[dict[str, Any]]) -> None:
    validators = crd_validators()
    for obj in objects:
        validator = validators.get((obj["apiVersion"], obj["kind"]))
        if validator is None:
            problem(obj, f"no checked-in CRD schema for {obj['apiVersion']} {obj['kind']}")
            continue
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in error.path) or "<root>"
            problem(obj, f"{path}: {error.message}")
        if obj["kind"] == "ScaledObject":
            for trigger in obj["spec"].get("triggers", []):
                if trigger.get("type") != "aws-sqs-queue":
                    problem(obj, f"unexpected trigger type {trigger.get('type')}")
                    continue
                unknown = set(trigger.get("metadata", {})) - SQS_TRIGGER_KEYS
                if unknown:
                    problem(obj, f"unknown aws-sqs-queue metadata {sorted(unknown)}")


# --- deployment rules -----------------------------------------------------------------------
def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def container_env(
    container: dict[str, Any], configmaps: dict[str, dict[str, str]]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(configmaps.get(ref["name"], {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def check_pod(obj: dict[str, Any], names: dict[str, set[str]]) -> None:
    spec = pod_spec(obj)
    if spec.get("enableServiceLinks") is not False:
        problem(obj, "enableServiceLinks must be false (service env vars look like settings)")
    if obj["metadata"].get("namespace") != NAMESPACE:
        return  # the local overlay's emulator: only the rule above applies
    if spec.get("automountServiceAccountToken") is not False:
        problem(obj, "automountServiceAccountToken must be false")
    if spec.get("serviceAccountName") not in names["ServiceAccount"]:
        problem(obj, f"service account {spec.get('serviceAccountName')} does not exist")
    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True or not pod_sc.get("runAsUser"):
        problem(obj, "pod must run as a non-root uid (runAsNonRoot, runAsUser)")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(obj, "seccompProfile must be RuntimeDefault")
    for container in spec["containers"]:
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(obj, f"{container['name']}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(obj, f"{container['name']}: readOnlyRootFilesystem must be true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problem(obj, f"{container['name']}: capabilities must drop ALL")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problem(obj, f"{container['name']}: no {kind}.{resource}")
        image = container["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest"):
            problem(obj, f"{container['name']}: image {image} needs a fixed tag")
        for source in container.get("envFrom", []):
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = source.get(key)
                if ref and ref["name"] not in names[kind]:
                    problem(obj, f"{kind} {ref['name']} does not exist")


def probe_budget(probe: dict[str, Any]) -> float:
    """The longest a probe lets a container go without success before it acts."""
    return float(
        probe.get("initialDelaySeconds", 0)
        + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    )


def check_timing(obj: dict[str, Any], env: dict[str, str], *, worker: bool) -> dict[str, float]:
    """The timing budget (memeforge_common/timing.py); returns the numbers it checked."""
    spec = pod_spec(obj)
    container = spec["containers"][0]
    termination = float(spec.get("terminationGracePeriodSeconds", 30))
    grace = timing.setting(env, "MEMEFORGE_SHUTDOWN_GRACE_S")
    visibility = timing.setting(env, "MEMEFORGE_VISIBILITY_TIMEOUT_S")
    startup = probe_budget(container.get("startupProbe", {}))
    found = timing.startup_problems(env, startup_budget_s=startup)
    numbers = {
        "termination grace": termination,
        "startup probe budget": startup,
        "liveness probe period": float(container.get("livenessProbe", {}).get("periodSeconds", 10)),
    }
    if worker:
        found += timing.worker_problems(env, stop_grace_s=termination)
        numbers["liveness max age"] = timing.liveness_max_age(env)
    else:
        # The api: preStop, then uvicorn's graceful shutdown (the same grace setting).
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
        sleep = float(pre_stop.get("command", ["sleep", "0"])[-1])
        if termination < sleep + grace + timing.EXIT_MARGIN_S:
            found.append(
                f"terminationGracePeriodSeconds {termination:g} < preStop {sleep:g} s + "
                f"graceful shutdown {grace:g} s + exit margin {timing.EXIT_MARGIN_S:g} s"
            )
        if termination >= visibility:
            found.append(f"terminationGracePeriodSeconds {termination:g} >= visibility")
    for message in found:
        problem(obj, message)
    return numbers


def doc_timing_table(path: Path = DEPLOY_DOC) -> dict[str, float]:
    """The "timing budget" table of docs/deploy.md: first column → seconds (3rd column)."""
    text = path.read_text()
    start = text.find("### Timing budget")
    if start < 0:
        problem(None, f"{path.name} has no '### Timing budget' section")
        return {}
    rows: dict[str, float] = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and (value := re.fullmatch(r"(\d+(?:\.\d+)?) s", cells[2])):
            rows[cells[0]] = float(value[1])
    return rows


def check_doc_timing(actual: dict[str, dict[str, float]]) -> None:
    """Every number in the doc's table is what every deployment it covers really has."""
    documented = doc_timing_table()
    for row, value in documented.items():
        seen = {v[row] for v in actual.values() if row in v}
        if not seen:
            problem(None, f"docs/deploy.md timing row {row!r} matches nothing checked")
        elif seen != {value}:
            problem(
                None,
                f"docs/deploy.md says {row} is {value:g} s; the manifests have "
                f"{', '.join(f'{v:g} s' for v in sorted(seen))}",
            )


def check_no_instance_metadata(policies: list[dict[str, Any]]) -> None:
    """Every pod's egress excludes IMDS (a pod without its own identity would otherwise
    get the node's role), and no rule lets it back in."""
    egress = [
        p
        for p in policies
        if p["spec"].get("podSelector") == {} and "Egress" in p["spec"].get("policyTypes", [])
    ]
    blocks = [
        peer["ipBlock"]
        for p in egress
        for rule in p["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]
    if not egress or not any(IMDS in b.get("except", []) for b in blocks):
        problem(None, f"no egress NetworkPolicy for every pod that excludes {IMDS}")
    if any(b["cidr"] == IMDS for b in blocks):
        problem(None, f"an egress rule allows the instance metadata service {IMDS}")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def targets_of(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["spec"]["scaleTargetRef"]["name"]: o for o in objects if o["kind"] == kind}


def check_rules(objects: list[dict[str, Any]], overlay: str) -> None:
    names: dict[str, set[str]] = {}
    for obj in objects:
        names.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    names.setdefault("Secret", set())
    configmaps = {
        o["metadata"]["name"]: {k: str(v) for k, v in o.get("data", {}).items()}
        for o in objects
        if o["kind"] == "ConfigMap"
    }
    ours = [o for o in objects if o["metadata"].get("namespace") == NAMESPACE]
    deployments = [o for o in ours if o["kind"] == "Deployment"]
    pdbs = [o for o in ours if o["kind"] == "PodDisruptionBudget"]
    hpas = targets_of(ours, "HorizontalPodAutoscaler")
    scaled = targets_of(ours, "ScaledObject")

    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            check_pod(obj, names)

    timings: dict[str, dict[str, float]] = {}

    for deployment in deployments:
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        container = pod_spec(deployment)["containers"][0]
        env = container_env(container, configmaps)
        numbers = check_timing(deployment, env, worker=name in scaled)
        for row, setting_name in TIMING_ROWS.items():
            numbers[row] = timing.setting(env, setting_name)
        timings[name] = numbers
        if "replicas" in deployment["spec"]:
            problem(deployment, "replicas is set, but an autoscaler owns the count")
        if not any(selects(p["spec"]["selector"], labels) for p in pdbs):
            problem(deployment, "no PodDisruptionBudget")
        if name in hpas:
            if "readinessProbe" not in container or "httpGet" not in container["readinessProbe"]:
                problem(deployment, "the api needs an HTTP readinessProbe")
            if "livenessProbe" not in container or "httpGet" not in container["livenessProbe"]:
                problem(deployment, "the api needs an HTTP livenessProbe")
        elif name in scaled:
            probe = container.get("livenessProbe", {}).get("exec", {}).get("command")
            if probe != HEALTHCHECK:
                problem(deployment, f"worker liveness must run {' '.join(HEALTHCHECK)}")
            beat = env.get("MEMEFORGE_HEARTBEAT_FILE", "")
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            if not any(beat.startswith(m.rstrip("/") + "/") for m in mounts):
                problem(deployment, f"heartbeat file {beat!r} is not on a writable volume")
            so = scaled[name]
            metadata = so["spec"]["triggers"][0]["metadata"]
            for key in ("queueLength", "activationQueueLength"):
                if key not in metadata:
                    problem(so, f"trigger needs {key}")
            if metadata.get("scaleOnInFlight", "true") != "false":
                problem(so, "scaleOnInFlight must be false: messages in retry back-off count")
            if not 0 <= so["spec"].get("minReplicaCount", 0) <= so["spec"]["maxReplicaCount"]:
                problem(so, "needs 0 <= minReplicaCount <= maxReplicaCount")
            concurrency = env.get("MEMEFORGE_WORKER_CONCURRENCY", "16")
            if metadata.get("queueLength") != concurrency:
                problem(so, f"queueLength should equal the worker concurrency ({concurrency})")
            queue = env.get(QUEUE_SETTING.get(name, ""), "")
            if not metadata.get("queueURL", "").endswith("/" + queue):
                problem(so, f"queueURL does not point at the configured queue {queue!r}")
            auth = so["spec"]["triggers"][0].get("authenticationRef", {}).get("name")
            if auth not in names.get("TriggerAuthentication", set()):
                problem(so, f"TriggerAuthentication {auth} does not exist")
        else:
            problem(deployment, "neither an HPA nor a KEDA ScaledObject scales it")
    check_doc_timing(
        {
            n: t if n in scaled else {k: v for k, v in t.items() if k in API_ROWS}
            for n, t in timings.items()
        }
    )

    for job in (o for o in ours if o["kind"] == "Job"):
        if pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
            problem(job, "restartPolicy must be Never or OnFailure")

    policies = [o for o in ours if o["kind"] == "NetworkPolicy"]
    default_deny = [
        p
        for p in policies
        if p["spec"].get("podSelector") == {}
        and "Ingress" in p["spec"].get("policyTypes", [])
        and not p["spec"].get("ingress")
    ]
    if not default_deny:
        problem(None, "no default-deny ingress NetworkPolicy in the memeforge namespace")
    for policy in policies:
        if policy["spec"].get("ingress"):
            target = policy["spec"].get("podSelector", {}).get("matchLabels", {})
            if target.get("app.kubernetes.io/name") != "memeforge-api":
                problem(policy, "only the api may receive traffic")
            for rule in policy["spec"]["ingress"]:
                if not rule.get("from"):
                    problem(policy, "api ingress must name where it comes from")
    check_no_instance_metadata(policies)

    text = yaml.safe_dump_all(objects)
    if overlay == "aws":
        for marker in AWS_OVERLAY_FORBIDDEN:
            if marker in text:
                problem(None, f"the aws overlay must not contain {marker!r}")
        if names["Secret"]:
            problem(None, f"the aws overlay must not carry Secrets: {sorted(names['Secret'])}")
        for sa in (o for o in ours if o["kind"] == "ServiceAccount"):
            arn = sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "")
            if not arn.startswith("arn:aws:iam::") or not arn.endswith(
                ":role/" + sa["metadata"]["name"]
            ):
                problem(sa, "needs its own IRSA role annotation")
    elif overlay == "local":
        for name, data in configmaps.items():
            if name.startswith("memeforge-config") and "AWS_ENDPOINT_URL" not in data:
                problem(None, f"ConfigMap {name} must point AWS_ENDPOINT_URL at LocalStack")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rendered", type=Path)
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--core-out", type=Path, required=True)
    parser.add_argument("--keda-out", type=Path, required=True)
    args = parser.parse_args()
    objects = [o for o in yaml.safe_load_all(args.rendered.read_text()) if o]
    keda = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    core = [o for o in objects if not o["apiVersion"].startswith("keda.sh/")]
    args.core_out.write_text(yaml.safe_dump_all(core, sort_keys=False))
    args.keda_out.write_text(yaml.safe_dump_all(keda, sort_keys=False))
    check_keda(keda)
    check_rules(objects, args.overlay)
    for line in problems:
        print(f"{args.overlay}: {line}", file=sys.stderr)
    kinds = sorted({o["kind"] for o in objects})
    status = "FAILED" if problems else "ok"
    print(
        f"{args.overlay}: {status}: {len(objects)} objects ({', '.join(kinds)}); "
        f"{len(keda)} KEDA objects checked against k8s/schemas/keda"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
