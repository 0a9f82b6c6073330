"""A person's browser for the e2e UI tests: Debian's Chromium driven by Playwright, with
axe-core (from npm, by scripts/setup-browser.sh) for accessibility, and screenshots."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Error, Page

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("MEMEFORGE_CHROMIUM", "/usr/bin/chromium")
AXE_JS = REPO / ".cache" / "axe-core" / "node_modules" / "axe-core" / "axe.min.js"
ARTEFACTS = Path(os.environ.get("MEMEFORGE_UI_ARTEFACTS", REPO / ".run" / "artefacts" / "ui"))
BLOCKING_IMPACTS = ("serious", "critical")


def browser_missing() -> str | None:
    """Why the UI tests cannot run here, or None; scripts/setup-browser.sh fixes it."""
    for needed, what in ((Path(CHROMIUM), "Chromium"), (AXE_JS, "axe-core")):
        if not needed.exists():
            return f"{what} not found at {needed}: run make setup-browser"
    return None


@dataclass
class Watched:
    """A page whose console errors and uncaught exceptions are recorded."""

    page: Page
    axe: str
    errors: list[str] = field(default_factory=list)

    def attach(self) -> Watched:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        return self

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} @ {message.location.get('url')}")

    def audit(self, name: str) -> None:
        """Screenshot the page as an artefact, then assert axe finds nothing serious."""
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)
        with contextlib.suppress(Error):  # already injected on this document
            self.page.evaluate(self.axe)
        result: dict[str, Any] = self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        blocking = [
            f"{v['id']} ({v['impact']}): {v['help']} → "
            + ", ".join(str(n["target"]) for n in v["nodes"][:5])
            for v in result["violations"]
            if v["impact"] in BLOCKING_IMPACTS
        ]
        assert not blocking, f"axe on {name}:\n" + "\n".join(blocking)
