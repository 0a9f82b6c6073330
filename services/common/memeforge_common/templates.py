"""Templates live in S3 under ``templates/<tenant>/<id>``; their facts ride in object metadata.

That includes the template's default text boxes (its layout), so image and layout are
written in one PutObject and can never disagree. S3 caps user metadata at 2 KiB, which
bounds a layout; boxes are stored without their (empty) text and default fields.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from memeforge_common.animation import AnimationFacts
from memeforge_common.limits import MAX_LAYOUT_METADATA_BYTES, MAX_TEMPLATE_METADATA_BYTES
from memeforge_common.models import (
    CLASSIC_LAYOUT,
    TEMPLATE_KEY_PREFIX,
    TextBox,
    is_template_id,
    template_key,
)
from memeforge_common.tenancy import PUBLIC_TENANT

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

PREFIX = TEMPLATE_KEY_PREFIX

_BOXES = TypeAdapter(tuple[TextBox, ...])


class LayoutTooLarge(ValueError):
    pass


class MetadataTooLarge(ValueError):
    """Name and layout together exceed what S3 stores as object metadata."""


class TemplateExists(Exception):
    """A template with that id is already stored (templates are never replaced)."""


class TemplateChanged(Exception):
    """The template no longer has the ETag the job was queued with."""


class InvalidCursor(ValueError):
    """A page cursor this store did not hand out."""


_CURSOR_PREFIX = "t1."
# A listing goes through the tenant's own folder, then the public one.
_FOLDERS = ("own", "public")


def encode_cursor(folder: str, after: str) -> str:
    """Opaque page cursor: the folder a page ended in and its last id there ("" when
    the next page starts that folder). A cursor is never trusted unchecked."""
    raw = f"{folder}:{after}".encode()
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The folder and template id a cursor continues after; InvalidCursor for anything
    else."""
    if not cursor.startswith(_CURSOR_PREFIX):
        raise InvalidCursor(cursor)
    raw = cursor[len(_CURSOR_PREFIX) :]
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidCursor(cursor) from err
    folder, sep, after = decoded.partition(":")
    if not sep or folder not in _FOLDERS or (after and not is_template_id(after)):
        raise InvalidCursor(cursor)
    return folder, after


def template_metadata(
    name: str,
    width: int,
    height: int,
    layout: tuple[TextBox, ...] | None,
    animation: AnimationFacts | None = None,
) -> dict[str, str]:
    """The S3 metadata of a template, checked against S3's size limit before any upload
    (S3 metadata is ASCII-only, so the name is percent-encoded)."""
    metadata = {"name": quote(name), "width": str(width), "height": str(height)}
    if animation is not None:
        metadata["frames"] = str(animation.frames)
        metadata["duration-ms"] = str(animation.duration_ms)
        if animation.loop is not None:
            metadata["loop"] = str(animation.loop)
    if layout:
        metadata["layout"] = encode_layout(layout)
    size = sum(len(k) + len(v) for k, v in metadata.items())
    if size > MAX_TEMPLATE_METADATA_BYTES:
        raise MetadataTooLarge(
            f"name and layout take {size} bytes of metadata; the limit is "
            f"{MAX_TEMPLATE_METADATA_BYTES} (use a shorter name or fewer boxes)"
        )
    return metadata


def encode_layout(boxes: tuple[TextBox, ...]) -> str:
    """Compact, ASCII-safe metadata value for a layout; LayoutTooLarge past the bound."""
    compact = [
        box.model_dump(mode="json", exclude_defaults=True, exclude={"text"}) for box in boxes
    ]
    encoded = quote(json.dumps(compact, separators=(",", ":")), safe="")
    if len(encoded) > MAX_LAYOUT_METADATA_BYTES:
        raise LayoutTooLarge(
            f"layout takes {len(encoded)} bytes of metadata; the limit is "
            f"{MAX_LAYOUT_METADATA_BYTES} (use fewer boxes or fewer non-default fields)"
        )
    return encoded


def decode_layout(value: str | None) -> tuple[TextBox, ...] | None:
    if not value:
        return None
    try:
        raw = json.loads(unquote(value))
        return _BOXES.validate_python([{"text": "", **box} for box in raw])
    except (ValueError, TypeError, ValidationError):
        return None  # unreadable layout metadata: fall back to the classic layout


class TemplateFacts(BaseModel):
    """What S3 says about a template (the api's TemplateView shows these as they are)."""

    id: str
    name: str
    content_type: str
    width: int
    height: int
    bytes: int
    etag: str
    last_modified: datetime
    frames: int = Field(default=1, description="more than 1: an animated GIF or WebP")
    duration_ms: int = Field(default=0, description="an animation's total duration")
    loop: int | None = Field(
        default=None, description="times an animation plays (0: forever; null: once)"
    )


class TemplateInfo(TemplateFacts):
    model_config = ConfigDict(frozen=True)

    tenant: str  # whose folder it is in: the caller's own, or the public one
    layout: tuple[TextBox, ...] | None = None  # None: the classic top/bottom layout

    @property
    def key(self) -> str:
        return template_key(self.id, self.tenant)

    @property
    def boxes(self) -> tuple[TextBox, ...]:
        """The default text boxes of this template (empty text)."""
        return self.layout or CLASSIC_LAYOUT


def _int(value: str | None) -> int | None:
    """A number from metadata; None when absent or unreadable."""
    return int(value) if value is not None and value.isdigit() else None


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def is_not_found(err: ClientError) -> bool:
    return _error_code(err) in ("404", "NoSuchKey", "NotFound")


class TemplateMissing(LookupError):
    """No template under that key."""


class TemplateLookup(Protocol):
    async def find(self, template_id: str, tenant: str) -> TemplateInfo | None: ...


class TemplateStore:
    """Templates in one bucket: the only code that reads or writes ``templates/*``."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def upload(
        self,
        template_id: str,
        *,
        tenant: str,
        name: str,
        data: bytes,
        content_type: str,
        width: int,
        height: int,
        layout: tuple[TextBox, ...] | None = None,
        animation: AnimationFacts | None = None,
    ) -> str:
        """Store a new template; returns its ETag. TemplateExists when the id is taken:
        the write is conditional (If-None-Match: *), so of two concurrent uploads of one
        id exactly one wins, and a template's bytes never change under queued memes."""
        try:
            response = await self._s3.put_object(
                Bucket=self._bucket,
                Key=template_key(template_id, tenant),
                Body=data,
                ContentType=content_type,
                Metadata=template_metadata(name, width, height, layout, animation),
                IfNoneMatch="*",
            )
        except ClientError as err:
            if _error_code(err) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise TemplateExists(template_id) from err
            raise
        return response["ETag"]

    async def presigned_url(self, key: str, ttl_s: int) -> str:
        """A GET URL for a template's image (``TemplateInfo.key``) that expires after
        ``ttl_s`` (no AWS call)."""
        return await self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=ttl_s
        )

    async def find(self, template_id: str, tenant: str) -> TemplateInfo | None:
        """What ``template_id`` means to ``tenant``: its own template, else a public one."""
        own = await self.head(template_id, tenant) if tenant else None
        return own or await self.head(template_id, PUBLIC_TENANT)

    async def delete(self, template_id: str, tenant: str) -> bool:
        """Delete the tenant's own template; False when it has none by that id."""
        if await self.head(template_id, tenant) is None:
            return False
        await self._s3.delete_object(Bucket=self._bucket, Key=template_key(template_id, tenant))
        return True

    async def head(self, template_id: str, tenant: str) -> TemplateInfo | None:
        key = template_key(template_id, tenant)
        try:
            head = await self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as err:
            if is_not_found(err):
                return None
            raise
        meta = head.get("Metadata", {})
        return TemplateInfo(
            id=template_id,
            tenant=tenant,
            name=unquote(meta.get("name", template_id)),
            content_type=head.get("ContentType", "application/octet-stream"),
            width=int(meta.get("width", 0)),
            height=int(meta.get("height", 0)),
            bytes=head["ContentLength"],
            etag=head["ETag"],
            last_modified=head["LastModified"],
            layout=decode_layout(meta.get("layout")),
            frames=_int(meta.get("frames")) or 1,
            duration_ms=_int(meta.get("duration-ms")) or 0,
            loop=_int(meta.get("loop")),
        )

    async def page(
        self, tenant: str, *, limit: int, cursor: str | None
    ) -> tuple[list[TemplateInfo], str | None]:
        """One page of the tenant's own templates, then the public ones, each folder in id
        order (ListObjectsV2 from after the cursor's id, never a full listing).
        InvalidCursor for a cursor this store did not make."""
        folder, after = decode_cursor(cursor) if cursor else (_FOLDERS[0], "")
        infos: list[TemplateInfo] = []
        while True:
            owner = tenant if folder == "own" else PUBLIC_TENANT
            found, after = await self._list(owner, limit - len(infos), after)
            infos += found
            if after:
                return infos, encode_cursor(folder, after)
            if folder == "public":
                return infos, None
            folder = "public"  # the own folder is done: fill the page from the public one
            if len(infos) >= limit:  # a full page: a next one only if there is more to see
                return infos, encode_cursor(folder, "") if await self._any(PUBLIC_TENANT) else None

    async def _any(self, owner: str) -> bool:
        page = await self._s3.list_objects_v2(
            Bucket=self._bucket, Prefix=f"{PREFIX}{owner}/", MaxKeys=1
        )
        return bool(page.get("Contents"))

    async def _list(self, owner: str, limit: int, after: str) -> tuple[list[TemplateInfo], str]:
        """Up to ``limit`` templates of one folder after the id ``after``, and the last
        id listed when the folder goes on ("" at its end)."""
        prefix = f"{PREFIX}{owner}/"
        params: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": limit}
        if after:
            params["StartAfter"] = template_key(after, owner)
        page = await self._s3.list_objects_v2(**params)
        ids = [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
        heads = await asyncio.gather(*(self.head(tid, owner) for tid in ids))
        infos = [info for info in heads if info is not None]  # deleted between list and head
        return infos, ids[-1] if page.get("IsTruncated") and ids else ""

    async def fetch(self, key: str, etag: str) -> bytes:
        """The template's bytes, only as they were at ``etag`` (the version a job was
        queued with): TemplateChanged if it has another ETag now, TemplateMissing if
        it is gone."""
        try:
            response = await self._s3.get_object(Bucket=self._bucket, Key=key, IfMatch=etag)
        except ClientError as err:
            if is_not_found(err):
                raise TemplateMissing(key) from err
            if _error_code(err) == "PreconditionFailed":
                raise TemplateChanged(key) from err
            raise
        async with response["Body"] as body:
            return await body.read()


MAX_CACHED_TEMPLATES = 10_000  # bounded memory (invariant 7): the oldest entry goes first


class TemplateInfoCache:
    """``TemplateStore.find`` answers, kept for ``ttl_s`` seconds per (tenant, id), so a
    worker asks S3 about a template once per period, not once (or twice: own folder,
    then public) per meme. Concurrent misses share one lookup.

    Only found templates are kept: a missing one is asked for again every time, so a
    template uploaded just after a meme failed for want of it is seen at once. What a
    found entry can get wrong for up to ``ttl_s``: a template deleted meanwhile (the
    renderer's pinned-ETag fetch then fails the meme ``template_not_found``, as it would
    have had the delete come a moment later), deleted and uploaded again under its id
    (``template_changed``), or a tenant's new template of the same id as a public one
    (memes resolve to the public one until the entry expires)."""

    def __init__(
        self, store: TemplateStore, ttl_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, asyncio.Future[TemplateInfo | None]]]
        self._entries = {}

    async def find(self, template_id: str, tenant: str) -> TemplateInfo | None:
        key = (tenant, template_id)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            fetched_at, lookup = entry
            if not lookup.done() or (now - fetched_at < self._ttl_s and _found(lookup)):
                return await asyncio.shield(lookup)
        lookup = asyncio.ensure_future(self._store.find(template_id, tenant))
        self._entries.pop(key, None)
        if len(self._entries) >= MAX_CACHED_TEMPLATES:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (now, lookup)
        try:
            return await asyncio.shield(lookup)
        except BaseException:
            if self._entries.get(key, (0.0, None))[1] is lookup:
                del self._entries[key]
            raise


def _found(lookup: asyncio.Future[TemplateInfo | None]) -> bool:
    return not lookup.cancelled() and lookup.exception() is None and lookup.result() is not None
