"""Request and response bodies of the public API (distinct from the stored schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from memeforge_common.models import (
    MAX_BOXES,
    LayoutReport,
    MemeItem,
    MemeState,
    RenderSpec,
    TemplateId,
    TextBox,
    classic_boxes,
)
from memeforge_common.templates import TemplateInfo
from pydantic import BaseModel, ConfigDict, Field, model_validator


class CreateMeme(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: TemplateId
    top: str = Field(default="", max_length=500)
    bottom: str = Field(default="", max_length=500)
    boxes: list[TextBox] | None = Field(
        default=None,
        max_length=MAX_BOXES,
        description="text boxes replacing the classic top/bottom layout",
    )
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = Field(default=85, ge=1, le=95)
    max_side: int | None = Field(default=None, ge=16, le=8192)
    thumbnail_side: int | None = Field(default=None, ge=16, le=1024)

    @model_validator(mode="after")
    def _some_text(self) -> CreateMeme:
        classic = bool(self.top.strip() or self.bottom.strip())
        if self.boxes is not None:
            if classic:
                raise ValueError("give either 'top'/'bottom' or 'boxes', not both")
            if not any(box.text.strip() for box in self.boxes):
                raise ValueError("give at least one box with text")
        elif not classic:
            raise ValueError("give at least one of 'top' or 'bottom'")
        return self

    def render_spec(self) -> RenderSpec:
        boxes = classic_boxes(self.top, self.bottom) if self.boxes is None else self.boxes
        return RenderSpec(
            boxes=tuple(boxes),
            format=self.format,
            quality=self.quality,
            max_side=self.max_side,
            thumbnail_side=self.thumbnail_side,
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
    links: dict[str, str]

    @classmethod
    def of(cls, item: MemeItem) -> MemeView:
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
            links=links,
        )


class TemplateView(BaseModel):
    id: str
    name: str
    content_type: str
    width: int
    height: int
    bytes: int
    etag: str
    last_modified: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, info: TemplateInfo) -> TemplateView:
        data: dict[str, Any] = info.as_dict()
        return cls(**data, links={"self": f"/templates/{info.id}"})


class TemplatePage(BaseModel):
    items: list[TemplateView]
    next_cursor: str | None = None
