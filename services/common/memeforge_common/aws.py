"""One aioboto3 session and one long-lived client per AWS service per process.

Endpoints come from ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` and credentials
from the default chain, both read by botocore itself. Credentials are never copied out
of the session: refreshable providers (container, web identity, instance metadata)
keep long-running workers signing with fresh keys across rotation.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3
from aiobotocore.config import AioConfig

from memeforge_common.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient


def _has_endpoint_override(service_env_suffix: str) -> bool:
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service_env_suffix}")
    return bool(specific or os.environ.get("AWS_ENDPOINT_URL"))


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float
    max_attempts: int


# Workers can wait: long polls take up to 20 s, and a slow call beats a retried job.
WORKER_TIMEOUTS = Timeouts(connect_s=5, read_s=30, max_attempts=5)
# The API answers people: fail fast into a 503 + Retry-After instead of hanging.
API_TIMEOUTS = Timeouts(connect_s=2, read_s=10, max_attempts=3)


def client_config(
    *, s3: bool = False, pool: int = 64, timeouts: Timeouts = WORKER_TIMEOUTS
) -> AioConfig:
    # "standard" retry mode: exponential backoff with jitter on throttling, 5xx and
    # connection errors, instead of a hand-written retry loop.
    options: dict[str, object] = {
        "retries": {"mode": "standard", "max_attempts": timeouts.max_attempts},
        "connect_timeout": timeouts.connect_s,
        "read_timeout": timeouts.read_s,
        "max_pool_connections": pool,
    }
    if s3:
        # Emulators on 127.0.0.1 cannot serve virtual-hosted bucket names.
        style = "path" if _has_endpoint_override("S3") else "auto"
        options["s3"] = {"addressing_style": style}
        options["signature_version"] = "s3v4"
    return AioConfig(**options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AwsClients:
    s3: S3Client
    sqs: SQSClient
    dynamodb: DynamoDBClient

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, timeouts: Timeouts = WORKER_TIMEOUTS
    ) -> AsyncIterator[AwsClients]:
        session = aioboto3.Session(region_name=settings.aws_region)
        async with AsyncExitStack() as stack:
            enter = stack.enter_async_context
            s3 = await enter(session.client("s3", config=client_config(s3=True, timeouts=timeouts)))
            sqs = await enter(session.client("sqs", config=client_config(timeouts=timeouts)))
            ddb = await enter(session.client("dynamodb", config=client_config(timeouts=timeouts)))
            yield cls(s3=s3, sqs=sqs, dynamodb=ddb)
