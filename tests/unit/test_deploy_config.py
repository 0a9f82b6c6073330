"""The deployment artefacts configure exactly what the services read.

pydantic-settings ignores unknown ``MEMEFORGE_*`` variables (``extra="ignore"``), so a typo
in docker-compose.yml, a Dockerfile or a Kubernetes manifest would silently fall back to
a default. These tests compare every environment variable those files set with the
settings ``memeforge_common.settings.Settings`` defines (plus the AWS SDK's own variables,
named explicitly), check that the values parse, and pin the timing and packaging
invariants the artefacts rely on. Rendering and schema validation of the manifests is
`make lint-deploy` (scripts/validate-deploy.sh); this file needs only the project venv.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from memeforge_common import timing
from memeforge_common.settings import Settings
from packaging.requirements import Requirement
from pydantic import AliasChoices, ValidationError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "k8s"
SERVICES = ("api", "consumer", "renderer")
DOCKERFILES = {s: ROOT / "services" / s / "Dockerfile" for s in SERVICES}

# The AWS SDK reads these itself (endpoints: the emulator; region is a Settings alias).
SDK_VARIABLES = frozenset(
    {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB"}
)
# LocalStack's dummy keys: allowed only where the local emulator needs them.
EMULATOR_KEYS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
# What an image may set besides settings: interpreter and build-stage pip behaviour.
IMAGE_VARIABLES = frozenset(
    {
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PYTHONSAFEPATH",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_CACHE_DIR",
        "PIP_CONSTRAINT",
    }
)
MEMEFORGE_SERVICES = ("bootstrap", "api", "consumer", "renderer", "notifier")  # compose


# --- what the services read -----------------------------------------------------------------
def settings_variables() -> frozenset[str]:
    """Every environment variable Settings reads: MEMEFORGE_<FIELD>, or a field's aliases."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return frozenset(names)


def unknown_variables(names: set[str] | dict[str, Any], *, allowed: frozenset[str]) -> list[str]:
    """The names neither a setting nor explicitly allowed: typos, settings removed..."""
    return sorted(set(names) - settings_variables() - allowed)


def interpolate(value: object) -> str:
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR}: the value with VAR unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m[1] or "", str(value))


def parse_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a process with exactly this environment (for our variables) sees them."""
    for name in settings_variables() | SDK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


# --- docker compose -------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: use the mapping form of environment"
    return {k: interpolate(v) for k, v in env.items()}


@pytest.mark.parametrize("service", MEMEFORGE_SERVICES)
def test_compose_sets_only_settings_the_services_define(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose_env(service)
    assert not unknown_variables(env, allowed=SDK_VARIABLES | EMULATOR_KEYS)
    parse_settings(env, monkeypatch)  # and the values parse


def test_a_typo_in_compose_would_be_caught() -> None:
    env = compose_env("renderer")
    env["MEMEFORGE_RENDER_PROCESS"] = env.pop("MEMEFORGE_RENDER_PROCESSES")
    env["AWS_ENDPOINT_URL_SQSS"] = "http://localhost.localstack.cloud:4566"
    assert unknown_variables(env, allowed=SDK_VARIABLES | EMULATOR_KEYS) == [
        "AWS_ENDPOINT_URL_SQSS",
        "MEMEFORGE_RENDER_PROCESS",
    ]


def test_compose_points_every_service_at_localstack_and_keeps_keys_in_one_place() -> None:
    text = COMPOSE.read_text()
    for key in EMULATOR_KEYS:
        assert text.count(key) == 1, f"{key} belongs in the x-localstack-aws anchor only"
    assert set(compose()["x-localstack-aws"]) >= EMULATOR_KEYS | {"AWS_ENDPOINT_URL"}
    for service in MEMEFORGE_SERVICES:
        assert compose_env(service)["AWS_ENDPOINT_URL"].startswith("http://")


def test_compose_localstack_is_pinned_and_gates_the_bootstrap() -> None:
    """README "LocalStack 4.14.0 in a container, a one-shot bootstrap"."""
    services = compose()["services"]
    localstack = services["localstack"]
    assert localstack["image"] == "localstack/localstack:4.14.0"
    assert localstack["environment"]["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"
    assert "healthcheck" in localstack
    bootstrap = services["bootstrap"]
    assert bootstrap["command"] == ["python", "-m", "memeforge_common.bootstrap"]
    assert bootstrap["depends_on"]["localstack"]["condition"] == "service_healthy"
    for service in SERVICES:
        assert services[service]["depends_on"]["bootstrap"]["condition"] == (
            "service_completed_successfully"
        )


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match, f"unsupported duration {duration!r}"
    return int(match[1] or 0) * 60 + int(match[2] or 0)


@pytest.mark.parametrize("service", ["consumer", "renderer", "api"])
def test_compose_services_drain_before_being_killed(service: str) -> None:
    """docs/deploy.md "Timing budget": compose drains before the kill.
    The same timing budget as the Kubernetes manifests (memeforge_common/timing.py)."""
    spec = compose()["services"][service]
    env = compose_env(service)
    stop_grace = seconds(spec["stop_grace_period"])
    if service == "api":
        grace = timing.setting(env, "MEMEFORGE_SHUTDOWN_GRACE_S")
        assert stop_grace >= grace + timing.EXIT_MARGIN_S
    else:
        assert timing.worker_problems(env, stop_grace_s=stop_grace) == []
    assert "healthcheck" in spec


def test_the_timing_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = parse_settings({}, monkeypatch)
    for variable, value in timing.DEFAULTS.items():
        field = variable.removeprefix("MEMEFORGE_").lower()
        assert getattr(defaults, field) == value, variable
    assert defaults.liveness_max_age == timing.liveness_max_age({})


@pytest.mark.parametrize("service", ["consumer", "renderer"])
def test_compose_workers_can_scale(service: str) -> None:
    """README "`--scale renderer=4` works"."""
    spec = compose()["services"][service]
    assert "container_name" not in spec, "a fixed name breaks --scale"
    assert "ports" not in spec, "a published port breaks --scale"
    assert spec["environment"]["MEMEFORGE_HEARTBEAT_FILE"].startswith("/tmp/")


# --- Dockerfiles ----------------------------------------------------------------------------
def dockerfile_instructions(path: Path) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not logical:
            continue
        logical += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if line.endswith("\\"):
            continue
        if logical:
            instruction, _, arguments = logical.partition(" ")
            yield instruction.upper(), arguments.strip()
        logical = ""


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions(path):
        if instruction == "ENV":
            env.update(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', arguments))
    return env


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_env_is_settings_or_interpreter(service: str) -> None:
    env = dockerfile_env(DOCKERFILES[service])
    assert not unknown_variables(env, allowed=IMAGE_VARIABLES)
    assert not set(env) & EMULATOR_KEYS, "no credentials in images"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_runs_the_service_unprivileged_with_a_healthcheck(service: str) -> None:
    """docs/deploy.md "Container images": unprivileged, with a healthcheck."""
    instructions = list(dockerfile_instructions(DOCKERFILES[service]))
    froms = [args for ins, args in instructions if ins == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    (base_arg,) = [args for ins, args in instructions if ins == "ARG" and "PYTHON_IMAGE" in args]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", base_arg)
    users = [args for ins, args in instructions if ins == "USER"]
    assert users, "needs a USER"
    assert users[-1].split(":")[0].isdigit(), "numeric uid (runAsNonRoot can verify it)"
    assert users[-1].split(":")[0] != "0"
    assert any(ins == "HEALTHCHECK" for ins, _ in instructions)
    cmd = [args for ins, args in instructions if ins == "CMD"][-1]
    assert cmd == f'["python", "-m", "memeforge_{service}"]'
    assert (ROOT / "services" / service / f"memeforge_{service}" / "__main__.py").is_file()


def test_worker_images_heartbeat_where_the_probes_look() -> None:
    for service in ("consumer", "renderer"):
        env = dockerfile_env(DOCKERFILES[service])
        assert env["MEMEFORGE_HEARTBEAT_FILE"] == "/tmp/heartbeat"
    assert dockerfile_env(DOCKERFILES["api"])["MEMEFORGE_API_HOST"] == "0.0.0.0"


def test_renderer_builds_the_same_pillow_simd_as_make_setup() -> None:
    """docs/deploy.md "renderer": pillow-simd compiled exactly like make setup."""
    setup = (ROOT / "scripts" / "setup-venv.sh").read_text()
    (wanted,) = re.findall(r"^PILLOW_SIMD_VERSION=(\S+)", setup, flags=re.M)
    dockerfile = DOCKERFILES["renderer"].read_text()
    assert f"ARG PILLOW_SIMD_VERSION={wanted}" in dockerfile
    assert 'CC="$cc"' in dockerfile
    assert "--no-binary pillow-simd" in dockerfile


def test_renderer_image_compiles_and_checks_the_engines_c_module() -> None:
    """docs/deploy.md "renderer": the engine's C module is compiled by setup.py in the
    same stage, and the build fails if it cannot be imported."""
    dockerfile = DOCKERFILES["renderer"].read_text()
    assert "COPY pyproject.toml setup.py ./" in dockerfile
    assert 'python -c "import memeforge_renderer.engine._blend"' in dockerfile
    setup_py = (ROOT / "setup.py").read_text()
    assert "services/renderer/memeforge_renderer/engine/_blend.c" in setup_py
    assert "-march" not in setup_py


# --- pinned requirements for the images -----------------------------------------------------
def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found.update(pins(path.parent / line[3:].strip()))
        elif line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def pyproject() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data


@pytest.mark.parametrize(
    ("requirements", "groups"),
    [("runtime.txt", ["dependencies"]), ("api.txt", ["dependencies", "api"])],
)
def test_image_pins_satisfy_pyproject(requirements: str, groups: list[str]) -> None:
    project = pyproject()["project"]
    pinned = pins(ROOT / "requirements" / requirements)
    for group in groups:
        declared = (
            project[group] if group == "dependencies" else project["optional-dependencies"][group]
        )
        for spec in declared:
            requirement = Requirement(spec)
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            assert name in pinned, f"{requirements} lacks {requirement.name}"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{requirements}: {name}=={pinned[name]} does not satisfy {requirement}"
            )


def test_only_the_api_image_gets_stock_pillow() -> None:
    """docs/deploy.md "api": stock Pillow; only the api image has it."""
    assert "pillow" in pins(ROOT / "requirements" / "api.txt")
    assert "pillow" not in pins(ROOT / "requirements" / "runtime.txt")
    assert "pillow" not in pins(ROOT / "requirements" / "build.txt")


# --- Kubernetes -----------------------------------------------------------------------------
def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        if "schemas" in path.relative_to(K8S).parts:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                yield path, doc


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def env_file(path: Path) -> dict[str, str]:
    entries = (line.strip() for line in path.read_text().splitlines())
    return dict(e.split("=", 1) for e in entries if e and not e.startswith("#"))


def k8s_env_files() -> list[Path]:
    return sorted(K8S.rglob("config.env"))


def k8s_container_env_names() -> set[str]:
    names: set[str] = set()
    for _, doc in k8s_documents():
        for node in walk(doc):
            if "containers" in node and isinstance(node["containers"], list):
                for container in node["containers"]:
                    if str(container.get("image", "")).startswith("memeforge-"):
                        names.update(item["name"] for item in container.get("env", []))
    return names


def test_k8s_configmaps_set_only_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    files = k8s_env_files()
    assert len(files) >= 2, "base and overlay config.env"
    merged: dict[str, str] = {}
    for path in files:
        env = env_file(path)
        assert not unknown_variables(env, allowed=SDK_VARIABLES), path
        merged.update(env)
    parse_settings(merged, monkeypatch)


def test_k8s_containers_set_only_settings() -> None:
    names = k8s_container_env_names()
    assert {"MEMEFORGE_HEARTBEAT_FILE", "MEMEFORGE_RENDER_PROCESSES"} <= names
    assert not unknown_variables(names, allowed=SDK_VARIABLES)


def test_a_typo_in_a_k8s_configmap_would_be_caught() -> None:
    env = env_file(K8S / "base" / "config.env")
    env["MEMEFORGE_VISIBILITY_TIMEOUT"] = env.pop("MEMEFORGE_VISIBILITY_TIMEOUT_S")
    assert unknown_variables(env, allowed=SDK_VARIABLES) == ["MEMEFORGE_VISIBILITY_TIMEOUT"]


def test_k8s_resource_names_are_the_defaults_the_iam_policies_name() -> None:
    env = env_file(K8S / "base" / "config.env")
    defaults = Settings.model_construct()
    assert env["MEMEFORGE_BUCKET"] == defaults.bucket
    assert env["MEMEFORGE_TABLE"] == defaults.table
    assert env["MEMEFORGE_REQUEST_QUEUE"] == defaults.request_queue
    assert env["MEMEFORGE_RENDER_QUEUE"] == defaults.render_queue


def test_no_keys_outside_the_local_emulator_files() -> None:
    """README "nothing in code, images or manifests carries a key"."""
    allowed = {K8S / "overlays/local/localstack-credentials.env"}
    for path in sorted(K8S.rglob("*")):
        if path.is_file() and path not in allowed and "schemas" not in path.parts:
            text = path.read_text()
            assert not re.search(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)\s*[=:]", text), path
    aws_overlay = "\n".join(
        line
        for p in (K8S / "overlays/aws").rglob("*")
        if p.is_file()
        for line in p.read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    assert "AWS_ACCESS_KEY_ID" not in aws_overlay
    assert "AWS_ENDPOINT_URL" not in aws_overlay
    assert set(env_file(next(iter(allowed)))) == EMULATOR_KEYS


def test_settings_typos_fail_loudly_when_values_do_not_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError):
        parse_settings({"MEMEFORGE_SHUTDOWN_GRACE_S": "25s"}, monkeypatch)
