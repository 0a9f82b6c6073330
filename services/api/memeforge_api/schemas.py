"""Request and response bodies of the public API (distinct from the stored schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from memeforge_common.models import MemeItem, MemeState, TemplateId
from memeforge_common.templates import TemplateInfo
from pydantic import BaseModel, ConfigDict, Field, model_validator


class CreateMeme(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: TemplateId
    top: str = Field(default="", max_length=500)
    bottom: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _some_text(self) -> CreateMeme:
        if not (self.top.strip() or self.bottom.strip()):
            raise ValueError("give at least one of 'top' or 'bottom'")
        return self


class ResultView(BaseModel):
    content_type: str
    bytes: int
    width: int
    height: int
    image_url: str


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
            result = ResultView(
                content_type=item.result.content_type,
                bytes=item.result.bytes,
                width=item.result.width,
                height=item.result.height,
                image_url=links["image"],
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
