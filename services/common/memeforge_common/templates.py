"""Templates live in S3 under ``templates/<id>``; their facts ride in object metadata.

That includes the template's default text boxes (its layout), so image and layout are
written in one PutObject and can never disagree. S3 caps user metadata at 2 KiB, which
bounds a layout; boxes are stored without their (empty) text and default fields.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError
from pydantic import TypeAdapter, ValidationError

from memeforge_common.limits import MAX_LAYOUT_METADATA_BYTES
from memeforge_common.models import CLASSIC_LAYOUT, TextBox, template_key
from memeforge_common.tenancy import PUBLIC_TENANT

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

PREFIX = "templates/"

_BOXES = TypeAdapter(tuple[TextBox, ...])


class LayoutTooLarge(ValueError):
    pass


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


@dataclass(frozen=True)
class TemplateInfo:
    id: str
    tenant: str
    name: str
    content_type: str
    width: int
    height: int
    bytes: int
    etag: str
    last_modified: datetime
    layout: tuple[TextBox, ...] | None = None  # None: the classic top/bottom layout

    @property
    def key(self) -> str:
        return template_key(self.id, self.tenant)

    @property
    def boxes(self) -> tuple[TextBox, ...]:
        """The default text boxes of this template (empty text)."""
        return self.layout or CLASSIC_LAYOUT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_not_found(err: ClientError) -> bool:
    code = err.response.get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


class InvalidTemplateCursor(ValueError):
    """A cursor this store did not hand out."""


def _parse_cursor(cursor: str | None) -> tuple[str, str]:
    if not cursor:
        return "own", ""
    folder, sep, token = cursor.partition(":")
    if not sep or folder not in ("own", "public"):
        raise InvalidTemplateCursor(cursor)
    return folder, token


class TemplateMissing(LookupError):
    """No template under that key."""


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
    ) -> str:
        """Store a template; returns its ETag. S3 metadata is ASCII-only, so names are quoted."""
        metadata = {"name": quote(name), "width": str(width), "height": str(height)}
        if layout:
            metadata["layout"] = encode_layout(layout)
        response = await self._s3.put_object(
            Bucket=self._bucket,
            Key=template_key(template_id, tenant),
            Body=data,
            ContentType=content_type,
            Metadata=metadata,
        )
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
        )

    async def page(
        self, tenant: str, *, limit: int, cursor: str | None
    ) -> tuple[list[TemplateInfo], str | None]:
        """One page of the tenant's own templates, then the public ones, via ListObjectsV2
        continuation tokens (never a full listing). The cursor says which folder it is in:
        ``own:<token>`` or ``public:<token>`` (an empty token starts that folder)."""
        folder, token = _parse_cursor(cursor)
        infos: list[TemplateInfo] = []
        while True:
            owner = tenant if folder == "own" else PUBLIC_TENANT
            found, token = await self._list(owner, limit - len(infos), token)
            infos += found
            if token:
                return infos, f"{folder}:{token}"
            if folder == "public":
                return infos, None
            folder = "public"  # the own folder is done: fill the page from the public one
            if len(infos) >= limit:
                return infos, "public:"

    async def _list(self, owner: str, limit: int, token: str) -> tuple[list[TemplateInfo], str]:
        """Up to ``limit`` templates of one folder, and the token to go on ("" at its end)."""
        prefix = f"{PREFIX}{owner}/"
        params: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": limit}
        if token:
            params["ContinuationToken"] = token
        page = await self._s3.list_objects_v2(**params)
        ids = [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
        heads = await asyncio.gather(*(self.head(tid, owner) for tid in ids))
        infos = [info for info in heads if info is not None]  # deleted between list and head
        return infos, page.get("NextContinuationToken", "") if page.get("IsTruncated") else ""

    async def fetch(self, key: str) -> tuple[bytes, str]:
        """A template's bytes and the ETag they have; TemplateMissing when there is none."""
        try:
            response = await self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as err:
            if is_not_found(err):
                raise TemplateMissing(key) from err
            raise
        async with response["Body"] as body:
            data = await body.read()
        return data, response["ETag"]
