"""What routes get from the app: the stores and publishers the lifespan (app.py) built once
per process and put on ``app.state``, typed, through one dependency.

One, not one per store: FastAPI resolves each dependency anew on every request (about
15 µs each here), and ``POST /memes`` needed nine of them.
"""

from __future__ import annotations

from typing import Annotated, Protocol, cast

from fastapi import Depends, Request
from memeforge_common.batches import BatchStore
from memeforge_common.endpoints import EndpointCache
from memeforge_common.items import MemeStore
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import RequestPublisher
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateStore
from memeforge_common.uploads import UploadStore

from memeforge_api.backpressure import QueueDepthGate
from memeforge_api.idempotency import IdempotencyRecords
from memeforge_api.watcher import Watcher


class Services(Protocol):
    """``app.state`` as the lifespan fills it."""

    settings: Settings
    store: MemeStore
    batches: BatchStore
    templates: TemplateStore
    uploads: UploadStore
    outputs: OutputStore
    requests: RequestPublisher
    idempotency: IdempotencyRecords
    watcher: Watcher
    endpoints: EndpointCache
    backlog: QueueDepthGate | None


async def _services(request: Request) -> Services:
    """A coroutine, though it never awaits: FastAPI runs a plain function in its thread
    pool, a thread hand-off per request."""
    return cast(Services, request.app.state)


ServicesDep = Annotated[Services, Depends(_services)]
