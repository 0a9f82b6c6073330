"""Rendered memes in S3 under ``memes/``: written by the renderer, presigned by the api.

Keys come from the meme id only (models.output_key), never from a message, so a forged
or corrupted render job cannot make the renderer write over another object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memeforge_common.models import output_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class OutputStore:
    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def save(
        self, meme_id: str, fmt: str, data: bytes, content_type: str, *, thumbnail: bool = False
    ) -> str:
        """Write a meme's image (or thumbnail) under its derived key; returns the key."""
        key = output_key(meme_id, fmt, thumbnail=thumbnail)
        await self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        return key

    async def presigned_url(self, key: str, ttl_s: int) -> str:
        """An expiring GET URL: the bucket stays private."""
        return await self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=ttl_s
        )
