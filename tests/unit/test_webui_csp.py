"""The web UI's Content-Security-Policy: strict, with only the image store added."""

from __future__ import annotations

import pytest
from memeforge_api.webui import FONTS_DIR, UI_DIR, content_security_policy

pytestmark = pytest.mark.unit


def test_policy_allows_only_self_and_the_image_origin() -> None:
    policy = dict(
        d.strip().split(" ", 1)
        for d in content_security_policy("https://b.s3.amazonaws.com").split(";")
    )
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "font-src", "connect-src"):
        assert policy[directive] == "'self'", directive
    assert policy["img-src"] == "'self' blob: https://b.s3.amazonaws.com"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"


def test_the_ui_ships_the_renderers_fonts() -> None:
    assert (UI_DIR / "index.html").is_file()
    for face in ("Anton-Regular.ttf", "NotoSans-ExtraBold.ttf", "OFL.txt"):
        assert (FONTS_DIR / face).is_file(), face
