"""Notification plumbing for tests that build workers in-process."""

from __future__ import annotations

import ipaddress

from memeforge_common.aws import AwsClients
from memeforge_common.batches import BatchStore
from memeforge_common.egress import EgressPolicy
from memeforge_common.endings import Endings
from memeforge_common.endpoints import EndpointCache, EndpointStore
from memeforge_common.items import MemeStore
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import NotificationPublisher
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings
from memeforge_notifier.deliver import Notifier

LOOPBACK = EgressPolicy(allow=(ipaddress.ip_network("127.0.0.1/32"),))


async def endings_for(aws: AwsClients, settings: Settings, store: MemeStore) -> Endings:
    url = await queue_url(aws.sqs, settings.notification_queue)
    return Endings(store, NotificationPublisher(aws.sqs, url))


def notifier(aws: AwsClients, settings: Settings, policy: EgressPolicy = LOOPBACK) -> Notifier:
    """The notifier's delivery step on the test's resources (receivers on loopback)."""
    return Notifier(
        MemeStore(aws.dynamodb, settings.table),
        BatchStore(aws.dynamodb, settings.table),
        EndpointCache(EndpointStore(aws.dynamodb, settings.table), 0),
        OutputStore(aws.s3, settings.bucket),
        aws.ses,
        settings,
        policy,
    )
