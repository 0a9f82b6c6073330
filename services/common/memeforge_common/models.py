"""The one schema (invariant 2): the DynamoDB item, each message body, the render spec.

Every persisted or queued shape carries a version field ``v`` so that a rolling
deploy can still read what the previous version wrote.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

MEME_ID_PATTERN = r"^[0-9a-f]{32}$"
TEMPLATE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_TEMPLATE_ID_RE = re.compile(TEMPLATE_ID_PATTERN)

MemeId = Annotated[str, Field(pattern=MEME_ID_PATTERN)]
TemplateId = Annotated[str, Field(pattern=TEMPLATE_ID_PATTERN)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def utcnow() -> datetime:
    """Now, at the millisecond precision that items store (so values round-trip exactly)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def slugify(name: str) -> str:
    """A template id from a free-form name: lowercase ascii, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-")
    return slug


def is_template_id(value: str) -> bool:
    return bool(_TEMPLATE_ID_RE.match(value))


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemeState(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RENDERING = "RENDERING"
    DONE = "DONE"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (MemeState.DONE, MemeState.FAILED)


class TextBox(Frozen):
    """A caption placed in a box given in fractions of the image (works on any size)."""

    text: str = Field(max_length=10_000)
    x: Fraction
    y: Fraction
    width: Annotated[float, Field(gt=0.0, le=1.0)]
    height: Annotated[float, Field(gt=0.0, le=1.0)]


class RenderSpec(Frozen):
    boxes: tuple[TextBox, ...] = Field(max_length=16)
    format: Literal["jpeg"] = "jpeg"
    quality: int = Field(default=85, ge=1, le=95)


def classic_boxes(top: str, bottom: str) -> tuple[TextBox, ...]:
    """The classic meme layout: one caption across the top, one across the bottom."""
    boxes = []
    if top.strip():
        boxes.append(TextBox(text=top, x=0.03, y=0.02, width=0.94, height=0.22))
    if bottom.strip():
        boxes.append(TextBox(text=bottom, x=0.03, y=0.76, width=0.94, height=0.22))
    return tuple(boxes)


class MemeResult(Frozen):
    key: str
    content_type: str
    bytes: int = Field(ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class Failure(Frozen):
    """Why a meme FAILED: a machine-readable code and a human-readable detail."""

    reason: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    detail: str = ""


class MemeItem(Frozen):
    v: int = SCHEMA_VERSION
    id: MemeId
    state: MemeState
    template_id: TemplateId
    spec: RenderSpec
    created_at: datetime
    updated_at: datetime
    state_times: dict[MemeState, datetime]
    result: MemeResult | None = None
    failure: Failure | None = None
    attempts: int = 0  # render attempts (RENDERING entries), or receives when dead-lettered
    sweeps: int = 0  # times the sweeper re-enqueued it


class RequestMessage(Frozen):
    """api → consumer: a meme item was written PENDING and wants rendering."""

    v: Literal[1] = 1
    kind: Literal["meme.requested"] = "meme.requested"
    meme_id: MemeId


class RenderJob(Frozen):
    """consumer → renderer: everything the renderer needs, so it reads no item to start."""

    v: Literal[1] = 1
    kind: Literal["meme.render"] = "meme.render"
    meme_id: MemeId
    template_key: str
    template_etag: str
    spec: RenderSpec
    output_key: str

    @field_validator("template_key", "output_key")
    @classmethod
    def _relative_key(cls, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError("must be a relative S3 key")
        return key


def output_key(meme_id: str, fmt: str = "jpeg") -> str:
    """Deterministic output key (invariant 4): a repeated render overwrites the same object."""
    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    return f"memes/{meme_id}.{ext}"


def template_key(template_id: str) -> str:
    return f"templates/{template_id}"
