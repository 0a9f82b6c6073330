"""Rendered memes in S3 under ``memes/<tenant>/``: written by the renderer, presigned and
deleted by the api; and each batch's stored request and ZIP archive under
``memes/<tenant>/batches/`` (models.batch_object_key).

Keys come from the meme id only (models.output_key), never from a message, so a forged
or corrupted render job cannot make the renderer write over another object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memeforge_common.limits import MAX_BATCH_REQUEST_BYTES
from memeforge_common.models import (
    OUTPUT_FORMATS,
    BatchRequest,
    MemeItem,
    batch_object_key,
    output_key,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

REQUEST_SUFFIX = "request.json"
ARCHIVE_SUFFIX = "zip"


def archive_key(batch_id: str, tenant: str) -> str:
    """Where a batch's ZIP is: derived from the batch, so a rebuild overwrites the same
    object and the notifier links it before the record says DONE."""
    return batch_object_key(batch_id, tenant, ARCHIVE_SUFFIX)


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

    async def save_batch_request(self, batch_id: str, tenant: str, request: BatchRequest) -> None:
        key = batch_object_key(batch_id, tenant, REQUEST_SUFFIX)
        await self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=request.model_dump_json().encode(),
            ContentType="application/json",
        )

    async def batch_request(self, batch_id: str, tenant: str) -> BatchRequest:
        key = batch_object_key(batch_id, tenant, REQUEST_SUFFIX)
        data = await self.read(key, MAX_BATCH_REQUEST_BYTES)
        if data is None:
            raise ValueError(f"batch request {batch_id} is over {MAX_BATCH_REQUEST_BYTES} bytes")
        return BatchRequest.model_validate_json(data)

    async def start_upload(self, key: str, content_type: str) -> str:
        """A multipart upload (for an object streamed in parts); returns its id."""
        response = await self._s3.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type
        )
        return response["UploadId"]

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        response = await self._s3.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return response["ETag"]

    async def complete_upload(self, key: str, upload_id: str, etags: list[str]) -> None:
        parts: Any = [{"PartNumber": i, "ETag": etag} for i, etag in enumerate(etags, 1)]
        await self._s3.complete_multipart_upload(
            Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    async def abort_upload(self, key: str, upload_id: str) -> None:
        await self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
