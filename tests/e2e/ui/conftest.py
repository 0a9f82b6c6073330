"""Fixtures for the UI tests: one Chromium per module, one watched page per test."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, sync_playwright

from devenv.run.stack import Stack
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


@contextmanager
def watched_tab(browser: Browser, axe: str, stack: Stack, key: str | None) -> Iterator[Watched]:
    """A desktop-sized tab on the stack's UI; fails the test on any console error.
    ``key``: what the tab's sessionStorage holds already, as if typed into the prompt."""
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.api_url)
    if key is not None:
        context.add_init_script(f"sessionStorage.setItem('memeforge-key', {json.dumps(key)})")
    watched = Watched(context.new_page(), axe).attach()
    watched.page.set_default_timeout(30_000)
    try:
        yield watched
    finally:
        context.close()
    assert not watched.errors, "\n".join(watched.errors)


@pytest.fixture
def person(browser: Browser, axe: str, stack: Stack) -> Iterator[Watched]:
    """Someone who already gave the UI the dev tenant's key in this tab."""
    with watched_tab(browser, axe, stack, stack.api_key) as watched:
        yield watched


@pytest.fixture
def newcomer(browser: Browser, axe: str, stack: Stack) -> Iterator[Watched]:
    """Someone opening the UI for the first time: no key yet."""
    with watched_tab(browser, axe, stack, None) as watched:
        yield watched
