"""Dependencies as Annotated aliases: routes ask for what they need by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from memeforge_common.aws import AwsClients
from memeforge_common.items import MemeStore
from memeforge_common.settings import Settings

from memeforge_api.idempotency import IdempotencyRecords


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _aws(request: Request) -> AwsClients:
    aws: AwsClients = request.app.state.aws
    return aws


def _store(request: Request) -> MemeStore:
    store: MemeStore = request.app.state.store
    return store


def _idempotency(request: Request) -> IdempotencyRecords:
    records: IdempotencyRecords = request.app.state.idempotency
    return records


def _request_queue_url(request: Request) -> str:
    url: str = request.app.state.request_queue_url
    return url


SettingsDep = Annotated[Settings, Depends(_settings)]
AwsDep = Annotated[AwsClients, Depends(_aws)]
StoreDep = Annotated[MemeStore, Depends(_store)]
IdempotencyDep = Annotated[IdempotencyRecords, Depends(_idempotency)]
RequestQueueDep = Annotated[str, Depends(_request_queue_url)]
