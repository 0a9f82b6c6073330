"""Answers pointing at an S3 object: a redirect to a presigned URL, or that URL as JSON.

A browser page that authenticates with a header cannot put the header on an <img>, and
S3 sends no CORS headers for fetch() to follow the redirect: with ``redirect=false``
the page gets the URL itself (it carries its own expiring authorisation).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Response, status
from fastapi.responses import JSONResponse, RedirectResponse

RedirectQuery = Annotated[
    bool,
    Query(description="false: answer 200 {url, expires_in} instead of a 307 redirect to url"),
]
PRESIGNED_RESPONSES: dict[int | str, dict[str, Any]] = {
    307: {"description": "Redirect to a presigned, expiring S3 URL"},
    200: {"description": "with redirect=false: {url, expires_in}"},
}


def presigned_answer(url: str, ttl_s: int, *, redirect: bool) -> Response:
    if redirect:
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    return JSONResponse({"url": url, "expires_in": ttl_s}, headers={"Cache-Control": "no-store"})
