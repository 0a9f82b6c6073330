"""The web UI: static ES modules served by the api at ``/``, behind a strict CSP.

The page is plain HTML + JavaScript modules (no build step, no Node at run time). Its
script, style, font and fetch sources are this origin only; images may also come from
the object store, because meme and template images are presigned redirects to it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from memeforge_api.deps import ServicesDep

UI_DIR = Path(__file__).resolve().with_name("ui")
# The renderer's own OFL fonts (a symlink in the source tree, a copy in the image), so
# the browser's live preview measures text with the very faces the server renders with.
FONTS_DIR = (UI_DIR / "fonts").resolve()

router = APIRouter(include_in_schema=False)


def content_security_policy(image_origin: str) -> str:
    """No inline script or style, no eval, no plugins, no framing, no foreign fetches."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "font-src 'self'",
            "connect-src 'self'",
            f"img-src 'self' blob: {image_origin}",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


@lru_cache(maxsize=4)
def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@router.get("/")
async def index(services: ServicesDep) -> FileResponse:
    # Presigning is local (no AWS call); it names the origin the image URLs point to.
    sample = await services.templates.presigned_url("ui", 60)
    headers = {
        "Content-Security-Policy": content_security_policy(_origin(sample)),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return FileResponse(UI_DIR / "index.html", headers=headers)


def mount_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/fonts", StaticFiles(directory=FONTS_DIR), name="ui-fonts")
    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")
