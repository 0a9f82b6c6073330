"""``python -m memeforge_consumer``: dispatch request messages until SIGTERM."""

from __future__ import annotations

import asyncio

from memeforge_common.aws import AwsClients
from memeforge_common.logs import configure_logging
from memeforge_common.queues import queue_url
from memeforge_common.settings import get_settings
from memeforge_common.worker import serve_queue

from memeforge_consumer.dispatch import Dispatcher


async def run() -> None:
    settings = get_settings()
    async with AwsClients.open(settings) as aws:
        render_url = await queue_url(aws.sqs, settings.render_queue)
        dispatcher = Dispatcher(aws, settings, render_url)
        await serve_queue(
            aws.sqs,
            settings.request_queue,
            dispatcher.handle_batch,
            concurrency=settings.worker_concurrency,
            wait_s=settings.receive_wait_s,
            grace_s=settings.shutdown_grace_s,
            heartbeat_file=settings.heartbeat_file,
            name="consumer",
        )


def main() -> None:
    settings = get_settings()
    configure_logging("consumer", settings.log_level, settings.log_format)
    asyncio.run(run())


if __name__ == "__main__":
    main()
