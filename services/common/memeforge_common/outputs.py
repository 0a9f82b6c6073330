"""Rendered memes in S3 under ``memes/<tenant>/``: written by the renderer, presigned and
deleted by the api.

Keys come from the meme id only (models.output_key), never from a message, so a forged
or corrupted render job cannot make the renderer write over another object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memeforge_common.models import OUTPUT_FORMATS, MemeItem, output_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class OutputStore:
    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    async def save(
        self,
        meme_id: str,
        fmt: str,
        data: bytes,
        content_type: str,
        *,
        tenant: str = "",
        thumbnail: bool = False,
    ) -> str:
        """Write a meme's image (or thumbnail) under its derived key; returns the key."""
        key = output_key(meme_id, fmt, tenant=tenant, thumbnail=thumbnail)
        await self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        return key

    async def presigned_url(self, key: str, ttl_s: int) -> str:
        """An expiring GET URL: the bucket stays private."""
        return await self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=ttl_s
        )

    async def read(self, key: str, max_bytes: int) -> bytes | None:
        """An output's bytes (the notifier's inline thumbnail), or None when it is larger
        than ``max_bytes``."""
        response = await self._s3.get_object(Bucket=self._bucket, Key=key)
        async with response["Body"] as body:
            if response.get("ContentLength", 0) > max_bytes:
                return None
            return await body.read()

    async def delete_all(self, item: MemeItem) -> None:
        """Delete every object a meme can have: whatever its result names, and each key
        a render still in flight might write."""
        keys = {
            output_key(item.id, fmt, tenant=item.tenant, thumbnail=thumbnail)
            for fmt in OUTPUT_FORMATS
            for thumbnail in (False, True)
        }
        if item.result is not None:
            keys |= {item.result.key, item.result.thumbnail_key or item.result.key}
        await self._s3.delete_objects(
            Bucket=self._bucket,
            Delete={"Objects": [{"Key": key} for key in sorted(keys)], "Quiet": True},
        )
