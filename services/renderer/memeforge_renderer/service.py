"""The renderer service: render jobs until SIGTERM (started by ``__main__`` after the
CPU check)."""

from __future__ import annotations

import logging

from memeforge_common.animation import AnimationLimits
from memeforge_common.aws import AwsClients
from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.metrics import serve_metrics
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import NotificationPublisher
from memeforge_common.queues import queue_url
from memeforge_common.settings import get_settings
from memeforge_common.templates import TemplateStore
from memeforge_common.worker import make_worker, per_message, run_service, run_until_signalled

from memeforge_renderer import engine
from memeforge_renderer.cache import TemplateBytesCache
from memeforge_renderer.pool import PoolCaches, RenderPool
from memeforge_renderer.worker import Renderer

log = logging.getLogger("memeforge.renderer")


def log_pillow_build() -> None:
    build = engine.pillow_build()
    log.info("pillow build", extra={"pillow": build})
    if build.get("distribution") != "pillow-simd":
        log.warning("NOT running on pillow-simd: resampling will be several times slower")


async def run() -> None:
    settings = get_settings()
    log_pillow_build()
    serve_metrics(settings.metrics_host, settings.metrics_port)
    async with AwsClients.open(settings) as aws:
        pool = RenderPool(settings.render_processes, PoolCaches.from_settings(settings))
        await pool.start()
        try:
            store = MemeStore(aws.dynamodb, settings.table)
            notification_url = await queue_url(
                aws.sqs, settings.notification_queue, patience_s=settings.startup_wait_s
            )
            renderer = Renderer(
                store,
                TemplateStore(aws.s3, settings.bucket),
                OutputStore(aws.s3, settings.bucket),
                pool,
                TemplateBytesCache(settings.template_cache_bytes),
                Endings(store, NotificationPublisher(aws.sqs, notification_url)),
                max_source_pixels=settings.max_source_pixels,
                animation_limits=AnimationLimits.from_settings(settings),
                rendering_mark_after_s=settings.rendering_mark_after_s,
            )
            worker = await make_worker(
                aws.sqs,
                settings,
                settings.render_queue,
                per_message(renderer.handle),
                name="renderer",
                dead_letter_queue=settings.render_dlq,
            )
            await run_until_signalled([worker])
        finally:
            await pool.close()


def main() -> None:
    run_service("renderer", run)
