"""Notification plumbing for tests that build workers in-process."""

from __future__ import annotations

from memeforge_common.aws import AwsClients
from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.publishers import NotificationPublisher
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings


async def endings_for(aws: AwsClients, settings: Settings, store: MemeStore) -> Endings:
    url = await queue_url(aws.sqs, settings.notification_queue)
    return Endings(store, NotificationPublisher(aws.sqs, url))
