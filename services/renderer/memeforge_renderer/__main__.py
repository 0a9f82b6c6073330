"""``python -m memeforge_renderer``: render jobs until SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore
from memeforge_common.logs import configure_logging
from memeforge_common.metrics import serve_metrics
from memeforge_common.outputs import OutputStore
from memeforge_common.settings import get_settings
from memeforge_common.templates import TemplateStore
from memeforge_common.worker import make_worker, per_message, run_until_signalled

from memeforge_renderer import engine
from memeforge_renderer.cache import TemplateBytesCache
from memeforge_renderer.pool import PoolCaches, available_cores, make_pool
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
    processes = settings.render_processes or available_cores()
    serve_metrics(settings.metrics_host, settings.metrics_port)
    async with AwsClients.open(settings) as aws:
        caches = PoolCaches(settings.decoded_template_cache_bytes, settings.glyph_cache_bytes)
        with make_pool(processes, caches) as pool:
            renderer = Renderer(
                MemeStore(aws.dynamodb, settings.table),
                TemplateStore(aws.s3, settings.bucket),
                OutputStore(aws.s3, settings.bucket),
                pool,
                TemplateBytesCache(settings.template_cache_bytes),
                max_source_pixels=settings.max_source_pixels,
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


def main() -> None:
    settings = get_settings()
    configure_logging("renderer", settings.log_level, settings.log_format)
    asyncio.run(run())


if __name__ == "__main__":
    main()
