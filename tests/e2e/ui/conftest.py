"""Fixtures for the UI tests: one Chromium per module, one watched page per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from devenv.stack import Stack
from tests.e2e.ui.browser import AXE_JS, CHROMIUM, Watched, browser_missing


@pytest.fixture(scope="session")
def axe() -> str:
    return AXE_JS.read_text()


@pytest.fixture(scope="module", autouse=True)
def browser_installed() -> None:
    missing = browser_missing()
    if missing is not None:
        # CI installs both (make test → setup-browser) and sets MEMEFORGE_REQUIRE_BROWSER.
        if os.environ.get("MEMEFORGE_REQUIRE_BROWSER"):
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def person(browser: Browser, axe: str, stack: Stack) -> Iterator[Watched]:
    """A desktop-sized tab on the stack's UI; fails the test on any console error."""
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.api_url)
    watched = Watched(context.new_page(), axe).attach()
    watched.page.set_default_timeout(30_000)
    yield watched
    context.close()
    assert not watched.errors, "\n".join(watched.errors)
