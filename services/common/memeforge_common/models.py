"""The one schema: the DynamoDB item, each message body, the render spec.

docs/architecture.md, invariant 2.

Every persisted or queued shape carries a version field ``v`` so that a rolling
deploy can still read what the previous version wrote.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memeforge_common.limits import (
    MAX_BATCH_ITEMS,
    MAX_BOXES,
    CallbackUrl,
    Caption,
    EmailAddress,
    FontSize,
    OutputSide,
    Quality,
    ThumbnailSide,
    has_visible_text,
)

SCHEMA_VERSION = 1

MEME_ID_PATTERN = r"^[0-9a-f]{32}$"
TEMPLATE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_TEMPLATE_ID_RE = re.compile(TEMPLATE_ID_PATTERN)
TENANT_ID_PATTERN = TEMPLATE_ID_PATTERN  # the same slug shape: it is part of S3 keys
TEMPLATE_KEY_PREFIX = "templates/"
# templates/<tenant>/<id>: the tenant's own folder, or the public one of the seeds
TEMPLATE_KEY_PATTERN = (
    "^" + TEMPLATE_KEY_PREFIX + TENANT_ID_PATTERN[1:-1] + "/" + TEMPLATE_ID_PATTERN[1:]
)

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


def first_error(err: ValidationError) -> str:
    """The first problem of a validation error, as ``where: what`` (no input echoed)."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


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


Colour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")]
FontName = Literal["anton", "noto-sans"]
"""Fonts a box may ask for; the engine falls back per character for CJK, emoji, RTL."""


class TextBox(Frozen):
    """A caption placed in a box given in fractions of the image (works on any size).

    Every field but the text and the box has a default, so older specs stay valid.
    """

    text: Caption
    x: Fraction
    y: Fraction
    width: Annotated[float, Field(gt=0.0, le=1.0)]
    height: Annotated[float, Field(gt=0.0, le=1.0)]
    font: FontName = "anton"
    color: Colour = "#ffffff"
    outline_color: Colour = "#000000"
    outline_width: float | None = Field(
        default=None, ge=0.0, le=0.25, description="in em; null = 1/15 em; 0 = none"
    )
    align: Literal["left", "center", "right"] = "center"
    valign: Literal["top", "middle", "bottom"] = "middle"
    case: Literal["upper", "none"] = "upper"
    max_font_size: FontSize | None = Field(default=None, description="null = the box height")
    min_font_size: FontSize = 10
    overflow: Literal["wrap_shrink", "shrink_wrap", "ellipsis"] = Field(
        default="wrap_shrink",
        description=(
            "wrap_shrink: wrap, then shrink until it fits; shrink_wrap: shrink on one line "
            "per paragraph first, wrap only below min_font_size; ellipsis: no shrinking, "
            "wrap at max_font_size and cut with an ellipsis. All end in an ellipsis when "
            "even min_font_size does not fit."
        ),
    )
    rotation: float = Field(
        default=0.0, ge=-180.0, le=180.0, description="degrees, counter-clockwise"
    )


OutputFormat = Literal["jpeg", "png", "webp", "gif"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
ANIMATED_FORMATS = ("gif", "webp")
"""Formats that keep an animated template's animation; the others take its first frame."""


class OutputOptions(Frozen):
    """How the output is encoded; shared by RenderSpec and the api's CreateMeme body."""

    format: OutputFormat = Field(
        default="jpeg",
        description="gif and webp keep an animated template's animation (see 'animated')",
    )
    animated: bool = Field(
        default=True, description="false: a still of an animated template's first frame"
    )
    quality: Quality = 85
    animated_quality: Quality = Field(
        default=70, description="animated WebP (its frames add up: lower than a still's)"
    )
    max_side: OutputSide | None = None
    thumbnail_side: ThumbnailSide | None = None


class RenderSpec(OutputOptions):
    boxes: tuple[TextBox, ...] = Field(max_length=MAX_BOXES)

    @property
    def keeps_animation(self) -> bool:
        """An animated template renders animated (a still one renders as before)."""
        return self.animated and self.format in ANIMATED_FORMATS

    @property
    def has_text(self) -> bool:
        return any(has_visible_text(box.text) for box in self.boxes)


CLASSIC_LAYOUT = (
    TextBox(text="", x=0.03, y=0.02, width=0.94, height=0.22, valign="top"),
    TextBox(text="", x=0.03, y=0.76, width=0.94, height=0.22, valign="bottom"),
)
"""The layout of a template that carries none: one caption on top, one at the bottom."""


def fill_layout(layout: Sequence[TextBox], captions: Sequence[str]) -> tuple[TextBox, ...]:
    """Put captions into a layout's boxes, in order; boxes left without text are dropped."""
    if len(captions) > len(layout):
        raise ValueError(f"{len(captions)} captions for a layout of {len(layout)} boxes")
    return tuple(
        TextBox.model_validate(box.model_dump() | {"text": text})
        for box, text in zip(layout, captions, strict=False)
        if has_visible_text(text)
    )


def classic_boxes(top: str, bottom: str) -> tuple[TextBox, ...]:
    """The classic meme layout: one caption across the top, one across the bottom."""
    return fill_layout(CLASSIC_LAYOUT, [top, bottom])


class BoxReport(Frozen):
    font_size: int = Field(ge=0)
    lines: tuple[str, ...]
    truncated: bool
    missing_glyphs: int = Field(default=0, ge=0, description="characters no font has")


class LayoutReport(Frozen):
    """What the engine did: stored on the DONE item and returned by the API."""

    boxes: tuple[BoxReport, ...]
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=0)
    format: str = "jpeg"
    thumbnail: tuple[int, int, int] | None = Field(
        default=None, description="(width, height, bytes) when a thumbnail was made"
    )
    frames: int = Field(default=1, ge=1, description="more than 1: an animation")
    duration_ms: int = Field(default=0, ge=0, description="an animation's total duration")
    loop: int | None = Field(default=None, description="0: forever; null: plays once")
    timings_ms: dict[str, float] = Field(default_factory=dict)


class MemeResult(Frozen):
    key: str
    content_type: str
    bytes: int = Field(ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    report: LayoutReport | None = None
    """Absent on items written before reports existed."""
    thumbnail_key: str | None = None


class Failure(Frozen):
    """Why a meme FAILED: a machine-readable code and a human-readable detail."""

    reason: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    detail: str = ""


Channel = Literal["webhook", "email"]
EventType = Literal["meme.done", "meme.failed", "batch.done"]
DeliveryOutcome = Literal["delivered", "retrying", "refused", "gave_up"]


class Notify(Frozen):
    """Whom to tell when a meme ends: stored on the item, carried by its render job."""

    callback_url: CallbackUrl | None = None
    email: EmailAddress | None = None

    @property
    def channels(self) -> tuple[Channel, ...]:
        found: list[Channel] = []
        if self.callback_url:
            found.append("webhook")
        if self.email:
            found.append("email")
        return tuple(found)


class DeliveryAttempt(Frozen):
    """One try at delivering a notification, recorded on the item it is about."""

    at: datetime
    attempt: int = Field(ge=1)
    outcome: DeliveryOutcome
    status: int | None = Field(default=None, description="the receiver's HTTP status")
    error: str = Field(default="", description="a machine-readable code, e.g. forbidden-address")


class MemeStatus(Frozen):
    """What a client sees of a meme: the item without its render spec. Waiters read only
    these fields (a spec can be far larger than the rest)."""

    id: MemeId
    state: MemeState
    template_id: TemplateId
    created_at: datetime
    updated_at: datetime
    state_times: dict[MemeState, datetime]
    result: MemeResult | None = None
    failure: Failure | None = None
    attempts: int = 0  # the render job's SQS receive count when it ended (or was marked)
    # Waiters read these too: a status is shown only to its tenant (invariant 9).
    tenant: str = ""  # "" on items from before tenants: no key can reach them
    expires_at: datetime | None = None  # DynamoDB TTL deletes the item after this
    notify: Notify | None = None
    deliveries: dict[Channel, tuple[DeliveryAttempt, ...]] = Field(default_factory=dict)


class MemeItem(MemeStatus):
    v: int = SCHEMA_VERSION
    spec: RenderSpec | None
    """None when the stored spec breaks today's limits (written by an older version):
    the consumer fails such an item as ``invalid_spec`` instead of rendering it."""
    batch_id: MemeId | None = None
    """The batch this meme is item ``batch_seq`` of: its end counts on that batch."""
    batch_seq: int | None = Field(default=None, ge=0, lt=MAX_BATCH_ITEMS)
    sweeps: int = 0  # times the sweeper re-enqueued it
    counted: bool = False
    """The item holds one of its tenant's in-flight slots (items.py): its terminal
    transition (or its deletion while live) frees the slot in the same write."""
    traceparent: str | None = None
    """The trace of the request that created it, continued by whatever re-sends it."""

    @property
    def in_flight_slot(self) -> str | None:
        """The tenant whose in-flight slot this item holds, if it holds one."""
        return self.tenant if self.counted else None


class RequestedMeme(Frozen):
    """What the consumer needs of a PENDING item to check it and build its render job,
    carried by its request so that the consumer neither reads nor writes the item."""

    template_id: TemplateId
    spec: RenderSpec
    tenant: str = Field(default="", pattern="^$|" + TENANT_ID_PATTERN)
    counted: bool = False
    batch_id: MemeId | None = None
    notify: Notify | None = None

    @classmethod
    def of(cls, item: MemeItem) -> RequestedMeme | None:
        """The item's request fields; None when its stored spec breaks today's limits."""
        if item.spec is None:
            return None
        return cls(
            template_id=item.template_id,
            spec=item.spec,
            tenant=item.tenant,
            counted=item.counted,
            batch_id=item.batch_id,
            notify=item.notify,
        )

    @property
    def in_flight_slot(self) -> str | None:
        return self.tenant if self.counted else None


class RequestMessage(Frozen):
    """api → consumer: a meme item was written PENDING and wants rendering.

    ``meme`` carries the item's fields, so the consumer reads no item; a request without
    it (from an older api, or for an item whose spec no longer reads) is looked up."""

    v: Literal[1] = 1
    kind: Literal["meme.requested"] = "meme.requested"
    meme_id: MemeId
    meme: RequestedMeme | None = Field(default=None, exclude_if=lambda value: value is None)

    @classmethod
    def of(cls, item: MemeItem) -> RequestMessage:
        return cls(meme_id=item.id, meme=RequestedMeme.of(item))


class RenderJob(Frozen):
    """consumer → renderer: everything the renderer needs, so it reads no item to start.

    The renderer writes only under the keys derived from ``meme_id`` (output_key()), so
    a forged or corrupted job cannot overwrite another object, and reads only a key of
    the ``templates/`` prefix, at the ETag the meme was queued with.
    """

    v: Literal[1] = 1
    kind: Literal["meme.render"] = "meme.render"
    meme_id: MemeId
    template_key: str = Field(pattern=TEMPLATE_KEY_PATTERN)
    template_etag: str = Field(min_length=1, max_length=1024)
    spec: RenderSpec
    # The meme's tenant: part of its output keys ("" on jobs from before tenants).
    tenant: str = Field(default="", pattern="^$|" + TENANT_ID_PATTERN)
    # The meme holds a slot of its tenant's in-flight cap (MemeItem.counted): ending it
    # frees the slot. Trusted no more than ``tenant``: both are conditions of that write.
    counted: bool = False
    output_key: str | None = Field(default=None, exclude=True)
    """Sent by older consumers; ignored (never trusted) and no longer sent."""
    # The meme's batch, whose counters its end updates. Sent only when set, so a job for a
    # meme outside any batch reads as before on a renderer of the previous version.
    batch_id: str | None = Field(
        default=None, pattern=MEME_ID_PATTERN, exclude_if=lambda value: value is None
    )
    notify: Notify | None = None
    """The meme's notification targets: the renderer enqueues them when it ends the meme."""

    @property
    def template_id(self) -> str:
        return self.template_key.rpartition("/")[2]

    @property
    def in_flight_slot(self) -> str | None:
        return self.tenant if self.counted else None


class NotificationMessage(Frozen):
    """The step that ends a meme (or batch) → notifier: deliver one event on one channel.

    ``event_id`` is derived from the subject and the event (``event_id()``), so every
    copy of the message, re-sent by the sweeper or redelivered by SQS, carries the same
    ``webhook-id`` and receivers can dedupe. ``data`` is the payload when the emitter
    builds it (batches); for a meme the notifier reads the ended item instead.
    """

    v: Literal[1] = 1
    kind: Literal["notification"] = "notification"
    event: EventType
    event_id: str = Field(pattern=r"^msg_[A-Za-z0-9_]{1,120}$")
    subject_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    tenant: str = Field(pattern="^$|" + TENANT_ID_PATTERN)
    channel: Channel
    target: str = Field(min_length=3, max_length=2048)
    occurred_at: datetime
    data: dict[str, Any] | None = None


def event_id(subject_id: str, event: EventType) -> str:
    """The stable id of an event (Standard Webhooks ``webhook-id``): one per subject and
    event type, whoever sends it and however often."""
    return f"msg_{subject_id}_{event.replace('.', '_')}"


def ending_event(state: MemeState) -> EventType:
    return "meme.done" if state is MemeState.DONE else "meme.failed"


OUTPUT_PREFIX = "memes/"  # the retention lifecycle rule expires everything under it
BATCHES_FOLDER = "batches/"


def output_key(
    meme_id: str, fmt: str = "jpeg", *, tenant: str = "", thumbnail: bool = False
) -> str:
    """Deterministic output key (invariant 4): a repeated render overwrites the same object.
    It carries the tenant, so IAM and lifecycle rules can work per tenant."""
    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    folder = f"{OUTPUT_PREFIX}{tenant}/" if tenant else OUTPUT_PREFIX
    return f"{folder}{meme_id}.thumb.{ext}" if thumbnail else f"{folder}{meme_id}.{ext}"


INCOMING_PREFIX = (
    "incoming/"  # direct uploads before they are checked; a lifecycle rule expires them
)
_UPLOAD_ID_RE = re.compile(MEME_ID_PATTERN)  # the same random 128-bit hex shape


def new_upload_id() -> str:
    return uuid.uuid4().hex


def is_upload_id(value: str) -> bool:
    return bool(_UPLOAD_ID_RE.match(value))


def incoming_key(upload_id: str, tenant: str) -> str:
    """Where a direct upload lands: under its tenant's folder of ``incoming/``."""
    return f"{INCOMING_PREFIX}{tenant}/{upload_id}"


def template_key(template_id: str, tenant: str) -> str:
    """Templates live under their tenant's folder (the seeds under the public one)."""
    return f"{TEMPLATE_KEY_PREFIX}{tenant}/{template_id}"


def batch_object_key(batch_id: str, tenant: str, suffix: str) -> str:
    """A batch's own objects (its stored request, its archive), beside its memes' outputs
    so that the retention rule expires them too."""
    return f"{OUTPUT_PREFIX}{tenant}/{BATCHES_FOLDER}{batch_id}.{suffix}"


class BatchState(StrEnum):
    SUBMITTING = "SUBMITTING"  # items being written and enqueued
    RUNNING = "RUNNING"  # every item written; some not ended yet
    ARCHIVING = "ARCHIVING"  # every item ended; the ZIP is being built
    DONE = "DONE"  # the ZIP is ready

    @property
    def terminal(self) -> bool:
        return self is BatchState.DONE


class BatchEntry(Frozen):
    """One item of a batch as stored: the template and the spec resolved at submission
    (captions already filled into the template's layout)."""

    template_id: TemplateId
    spec: RenderSpec


class BatchRequest(Frozen):
    """A batch's items, written to S3 before any of them: whoever resumes an interrupted
    fan-out (the consumer's batch sweeper) rebuilds the same items from it."""

    v: Literal[1] = 1
    items: tuple[BatchEntry, ...] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchArchive(Frozen):
    key: str
    bytes: int = Field(ge=0)
    files: int = Field(ge=0)


class Batch(Frozen):
    """The batch record: counters that item ends ADD to, never a read of every item."""

    id: MemeId
    tenant: str
    state: BatchState
    total: int = Field(ge=1, le=MAX_BATCH_ITEMS)
    done: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    traceparent: str | None = None
    archive: BatchArchive | None = None
    notify: Notify | None = None  # where batch.done goes (a webhook, an email)
    counted: bool = False  # its items hold in-flight slots, taken when the batch was written
    ended_at: datetime | None = None
    """When its last item ended (the move to ARCHIVING): batch.done's time, the same on
    every copy of the event."""
    deliveries: dict[Channel, tuple[DeliveryAttempt, ...]] = Field(default_factory=dict)

    @property
    def ended(self) -> int:
        return self.done + self.failed

    @property
    def complete(self) -> bool:
        return self.ended >= self.total
