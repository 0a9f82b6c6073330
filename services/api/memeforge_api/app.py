"""The FastAPI application: one AWS client set per process, opened in the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from memeforge_common.apikeys import KeyStore
from memeforge_common.aws import API_TIMEOUTS, AwsClients
from memeforge_common.batches import BatchStore
from memeforge_common.endpoints import EndpointCache, EndpointStore
from memeforge_common.gathering import Gathering
from memeforge_common.items import MemeStore
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import RequestPublisher
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings, get_settings
from memeforge_common.templates import TemplateStore
from memeforge_common.uploads import UploadStore

from memeforge_api.auth import KeyCache
from memeforge_api.backpressure import QueueDepthGate
from memeforge_api.idempotency import IdempotencyRecords
from memeforge_api.limits import BodyLimitMiddleware
from memeforge_api.metrics import RequestMetricsMiddleware
from memeforge_api.problems import install_problem_handlers, install_problem_schema
from memeforge_api.ratelimit import RateLimiter, RateLimitHeadersMiddleware
from memeforge_api.routes import batches, health, memes, templates, uploads
from memeforge_api.watcher import Watcher
from memeforge_api.webui import mount_ui

log = logging.getLogger("memeforge.api")

# Multipart framing allowed on top of the image size limit.
MULTIPART_OVERHEAD = 64 * 1024
# FastAPI's native OpenTelemetry asks the global providers on every request whether one
# is configured (about 10 µs). None is: traces here are W3C traceparent on the items and
# messages (memeforge_common.tracing), and metrics are Prometheus (issue #12).
NO_NATIVE_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AwsClients.open(settings, API_TIMEOUTS) as aws:
            app.state.settings = settings
            app.state.store = MemeStore(aws.dynamodb, settings.table)
            app.state.batches = BatchStore(aws.dynamodb, settings.table)
            app.state.templates = TemplateStore(aws.s3, settings.bucket)
            app.state.outputs = OutputStore(aws.s3, settings.bucket)
            app.state.uploads = UploadStore(aws.s3, settings.bucket)
            app.state.idempotency = IdempotencyRecords(
                aws.dynamodb, settings.table, settings.idempotency_ttl_s
            )
            patience = settings.startup_wait_s
            requests_url = await queue_url(aws.sqs, settings.request_queue, patience_s=patience)
            app.state.requests = RequestPublisher(
                aws.sqs, requests_url, gathering=Gathering(settings.gather_s)
            )
            app.state.backlog = (
                QueueDepthGate(
                    aws.sqs,
                    [
                        requests_url,
                        await queue_url(aws.sqs, settings.render_queue, patience_s=patience),
                    ],
                    threshold=settings.overload_queue_depth,
                    refresh_s=settings.queue_depth_refresh_s,
                )
                if settings.overload_queue_depth
                else None
            )
            app.state.keys = KeyCache(KeyStore(aws.dynamodb, settings.table), settings.key_cache_s)
            app.state.endpoints = EndpointCache(
                EndpointStore(aws.dynamodb, settings.table), settings.key_cache_s
            )
            app.state.rate_limiter = (
                RateLimiter(
                    aws.dynamodb,
                    settings.table,
                    per_minute=settings.rate_limit_per_minute,
                    burst=settings.rate_limit_burst,
                )
                if settings.rate_limit_per_minute
                else None
            )
            app.state.watcher = Watcher(
                app.state.store,
                max_waiters=settings.max_waiters,
                max_calls_per_s=settings.watcher_max_calls_per_s,
            )
            watching = asyncio.create_task(app.state.watcher.run(), name="watcher")
            log.info(
                "api ready",
                extra={
                    "bucket": settings.bucket,
                    "table": settings.table,
                    "rate_limit_per_minute": settings.rate_limit_per_minute,
                    "rate_limit_burst": settings.rate_limit_burst,
                },
            )
            try:
                yield
            finally:
                watching.cancel()

    app = FastAPI(
        title="memeforge",
        version="0.1.0",
        summary="Caption template images through SQS, DynamoDB and S3.",
        lifespan=lifespan,
        telemetry=NO_NATIVE_TELEMETRY,
    )
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(RequestMetricsMiddleware)
    app.add_middleware(RateLimitHeadersMiddleware)
    install_problem_handlers(app)
    install_problem_schema(app)
    app.include_router(health.router)
    app.include_router(uploads.router)
    app.include_router(templates.router)
    app.include_router(memes.router)
    app.include_router(batches.router)
    mount_ui(app)
    return app
