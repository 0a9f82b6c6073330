"""A small async REST client for the memeforge API: problem details, retries, waiting."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from memeforge_cli.config import Config

RETRY_STATUSES = (429, 503)
MAX_ATTEMPTS = 8
MAX_RETRY_WAIT_S = 60.0
TERMINAL = ("DONE", "FAILED")
LONG_POLL_S = 20


class ApiProblem(Exception):
    """An error answer from the API, carrying its RFC 9457 problem detail."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(self.describe())

    @property
    def code(self) -> str:
        return str(self.problem.get("code", "http-error"))

    def describe(self) -> str:
        title = self.problem.get("title", "Request failed")
        detail = self.problem.get("detail")
        text = f"{self.status} {self.code}: {title}"
        if detail:
            text += f": {detail}"
        for error in self.problem.get("errors", []) or []:
            loc = ".".join(str(part) for part in error.get("loc", []))
            text += f"\n  {loc}: {error.get('msg', '')}"
        return text


def retry_after_s(response: httpx.Response, attempt: int) -> float:
    """Retry-After (seconds or an HTTP date) when given, else jittered exponential backoff."""
    header = response.headers.get("retry-after")
    if header:
        if header.strip().isdigit():
            return min(float(header), MAX_RETRY_WAIT_S)
        try:
            when = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            pass
        else:
            return min(max(when - time.time(), 0.0), MAX_RETRY_WAIT_S)
    backoff: float = min(0.5 * 2**attempt, MAX_RETRY_WAIT_S)
    return backoff * random.uniform(0.5, 1.0)


def _problem_of(response: httpx.Response) -> ApiProblem:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"title": response.reason_phrase or "Request failed", "code": "http-error"}
    return ApiProblem(response.status_code, body)


class Api:
    def __init__(
        self,
        config: Config,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"user-agent": "memeforge-cli"}
        if config.key:
            headers["authorization"] = f"Bearer {config.key}"
        self._http = httpx.AsyncClient(
            base_url=config.api,
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; 429 and 503 are retried (honouring Retry-After), as are dropped
        connections, a bounded number of times. Other errors raise ApiProblem."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(0.5 * 2**attempt, MAX_RETRY_WAIT_S))
                continue
            if response.status_code in RETRY_STATUSES and attempt < MAX_ATTEMPTS - 1:
                await asyncio.sleep(retry_after_s(response, attempt))
                continue
            if response.is_error:
                raise _problem_of(response)
            return response
        raise AssertionError("unreachable")  # the loop returns or raises

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    async def templates(self, limit: int | None = None) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        seen = 0
        while True:
            params: dict[str, Any] = {"limit": 100 if limit is None else min(100, limit - seen)}
            if cursor:
                params["cursor"] = cursor
            page = await self.json("GET", "/templates", params=params)
            for item in page["items"]:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def upload_template(
        self, file: Path, name: str, template_id: str | None, boxes: str | None
    ) -> dict[str, Any]:
        data = {"name": name}
        if template_id:
            data["id"] = template_id
        if boxes:
            data["boxes"] = boxes
        with file.open("rb") as handle:
            files = {"file": (file.name, handle.read())}
        result: dict[str, Any] = await self.json("POST", "/templates", data=data, files=files)
        return result

    async def create(
        self, body: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = await self.json("POST", "/memes", json=body, headers=headers)
        return result

    async def meme(self, meme_id: str, wait: float = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else {}
        result: dict[str, Any] = await self.json("GET", f"/memes/{meme_id}", params=params)
        return result

    async def follow(self, meme_id: str) -> AsyncIterator[dict[str, Any]]:
        """Each state the meme enters, over SSE; then long-polls if the stream ended early."""
        last: dict[str, Any] | None = None
        try:
            async for last in self._events(meme_id):
                yield last
        except httpx.TransportError:
            pass  # fall back to long-polling below
        while last is None or last["state"] not in TERMINAL:
            current = await self.meme(meme_id, wait=LONG_POLL_S)
            if last is None or current["state"] != last["state"]:
                yield current
            last = current

    async def _events(self, meme_id: str) -> AsyncIterator[dict[str, Any]]:
        path = f"/memes/{meme_id}/events"
        async with self._http.stream("GET", path, timeout=httpx.Timeout(30, read=60)) as response:
            if response.is_error:
                await response.aread()
                raise _problem_of(response)
            event, data = "", list[str]()
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    continue
                if not line:
                    if event == "state" and data:
                        yield json.loads("\n".join(data))
                    event, data = "", list[str]()
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)

    async def wait_until_done(self, meme_id: str, *, long_poll: bool = False) -> dict[str, Any]:
        """The meme once DONE or FAILED: over SSE, or by ``?wait`` long-polls."""
        meme: dict[str, Any] = {"state": ""}
        if long_poll:
            while meme["state"] not in TERMINAL:
                meme = await self.meme(meme_id, wait=LONG_POLL_S)
            return meme
        async for meme in self.follow(meme_id):  # noqa: B007 (the last state is the answer)
            pass
        return meme

    async def download(self, meme: dict[str, Any], out: Path) -> int:
        """Save the meme's image (the API redirects to a presigned URL) to ``out``."""
        response = await self.request("GET", meme["links"]["image"])
        location = response.headers.get("location")
        if location is None:
            raise ApiProblem(response.status_code, {"title": "no image redirect"})
        for attempt in range(MAX_ATTEMPTS):
            # The presigned URL carries its own authorisation: no API key goes to S3.
            async with httpx.AsyncClient(timeout=60) as plain:
                image = await plain.get(location)
            if image.status_code not in RETRY_STATUSES or attempt == MAX_ATTEMPTS - 1:
                break
            await asyncio.sleep(retry_after_s(image, attempt))
        if image.is_error:
            raise _problem_of(image)
        partial = out.with_name(f".{out.name}.part")
        partial.write_bytes(image.content)
        partial.replace(out)  # all or nothing: a half-written file never looks done
        return len(image.content)


def extension(meme: dict[str, Any]) -> str:
    content_type = str((meme.get("result") or {}).get("content_type", "image/jpeg"))
    return {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}.get(
        content_type, content_type.rsplit("/", 1)[-1]
    )
