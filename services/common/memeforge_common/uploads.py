"""Direct uploads: a client POSTs template bytes straight to S3 under ``incoming/<tenant>/``.

The only code that reads or writes ``incoming/*``. S3 itself enforces the form's policy
(size range, image content type, the one key, expiry); the api then reads the object
once, bounded, to check it, and registers it as a template or deletes it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from pydantic import BaseModel

from memeforge_common.models import incoming_key
from memeforge_common.templates import is_not_found

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

_READ_CHUNK = 64 * 1024


class UploadMissing(LookupError):
    """Nothing was uploaded under that id for that tenant (or it is gone)."""


class UploadTooLarge(ValueError):
    """The object is larger than the limit (S3 did not enforce the form's policy)."""


class UploadForm(BaseModel):
    """A presigned POST: send ``fields`` and then the file as multipart/form-data to ``url``."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


class UploadStore:
    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def form(self, upload_id: str, *, tenant: str, max_bytes: int, ttl_s: int) -> UploadForm:
        """A presigned POST for exactly one key, 1..max_bytes bytes, Content-Type image/*
        (no AWS call: signed locally)."""
        key = incoming_key(upload_id, tenant)
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
        post = await self._s3.generate_presigned_post(
            Bucket=self._bucket,
            Key=key,
            Conditions=[
                {"key": key},
                ["content-length-range", 1, max_bytes],
                ["starts-with", "$Content-Type", "image/"],
            ],
            ExpiresIn=ttl_s,
        )
        fields = {name: str(value) for name, value in post["fields"].items()}
        return UploadForm(url=post["url"], fields=fields, expires_at=expires_at)

    async def read(self, upload_id: str, *, tenant: str, max_bytes: int) -> bytes:
        """The uploaded bytes, read at most ``max_bytes`` + 1 into memory."""
        try:
            response = await self._s3.get_object(
                Bucket=self._bucket, Key=incoming_key(upload_id, tenant)
            )
        except ClientError as err:
            if is_not_found(err):
                raise UploadMissing(upload_id) from err
            raise
        body = response["Body"]
        try:
            if response["ContentLength"] > max_bytes:
                raise UploadTooLarge(upload_id)
            chunks: list[bytes] = []
            size = 0
            async for chunk in body.iter_chunks(_READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:  # a length S3 reported wrong: never read on
                    raise UploadTooLarge(upload_id)
                chunks.append(chunk)
        finally:
            body.close()  # unread bytes are dropped with the connection, not read
        return b"".join(chunks)

    async def delete(self, upload_id: str, *, tenant: str) -> None:
        await self._s3.delete_object(Bucket=self._bucket, Key=incoming_key(upload_id, tenant))
