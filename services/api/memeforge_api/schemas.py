"""Request and response bodies of the public API (distinct from the stored schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from memeforge_common.limits import (
    MAX_BATCH_ITEMS,
    MAX_BOXES,
    MAX_TEMPLATE_NAME_CHARS,
    VISIBLE_CHAR_PATTERN,
    CallbackUrl,
    Caption,
    EmailAddress,
    has_visible_text,
)
from memeforge_common.models import (
    Batch,
    BatchState,
    Channel,
    DeliveryAttempt,
    LayoutReport,
    MemeState,
    MemeStatus,
    OutputOptions,
    RenderSpec,
    TemplateId,
    TextBox,
    classic_boxes,
    fill_layout,
)
from memeforge_common.templates import TemplateFacts, TemplateInfo
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict, JsonValue

_NON_BLANK: JsonDict = {"type": "string", "pattern": VISIBLE_CHAR_PATTERN}


def _none_of(*fields: str) -> JsonDict:
    return {"not": {"anyOf": [{"required": [field]} for field in fields]}}


# The body's text modes, stated in its JSON schema so generated clients know: exactly one
# of them is given (by the presence of its fields), with some non-blank text.
# CreateMeme._one_text_mode is the same rule, in code.
TEXT_MODES: list[JsonValue] = [
    {
        "title": "top/bottom",
        "anyOf": [
            {"required": ["top"], "properties": {"top": _NON_BLANK}},
            {"required": ["bottom"], "properties": {"bottom": _NON_BLANK}},
        ],
        **_none_of("captions", "boxes"),
    },
    {
        "title": "captions",
        "required": ["captions"],
        "properties": {"captions": {"type": "array", "contains": _NON_BLANK}},
        **_none_of("top", "bottom", "boxes"),
    },
    {
        "title": "boxes",
        "required": ["boxes"],
        "properties": {
            "boxes": {
                "type": "array",
                "contains": {"type": "object", "properties": {"text": _NON_BLANK}},
            }
        },
        **_none_of("top", "bottom", "captions"),
    },
]


class MemeBody(OutputOptions):
    """A meme to render: the text comes as top/bottom, 'captions' or 'boxes' (exactly one:
    the schema's oneOf); the output options are RenderSpec's own (one definition of each
    field and its bounds). A batch's items are this; ``POST /memes`` adds where to announce
    the ending."""

    model_config = ConfigDict(json_schema_extra={"oneOf": TEXT_MODES})

    template_id: TemplateId
    top: Caption = ""
    bottom: Caption = ""
    captions: list[Caption] | None = Field(
        default=None,
        max_length=MAX_BOXES,
        description="texts for the template's own default boxes, in order",
    )
    boxes: list[TextBox] | None = Field(
        default=None,
        max_length=MAX_BOXES,
        description="text boxes replacing the template's layout entirely",
    )

    @model_validator(mode="after")
    def _one_text_mode(self) -> MemeBody:
        given = self.model_fields_set
        classic = bool({"top", "bottom"} & given)
        modes = [classic, "captions" in given, "boxes" in given]
        if sum(modes) > 1:
            raise ValueError("give only one of 'top'/'bottom', 'captions' or 'boxes'")
        if not any(modes):
            raise ValueError("give 'top'/'bottom', 'captions' or 'boxes'")
        if classic and not (has_visible_text(self.top) or has_visible_text(self.bottom)):
            raise ValueError("give a top or bottom caption that is not blank")
        if "captions" in given and not any(map(has_visible_text, self.captions or ())):
            raise ValueError("give at least one non-empty caption")
        if "boxes" in given and not any(has_visible_text(box.text) for box in self.boxes or ()):
            raise ValueError("give at least one box with text")
        return self

    def render_spec(self, template_boxes: tuple[TextBox, ...] = ()) -> RenderSpec:
        """The spec to render; ``template_boxes`` (the template's layout) fill 'captions'."""
        if self.boxes is not None:
            boxes: tuple[TextBox, ...] = tuple(self.boxes)
        elif self.captions is not None:
            boxes = fill_layout(template_boxes, self.captions)
        else:
            boxes = classic_boxes(self.top, self.bottom)
        options = self.model_dump(include=set(OutputOptions.model_fields))
        return RenderSpec(boxes=boxes, **options)


class CreateMeme(MemeBody):
    """The body of ``POST /memes``: a meme, and where its ending is announced."""

    callback_url: CallbackUrl | None = Field(
        default=None,
        description=(
            "POST signed webhooks (meme.done / meme.failed) here; default: the tenant's "
            "registered endpoint, if any"
        ),
    )
    notify_email: EmailAddress | None = Field(
        default=None, description="mail the result link and thumbnail here when it ends"
    )


class ResultView(BaseModel):
    content_type: str
    bytes: int
    width: int
    height: int
    image_url: str
    thumbnail_url: str | None = None
    report: LayoutReport | None = None


class FailureView(BaseModel):
    reason: str
    detail: str


class MemeView(BaseModel):
    id: str
    state: MemeState
    template_id: str
    created_at: datetime
    updated_at: datetime
    state_times: dict[MemeState, datetime]
    attempts: int
    result: ResultView | None = None
    failure: FailureView | None = None
    expires_at: datetime | None = Field(
        default=None, description="when the meme and its outputs are deleted (retention)"
    )
    links: dict[str, str]
    callback_url: str | None = Field(default=None, description="where its webhooks go")
    notify_email: str | None = Field(default=None, description="where its mail goes")
    deliveries: dict[Channel, list[DeliveryAttempt]] = Field(
        default_factory=dict,
        description="the latest notification attempts per channel (webhook, email)",
    )

    @classmethod
    def of(cls, item: MemeStatus) -> MemeView:
        self_url = f"/memes/{item.id}"
        links = {"self": self_url}
        result = None
        if item.result is not None:
            links["image"] = f"{self_url}/image"
            if item.result.thumbnail_key is not None:
                links["thumbnail"] = f"{self_url}/thumbnail"
            result = ResultView(
                content_type=item.result.content_type,
                bytes=item.result.bytes,
                width=item.result.width,
                height=item.result.height,
                image_url=links["image"],
                thumbnail_url=links.get("thumbnail"),
                report=item.result.report,
            )
        failure = None
        if item.failure is not None:
            failure = FailureView(reason=item.failure.reason, detail=item.failure.detail)
        return cls(
            id=item.id,
            state=item.state,
            template_id=item.template_id,
            created_at=item.created_at,
            updated_at=item.updated_at,
            state_times=item.state_times,
            attempts=item.attempts,
            result=result,
            failure=failure,
            expires_at=item.expires_at,
            links=links,
            callback_url=item.notify.callback_url if item.notify else None,
            notify_email=item.notify.email if item.notify else None,
            deliveries={channel: list(tries) for channel, tries in item.deliveries.items()},
        )


class MemePage(BaseModel):
    items: list[MemeView]
    next_cursor: str | None = None


class TemplateView(TemplateFacts):
    boxes: list[TextBox] = Field(
        description="the template's default text boxes; POST /memes 'captions' fill them in order"
    )
    classic_layout: bool = Field(description="true when the template carries no layout of its own")
    links: dict[str, str]
    callback_url: str | None = Field(default=None, description="where its webhooks go")
    notify_email: str | None = Field(default=None, description="where its mail goes")
    deliveries: dict[Channel, list[DeliveryAttempt]] = Field(
        default_factory=dict,
        description="the latest notification attempts per channel (webhook, email)",
    )

    @classmethod
    def of(cls, info: TemplateInfo) -> TemplateView:
        return cls(
            **info.model_dump(include=set(TemplateFacts.model_fields)),
            boxes=list(info.boxes),
            classic_layout=info.layout is None,
            links={"self": f"/templates/{info.id}", "image": f"/templates/{info.id}/image"},
        )


class LayoutBox(TextBox):
    text: str = Field(default="", max_length=0, description="layouts carry no text")


Layout = Annotated[tuple[LayoutBox, ...], Field(min_length=1, max_length=MAX_BOXES)]
"""A template's default boxes: validated, bounded, text-free."""


class DirectUpload(BaseModel):
    """A presigned POST form: send ``fields`` then ``file`` (multipart) to ``url``, then
    ``POST`` the ``complete`` link."""

    id: str
    url: str
    fields: dict[str, str]
    expires_at: datetime
    max_bytes: int
    links: dict[str, str]


class CompleteUpload(BaseModel):
    """What the uploaded image becomes: the same fields as a template upload's form."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=MAX_TEMPLATE_NAME_CHARS)
    template_id: TemplateId | None = Field(
        default=None, alias="id", description="default: from name"
    )
    boxes: Layout | None = Field(default=None, description="default text boxes (no text)")


class TemplatePage(BaseModel):
    items: list[TemplateView]
    next_cursor: str | None = None


class CreateBatch(BaseModel):
    """Up to MAX_BATCH_ITEMS memes, each the body of ``POST /memes`` without its own
    callback_url or notify_email: the batch, not each item, is announced (one
    ``batch.done`` webhook, one email)."""

    items: list[MemeBody] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="where batch.done is POSTed (signed); default: the tenant's endpoint",
    )
    notify_email: EmailAddress | None = Field(
        default=None,
        description="mail the counts and the archive's link here once the archive is ready",
    )


class BatchCounts(BaseModel):
    done: int
    failed: int
    pending: int = Field(description="not ended yet: total - done - failed")


class BatchView(BaseModel):
    id: str
    state: BatchState = Field(
        description="SUBMITTING, RUNNING, ARCHIVING (every item ended), DONE (archive ready)"
    )
    total: int
    counts: BatchCounts
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    archive_bytes: int | None = None
    links: dict[str, str]
    callback_url: str | None = Field(default=None, description="where batch.done goes")
    notify_email: str | None = Field(default=None, description="where its mail goes")
    deliveries: dict[Channel, list[DeliveryAttempt]] = Field(
        default_factory=dict,
        description="the latest batch.done attempts per channel (webhook, email)",
    )

    @classmethod
    def of(cls, batch: Batch) -> BatchView:
        self_url = f"/batches/{batch.id}"
        links = {"self": self_url, "items": f"{self_url}/items"}
        if batch.archive is not None:
            links["archive"] = f"{self_url}/archive"
        return cls(
            id=batch.id,
            state=batch.state,
            total=batch.total,
            counts=BatchCounts(
                done=batch.done, failed=batch.failed, pending=max(0, batch.total - batch.ended)
            ),
            created_at=batch.created_at,
            updated_at=batch.updated_at,
            expires_at=batch.expires_at,
            archive_bytes=batch.archive.bytes if batch.archive else None,
            links=links,
            callback_url=batch.notify.callback_url if batch.notify else None,
            notify_email=batch.notify.email if batch.notify else None,
            deliveries={channel: list(tries) for channel, tries in batch.deliveries.items()},
        )
