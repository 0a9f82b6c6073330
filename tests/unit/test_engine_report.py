"""The layout report on the stored item and in the API, and the pool's render protocol."""

from __future__ import annotations

import asyncio
import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from memeforge_api.schemas import CreateMeme, MemeView
from memeforge_common.items import from_dynamo, new_item, to_dynamo
from memeforge_common.models import (
    LayoutReport,
    MemeResult,
    MemeState,
    RenderSpec,
    TextBox,
    classic_boxes,
)
from memeforge_renderer import engine
from memeforge_renderer.pool import render_in_pool
from PIL import Image
from pydantic import ValidationError

pytestmark = pytest.mark.unit

MEME_ID = "0123456789abcdef0123456789abcdef"
T = TypeVar("T")


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (20, 90, 160)).save(buf, "JPEG")
    return buf.getvalue()


def test_report_is_stored_on_the_item_and_read_back() -> None:
    out = engine.render(_jpeg(), RenderSpec(boxes=classic_boxes("top", "bottom")))
    result = MemeResult(
        key="memes/x.jpg",
        content_type=out.content_type,
        bytes=len(out.data),
        width=out.width,
        height=out.height,
        report=out.report,  # type: ignore[arg-type]  (a dict, validated into LayoutReport)
    )
    assert isinstance(result.report, LayoutReport)
    item = new_item(MEME_ID, "drake", RenderSpec(boxes=classic_boxes("top", "bottom")))
    done = item.model_copy(update={"state": MemeState.DONE, "result": result})
    again = from_dynamo(to_dynamo(done))
    assert again == done
    assert again.result is not None
    assert again.result.report is not None
    assert again.result.report.boxes[0].lines == ("TOP",)


def test_items_written_before_reports_still_load() -> None:
    item = new_item(MEME_ID, "drake", RenderSpec(boxes=classic_boxes("a", "b")))
    record = to_dynamo(item)
    old_result = {"key": "memes/x.jpg", "content_type": "image/jpeg", "bytes": 1}
    record["result"] = {"S": json.dumps({**old_result, "width": 2, "height": 3})}
    record["spec"] = {
        "S": json.dumps(
            {
                "boxes": [{"text": "a", "x": 0.0, "y": 0.0, "width": 1.0, "height": 0.2}],
                "format": "jpeg",
                "quality": 85,
            }
        )
    }
    loaded = from_dynamo(record)
    assert loaded.result is not None
    assert loaded.result.report is None
    assert loaded.spec.boxes[0].font == "anton"


def test_api_returns_the_report() -> None:
    report = LayoutReport.model_validate(
        engine.render(_jpeg(), RenderSpec(boxes=classic_boxes("hi", ""))).report
    )
    result = MemeResult(
        key="k", content_type="image/jpeg", bytes=1, width=320, height=240, report=report
    )
    item = new_item(MEME_ID, "drake", RenderSpec(boxes=classic_boxes("hi", "")))
    view = MemeView.of(item.model_copy(update={"state": MemeState.DONE, "result": result}))
    assert view.result is not None
    assert view.result.report == report
    assert "report" in view.model_dump(mode="json")["result"]


def test_create_meme_classic_and_boxes() -> None:
    classic = CreateMeme(template_id="drake", top="a", bottom="b").render_spec()
    assert [b.text for b in classic.boxes] == ["a", "b"]
    custom = CreateMeme.model_validate(
        {
            "template_id": "drake",
            "boxes": [{"text": "x", "x": 0, "y": 0, "width": 1, "height": 0.5, "color": "#ff0000"}],
            "format": "webp",
            "quality": 70,
            "max_side": 640,
            "thumbnail_side": 128,
        }
    ).render_spec()
    assert custom.boxes == (TextBox(text="x", x=0, y=0, width=1, height=0.5, color="#ff0000"),)
    assert (custom.format, custom.quality, custom.max_side, custom.thumbnail_side) == (
        "webp",
        70,
        640,
        128,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"template_id": "drake"},
        {"template_id": "drake", "top": "a", "boxes": []},
        {"template_id": "drake", "boxes": [{"text": " ", "x": 0, "y": 0, "width": 1, "height": 1}]},
        {"template_id": "drake", "top": "a", "format": "tiff"},
        {
            "template_id": "drake",
            "boxes": [{"text": "a", "x": 0, "y": 0, "width": 1, "height": 1}] * 17,
        },
        {
            "template_id": "drake",
            "boxes": [{"text": "a", "x": 0, "y": 0, "width": 1, "height": 1, "color": "red"}],
        },
    ],
)
def test_create_meme_rejects(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CreateMeme.model_validate(body)


def test_text_box_limits() -> None:
    with pytest.raises(ValidationError):
        TextBox(text="x" * 10_001, x=0, y=0, width=1, height=1)
    with pytest.raises(ValidationError):
        TextBox(text="x", x=0, y=0, width=1, height=1, rotation=200)
    with pytest.raises(ValidationError):
        TextBox(text="x", x=0, y=0, width=1, height=1, overflow="scroll")  # type: ignore[arg-type]


def test_template_not_cached_crosses_process_boundaries() -> None:
    err = pickle.loads(pickle.dumps(engine.TemplateNotCached("templates/x")))
    assert isinstance(err, engine.TemplateNotCached)


def test_render_in_pool_sends_bytes_only_on_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    engine.TEMPLATES.clear()
    data = _jpeg()
    spec = RenderSpec(boxes=classic_boxes("pool", ""))
    sent: list[bool] = []
    real = engine.render

    def spy(template: bytes | None, **kwargs: object) -> engine.RenderOutput:
        sent.append(template is not None)
        return real(template, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "render", spy)

    class InThisProcess:
        """Runs the call here, so the spy sees what a pool process would be sent."""

        async def call(self, function: Callable[..., T], *args: object) -> T:
            return function(*args)

    async def go() -> list[engine.RenderOutput]:
        return [
            await render_in_pool(
                InThisProcess(),
                data,
                spec,
                template_key="templates/p",
                etag='"1"',
                max_source_pixels=10**7,
            )
            for _ in range(2)
        ]

    first, second = asyncio.run(go())
    assert sent == [False, True, False]  # miss (no bytes), retry with bytes, hit
    assert first.data == second.data


@pytest.mark.parametrize(
    ("content", "expected"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("junk", None)],
)
def test_cgroup_cpu_quota(tmp_path: Path, content: str, expected: int | None) -> None:
    from memeforge_renderer.pool import _cgroup_cpu_quota

    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)
    assert _cgroup_cpu_quota(str(cpu_max)) == expected
    assert _cgroup_cpu_quota(str(tmp_path / "absent")) is None
