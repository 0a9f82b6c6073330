"""``memeforge batch``: one meme per CSV row, resumable, with bounded concurrency.

Columns: ``template`` (required), ``top``, ``bottom``, ``boxes`` (JSON list, instead of
top/bottom), ``format`` and ``name`` (the output file's stem; default ``row-NNNN``).
A row is done when its output file exists: a re-run skips it. Each row's POST carries
an Idempotency-Key derived from the row, so a row retried after a crash or a lost
answer reuses its meme instead of rendering a second one.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memeforge_cli.client import Api, ApiProblem

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}
_SAFE_STEM = re.compile(r"[^A-Za-z0-9._-]+")


class BatchError(Exception):
    pass


@dataclass(frozen=True)
class Row:
    number: int  # 1-based, as a spreadsheet shows it (header excluded)
    body: dict[str, Any]
    out: Path

    @property
    def idempotency_key(self) -> str:
        digest = hashlib.sha256(json.dumps(self.body, sort_keys=True).encode())
        digest.update(self.out.name.encode())
        return f"batch-{digest.hexdigest()[:40]}"


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[Row, str]] = field(default_factory=list)


def read_rows(csv_path: Path, outdir: Path, default_format: str) -> list[Row]:
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "template" not in reader.fieldnames:
            raise BatchError(f"{csv_path}: needs a header row with a 'template' column")
        rows = []
        for number, record in enumerate(reader, start=1):
            rows.append(_row(number, record, outdir, default_format))
    stems = [row.out.name for row in rows]
    if len(set(stems)) != len(stems):
        raise BatchError(f"{csv_path}: two rows write the same output file")
    return rows


def _row(number: int, record: dict[str, str | None], outdir: Path, default_format: str) -> Row:
    def value(name: str) -> str:
        return (record.get(name) or "").strip()

    if not value("template"):
        raise BatchError(f"row {number}: empty 'template'")
    fmt = value("format") or default_format
    if fmt not in EXTENSIONS:
        raise BatchError(f"row {number}: format {fmt!r} is not one of {', '.join(EXTENSIONS)}")
    body: dict[str, Any] = {"template_id": value("template"), "format": fmt}
    if value("boxes"):
        try:
            body["boxes"] = json.loads(value("boxes"))
        except ValueError as err:
            raise BatchError(f"row {number}: 'boxes' is not JSON: {err}") from err
    else:
        body["top"], body["bottom"] = value("top"), value("bottom")
    stem = _SAFE_STEM.sub("-", value("name")).strip(".-") or f"row-{number:04d}"
    return Row(number, body, outdir / f"{stem}.{EXTENSIONS[fmt]}")


async def run_batch(
    api: Api,
    rows: list[Row],
    *,
    concurrency: int,
    on_row_done: Callable[[Row, str], None],
) -> Summary:
    """Render every row whose output is missing, ``concurrency`` at a time."""
    summary = Summary()
    gate = asyncio.Semaphore(concurrency)

    async def one(row: Row) -> None:
        if row.out.exists():
            summary.skipped += 1
            on_row_done(row, "skipped")
            return
        async with gate:
            outcome = await _render(api, row)
        if outcome is None:
            summary.done += 1
            on_row_done(row, "done")
        else:
            summary.failed.append((row, outcome))
            on_row_done(row, "failed")

    await asyncio.gather(*(one(row) for row in rows))
    summary.failed.sort(key=lambda failure: failure[0].number)
    return summary


async def _render(api: Api, row: Row) -> str | None:
    """None when the row's image is saved; otherwise why not, in words."""
    try:
        meme = await api.create(row.body, idempotency_key=row.idempotency_key)
        meme = await api.wait_until_done(meme["id"], long_poll=True)
        if meme["state"] == "FAILED":
            failure = meme.get("failure") or {}
            return f"FAILED {failure.get('reason', '?')}: {failure.get('detail', '')}".strip()
        await api.download(meme, row.out)
    except ApiProblem as problem:
        return problem.describe()
    except httpx.HTTPError as err:  # the API stayed unreachable through every retry
        return f"API unreachable: {err!r}"
    return None
