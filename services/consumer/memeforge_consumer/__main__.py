"""``python -m memeforge_consumer``: dispatch requests, drain DLQs, sweep stuck items,
archive finished batches."""

from __future__ import annotations

from memeforge_common.aws import AwsClients
from memeforge_common.backoff import PARKED
from memeforge_common.batches import BatchStore
from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.metrics import serve_metrics
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import (
    NotificationPublisher,
    RenderPublisher,
    RequestPublisher,
)
from memeforge_common.queues import queue_url
from memeforge_common.settings import get_settings
from memeforge_common.templates import TemplateInfoCache, TemplateStore
from memeforge_common.worker import make_worker, run_service, run_until_signalled

from memeforge_consumer.batch_sweeper import BatchSweeper
from memeforge_consumer.deadletters import DeadLetterDrain
from memeforge_consumer.dispatch import Dispatcher
from memeforge_consumer.sweeper import Sweeper


async def run() -> None:
    settings = get_settings()
    serve_metrics(settings.metrics_host, settings.metrics_port)
    async with AwsClients.open(settings) as aws:
        patience = settings.startup_wait_s
        store = MemeStore(aws.dynamodb, settings.table)
        render_url = await queue_url(aws.sqs, settings.render_queue, patience_s=patience)
        request_url = await queue_url(aws.sqs, settings.request_queue, patience_s=patience)
        notification_url = await queue_url(
            aws.sqs, settings.notification_queue, patience_s=patience
        )
        renders = RenderPublisher(aws.sqs, render_url)
        requests = RequestPublisher(aws.sqs, request_url)
        notifications = NotificationPublisher(aws.sqs, notification_url)
        endings = Endings(store, notifications)
        templates = TemplateInfoCache(
            TemplateStore(aws.s3, settings.bucket), settings.template_info_cache_s
        )
        dispatcher = Dispatcher(store, templates, renders, endings)
        workers = [
            await make_worker(
                aws.sqs,
                settings,
                settings.request_queue,
                dispatcher.handle_batch,
                name="dispatch",
                dead_letter_queue=settings.request_dlq,
            )
        ]
        for source, dlq in (
            (settings.request_queue, settings.request_dlq),
            (settings.render_queue, settings.render_dlq),
        ):
            drain = DeadLetterDrain(store, endings, source)
            workers.append(
                await make_worker(
                    aws.sqs,
                    settings,
                    dlq,
                    drain.handle_batch,
                    name=f"drain:{dlq}",
                    backoff=PARKED,
                    concurrency=10,
                )
            )
        sweeper = Sweeper(store, dispatcher, requests, endings, settings)
        batch_sweeper = BatchSweeper(
            BatchStore(aws.dynamodb, settings.table),
            store,
            OutputStore(aws.s3, settings.bucket),
            requests,
            notifications,
            settings,
        )
        await run_until_signalled(workers, background=[sweeper.run, batch_sweeper.run])


def main() -> None:
    run_service("consumer", run)


if __name__ == "__main__":
    main()
