"""Dependencies as Annotated aliases: routes ask for what they need by type.

Each store and publisher is built once per process, in the app's lifespan (app.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from memeforge_common.batches import BatchStore
from memeforge_common.endpoints import EndpointCache
from memeforge_common.items import MemeStore
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import Coming, RequestPublisher
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateStore
from memeforge_common.uploads import UploadStore

from memeforge_api.backpressure import QueueDepthGate
from memeforge_api.idempotency import IdempotencyRecords
from memeforge_api.watcher import Watcher


def _from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning what the lifespan put on ``app.state.<name>``. A coroutine,
    though it never awaits: FastAPI runs a plain function in its thread pool, a thread
    hand-off per dependency per request."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


SettingsDep = Annotated[Settings, Depends(_from_state("settings"))]
StoreDep = Annotated[MemeStore, Depends(_from_state("store"))]
BatchesDep = Annotated[BatchStore, Depends(_from_state("batches"))]
TemplatesDep = Annotated[TemplateStore, Depends(_from_state("templates"))]
UploadsDep = Annotated[UploadStore, Depends(_from_state("uploads"))]
OutputsDep = Annotated[OutputStore, Depends(_from_state("outputs"))]
RequestsDep = Annotated[RequestPublisher, Depends(_from_state("requests"))]
IdempotencyDep = Annotated[IdempotencyRecords, Depends(_from_state("idempotency"))]
WatcherDep = Annotated[Watcher, Depends(_from_state("watcher"))]
EndpointsDep = Annotated[EndpointCache, Depends(_from_state("endpoints"))]
BacklogDep = Annotated[QueueDepthGate | None, Depends(_from_state("backlog"))]


async def _request_coming(requests: RequestsDep) -> AsyncIterator[Coming]:
    """A POST's request message, announced while the POST is handled: a busy api's
    publisher waits for those (fuller SendMessageBatch calls, issue #12)."""
    with requests.coming() as coming:
        yield coming


RequestComingDep = Annotated[Coming, Depends(_request_coming)]
