"""The notifier service: deliver notifications until SIGTERM.

A service of its own, not a loop inside the consumer: it is the only one that sends
requests to addresses clients chose (through the SSRF guard) and the only one allowed to
send mail (its IAM role alone grants ses:SendRawEmail), and a slow receiver holds its
slots without slowing the pipeline down. It runs from the consumer's image.
"""

from __future__ import annotations

from memeforge_common.aws import AwsClients
from memeforge_common.backoff import PARKED, Backoff
from memeforge_common.batches import BatchStore
from memeforge_common.egress import EgressPolicy
from memeforge_common.endpoints import EndpointCache, EndpointStore
from memeforge_common.items import MemeStore
from memeforge_common.metrics import serve_metrics
from memeforge_common.outputs import OutputStore
from memeforge_common.settings import get_settings
from memeforge_common.worker import make_worker, per_message, run_service, run_until_signalled

from memeforge_notifier.deliver import DeadNotifications, Notifier


async def run() -> None:
    settings = get_settings()
    serve_metrics(settings.metrics_host, settings.metrics_port)
    async with AwsClients.open(settings, ses=True) as aws:
        store = MemeStore(aws.dynamodb, settings.table)
        notifier = Notifier(
            store,
            BatchStore(aws.dynamodb, settings.table),
            EndpointCache(EndpointStore(aws.dynamodb, settings.table), settings.key_cache_s),
            OutputStore(aws.s3, settings.bucket),
            aws.ses,
            settings,
            EgressPolicy.from_settings(settings),
        )
        deliveries = await make_worker(
            aws.sqs,
            settings,
            settings.notification_queue,
            per_message(notifier.handle),
            name="notifier",
            dead_letter_queue=settings.notification_dlq,
            backoff=Backoff(settings.notify_retry_base_s, settings.notify_retry_max_s),
        )
        drain = await make_worker(
            aws.sqs,
            settings,
            settings.notification_dlq,
            DeadNotifications(store, settings).handle_batch,
            name=f"drain:{settings.notification_dlq}",
            backoff=PARKED,
            concurrency=10,
        )
        await run_until_signalled([deliveries, drain])


def main() -> None:
    run_service("notifier", run)
