"""Dependencies as Annotated aliases: routes ask for what they need by type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore
from memeforge_common.settings import Settings

from memeforge_api.idempotency import IdempotencyRecords
from memeforge_api.watcher import Watcher


def _from_state(name: str) -> Callable[[Request], Any]:
    """A dependency returning what the lifespan put on ``app.state.<name>``."""

    def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


SettingsDep = Annotated[Settings, Depends(_from_state("settings"))]
AwsDep = Annotated[AwsClients, Depends(_from_state("aws"))]
StoreDep = Annotated[MemeStore, Depends(_from_state("store"))]
IdempotencyDep = Annotated[IdempotencyRecords, Depends(_from_state("idempotency"))]
RequestQueueDep = Annotated[str, Depends(_from_state("request_queue_url"))]
WatcherDep = Annotated[Watcher, Depends(_from_state("watcher"))]
