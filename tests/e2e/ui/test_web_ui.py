"""The web UI as a person uses it: Chromium against a real stack (all services as
processes, an emulator over HTTP). Every page is screenshot and checked with axe-core;
any console error fails the test."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from devenv.run.stack import Stack
from tests.e2e.ui.browser import Watched
from tests.support.images import gradient, region_diff

pytestmark = pytest.mark.e2e

TEMPLATE = "sunset-hills"  # a seed template: 800x600, the classic top/bottom layout
MAX_TABS = 80  # a keyboard path longer than this is a bug in itself


def ink_in_box(page: Page, index: int) -> int:
    """Opaque preview pixels inside box ``index`` (the canvas draws only the captions)."""
    return int(
        page.evaluate(
            """(i) => {
              const canvas = document.getElementById('preview');
              const stage = document.getElementById('stage').getBoundingClientRect();
              const r = document.querySelector(`[data-box="${i}"]`).getBoundingClientRect();
              const sx = canvas.width / stage.width, sy = canvas.height / stage.height;
              const data = canvas.getContext('2d').getImageData((r.left - stage.left) * sx,
                (r.top - stage.top) * sy, r.width * sx, r.height * sy).data;
              let ink = 0;
              for (let k = 3; k < data.length; k += 4) if (data[k] > 128) ink++;
              return ink;
            }""",
            index,
        )
    )


def wait_done(page: Page) -> None:
    expect(page.locator('#states [data-state="DONE"].reached')).to_be_visible(timeout=90_000)
    page.wait_for_function(
        "() => { const i = document.getElementById('meme-image');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )


def tab_to(page: Page, selector: str) -> None:
    """Press Tab until ``selector`` has the focus."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reachable with Tab")


def fetch_image(url: str) -> Image.Image:
    """An image by its presigned URL (it carries its own authorisation)."""
    response = httpx.get(url, timeout=30)
    assert response.is_success, response.status_code
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def test_gallery_pick_caption_preview_create_follow(person: Watched, stack: Stack) -> None:
    page = person.page
    page.goto("/")
    expect(page.locator(f'[data-template="{TEMPLATE}"]')).to_be_visible()
    assert page.locator("#gallery li").count() >= 5  # the seeds
    page.wait_for_function(  # every thumbnail loads from its presigned URL
        "() => [...document.querySelectorAll('#gallery img')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()  # one page holds all
    person.audit("gallery")

    page.get_by_label("Filter by name").fill("sunset")
    expect(page.locator("#gallery li")).to_have_count(1)
    page.get_by_label("Filter by name").fill("no such template at all")
    expect(page.locator("#gallery li")).to_have_count(0)
    expect(page.get_by_text("No template matches")).to_be_visible()
    page.get_by_label("Filter by name").fill("")

    page.locator(f'[data-template="{TEMPLATE}"]').click()
    expect(page.locator('[data-box="1"]')).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('#stage img');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    page.evaluate("document.fonts.ready")
    assert ink_in_box(page, 0) == 0
    assert ink_in_box(page, 1) == 0

    page.get_by_label("Text", exact=True).fill("one does not simply")
    page.locator('[data-box="1"]').click()
    page.get_by_label("Text", exact=True).fill("click a button")
    assert ink_in_box(page, 0) > 500, "the preview does not show the top caption"
    assert ink_in_box(page, 1) > 500, "the preview does not show the bottom caption"
    person.audit("editor")

    with page.expect_response(lambda r: r.url.endswith("/memes") and r.status == 202) as created:
        page.get_by_role("button", name="Create meme").click()
    meme = created.value.json()
    expect(page).to_have_url(re.compile(f"#/memes/{meme['id']}$"))
    wait_done(page)
    for state in ("PENDING", "DONE"):
        expect(page.locator(f'#states [data-state="{state}"] time')).to_have_count(1)
    # QUEUED and RENDERING are optional (the consumer writes no QUEUED, a fast render
    # skips RENDERING): shown only when reached.
    expect(page.locator("#states li:not(.reached)")).to_have_count(0)
    expect(page.get_by_role("link", name="Download")).to_be_visible()
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_text("Link copied.")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    shown = page.evaluate("document.getElementById('meme-image').src")
    assert copied == shown  # the presigned link: it works without a key, for a while
    assert f"/{meme['id']}.jpg?" in copied
    person.audit("meme")

    final = fetch_image(shown)
    template_image = httpx.get(
        f"{stack.api_url}/templates/{TEMPLATE}/image",
        params={"redirect": "false"},
        headers=stack.auth_headers,
        timeout=30,
    )
    blank = fetch_image(template_image.json()["url"])
    assert final.size == blank.size
    top_band = (0, 0, final.width, final.height // 4)
    assert region_diff(final, blank, top_band) > 10, "the meme looks like the blank template"


def test_failed_meme_says_why_in_words(person: Watched, stack: Stack) -> None:
    body = {"template_id": "no-such-template", "top": "x"}
    meme = httpx.post(
        f"{stack.api_url}/memes", json=body, headers=stack.auth_headers, timeout=30
    ).json()
    page = person.page
    page.goto(f"/#/memes/{meme['id']}")
    expect(page.get_by_role("alert")).to_contain_text(
        "The template does not exist (or no longer does).", timeout=60_000
    )
    expect(page.locator('#states [data-state="FAILED"] time')).to_have_count(1)
    person.audit("meme-failed")


def test_upload_by_drag_and_drop_then_too_large_shows_413(person: Watched, stack: Stack) -> None:
    page = person.page
    page.goto("/#/upload")
    expect(page.get_by_label("Choose an image")).to_be_attached()
    person.audit("upload")

    png = gradient(320, 240, fmt="PNG")
    data = page.evaluate_handle(
        """(bytes) => {
          const dt = new DataTransfer();
          const file = new File([new Uint8Array(bytes)], 'dropped-gradient.png',
            {type: 'image/png'});
          dt.items.add(file);
          return dt;
        }""",
        list(png),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": data})
    expect(page.locator("#chosen")).to_contain_text("dropped-gradient.png")
    expect(page.get_by_label("Name")).to_have_value("dropped gradient")
    boxes = [{"x": 0.1, "y": 0.1, "width": 0.8, "height": 0.3}]
    page.get_by_label("Default boxes (optional)").fill(json.dumps(boxes))
    page.get_by_role("button", name="Upload template").click()
    expect(page).to_have_url(re.compile("#/edit/dropped-gradient$"))
    expect(page.locator("[data-box]")).to_have_count(1)  # its own layout, not the classic two
    template: dict[str, Any] = httpx.get(
        f"{stack.api_url}/templates/dropped-gradient", headers=stack.auth_headers, timeout=30
    ).json()
    assert template["width"] == 320
    assert not template["classic_layout"]

    limit = 10 * 1024 * 1024  # the API's default MEMEFORGE_MAX_UPLOAD_BYTES
    page.goto("/#/upload")
    page.get_by_label("Choose an image").set_input_files(
        {"name": "huge.png", "mimeType": "image/png", "buffer": b"\x89PNG" + bytes(limit)}
    )
    page.get_by_label("Name").fill("Huge")
    with page.expect_response(lambda r: r.url.endswith("/templates")) as answered:
        page.get_by_role("button", name="Upload template").click()
    assert answered.value.status == 413
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Upload too large")
    expect(alert).to_contain_text(f"limit {limit} bytes")
    expect(alert).to_contain_text("413 upload-too-large")
    # The browser logs the 413 response itself; that one is expected here.
    person.errors[:] = [e for e in person.errors if "status of 413" not in e]
    person.audit("upload-too-large")


def test_dragging_a_box_changes_the_submitted_spec(person: Watched) -> None:
    page = person.page
    page.goto(f"/#/edit/{TEMPLATE}")
    top = page.locator('[data-box="0"]')
    expect(top).to_be_visible()
    page.get_by_label("Text", exact=True).fill("dragged")
    stage = page.locator("#stage").bounding_box()
    start = top.bounding_box()
    assert stage is not None
    assert start is not None
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(
        start["x"] + start["width"] / 2, start["y"] + start["height"] / 2 + 150, steps=8
    )
    page.mouse.up()
    # and shrink it by its corner handle
    handle = page.locator('[data-box="0"] .handle').bounding_box()
    assert handle is not None
    page.mouse.move(handle["x"] + 5, handle["y"] + 5)
    page.mouse.down()
    page.mouse.move(handle["x"] + 5 - 120, handle["y"] + 5, steps=8)
    page.mouse.up()

    with page.expect_request(lambda r: r.url.endswith("/memes") and r.method == "POST") as sent:
        page.get_by_role("button", name="Create meme").click()
    spec = sent.value.post_data_json
    assert [b["text"] for b in spec["boxes"]] == ["dragged"]  # the empty bottom box is not sent
    box = spec["boxes"][0]
    assert box["y"] == pytest.approx(0.02 + 150 / stage["height"], abs=0.01)
    assert box["x"] == pytest.approx(0.03, abs=0.005)
    assert box["width"] == pytest.approx(0.94 - 120 / stage["width"], abs=0.01)
    wait_done(page)


def test_keyboard_only_path_through_create(person: Watched) -> None:
    page = person.page
    page.goto("/")
    expect(page.locator('[data-template="night-sky"]')).to_be_visible()
    tab_to(page, '[data-template="night-sky"]')
    page.keyboard.press("Enter")
    expect(page.locator('[data-box="0"]')).to_be_visible()

    tab_to(page, '[data-box="0"]')
    page.keyboard.press("ArrowDown")  # 1 % of the image down
    page.keyboard.press("Shift+ArrowLeft")  # 1 % narrower
    expect(page.get_by_label("Y (%)")).to_have_value("3.0")
    expect(page.get_by_label("Width (%)")).to_have_value("93.0")
    tab_to(page, "#box-text")
    page.keyboard.type("only keys")
    tab_to(page, "#format")
    page.keyboard.press("ArrowDown")  # JPEG → PNG
    tab_to(page, "#create")
    with page.expect_request(lambda r: r.url.endswith("/memes") and r.method == "POST") as sent:
        page.keyboard.press("Enter")
    spec = sent.value.post_data_json
    assert spec["format"] == "png"
    assert spec["boxes"][0]["text"] == "only keys"
    assert spec["boxes"][0]["y"] == pytest.approx(0.03)
    wait_done(page)
    tab_to(page, "#copy-link")  # the result's actions are reachable too


def test_phone_width_editor_fits_without_sideways_scrolling(person: Watched) -> None:
    page = person.page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/#/edit/tall-checker")
    expect(page.locator('[data-box="2"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    person.audit("editor-phone")


def test_history_lists_my_memes_and_deletes_one(person: Watched, stack: Stack) -> None:
    made = [
        httpx.post(
            f"{stack.api_url}/memes",
            json={"template_id": "ocean-waves", "top": f"history {n}"},
            headers=stack.auth_headers,
            timeout=30,
        ).json()["id"]
        for n in range(2)
    ]
    page = person.page
    page.goto("/")
    page.get_by_role("link", name="My memes").click()  # shown: the API has GET /memes
    for meme_id in made:
        expect(page.locator(f'[data-meme="{meme_id}"]')).to_be_visible()
    person.audit("history")

    doomed = page.locator(f'[data-meme="{made[0]}"]')
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        doomed.get_by_role("button", name=re.compile("^Delete meme")).click()
    assert deleted.value.status == 204
    expect(doomed).to_have_count(0)
    gone = httpx.get(f"{stack.api_url}/memes/{made[0]}", headers=stack.auth_headers, timeout=30)
    assert gone.status_code == 404
    page.reload()
    expect(page.locator(f'[data-meme="{made[1]}"]')).to_be_visible()
    expect(page.locator(f'[data-meme="{made[0]}"]')).to_have_count(0)


def test_asks_for_a_key_once_and_keeps_it_for_the_tab_only(newcomer: Watched, stack: Stack) -> None:
    page = newcomer.page
    page.goto("/")
    dialog = page.get_by_role("dialog", name="API key needed")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("send Authorization: Bearer")  # the API's 401 detail
    newcomer.audit("key-prompt")
    dialog.get_by_label("API key").fill("mf_not_a_real_key")
    dialog.get_by_role("button", name="Use key").click()
    expect(dialog).to_contain_text("That key was refused")  # asked again, saying why
    dialog.get_by_label("API key").fill(stack.api_key)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator(f'[data-template="{TEMPLATE}"]')).to_be_visible()

    with page.expect_request(lambda r: "/templates?" in r.url) as listed:
        page.reload()
    assert listed.value.headers["authorization"] == f"Bearer {stack.api_key}"
    expect(page.locator(f'[data-template="{TEMPLATE}"]')).to_be_visible()
    expect(dialog).to_be_hidden()  # once per tab, not once per page load
    assert page.evaluate("document.cookie") == ""
    assert page.context.cookies() == []  # never a cookie: nothing a cross-site request carries
    # The browser logs each refused request itself; those are the expected 401s.
    newcomer.errors[:] = [e for e in newcomer.errors if "status of 401" not in e]


def test_the_page_is_served_with_a_strict_csp(stack: Stack) -> None:
    response = httpx.get(f"{stack.api_url}/", timeout=30)
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
