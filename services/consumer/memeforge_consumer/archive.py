"""A batch's ZIP: every DONE item's image, streamed into an S3 multipart upload.

Memory stays bounded whatever the batch's size: at most ``READ_AHEAD`` images (each at
most ``MAX_ARCHIVE_MEMBER_BYTES``) and one part (``PART_BYTES``, S3's 5 MiB minimum
rounded up) are held at once. The ZIP is written
by the standard library's ``zipfile`` into a writer that cannot seek, so every member
gets a data descriptor and nothing is rewritten; images are already compressed, so
members are STORED (no deflate CPU spent for nothing). The key is derived from the batch
id, so a rebuild (a builder that died part way) overwrites the same object.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from typing import Any

from memeforge_common.fanout import batch_meme_id
from memeforge_common.items import MemeStore
from memeforge_common.limits import MAX_ARCHIVE_MEMBER_BYTES
from memeforge_common.models import Batch, BatchArchive, MemeState, MemeStatus
from memeforge_common.outputs import OutputStore, archive_key

PART_BYTES = 8 * 1024 * 1024
READ_AHEAD = 4
_STATUS_CHUNK = 100


class PartBuffer:
    """What ``zipfile`` writes into: bytes gather here until the caller takes a part."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._written = 0

    def write(self, data: bytes, /) -> int:
        self._pending += data
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        """Nothing to flush: parts leave through ``take``."""

    def close(self) -> None:
        """Nothing to close: the ZIP's last bytes stay here for the last ``take``."""

    @property
    def pending(self) -> int:
        """Bytes not taken yet (not ``__len__``: zipfile tests its file for truth)."""
        return len(self._pending)

    def take(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data


def member_name(seq: int, status: MemeStatus) -> str:
    assert status.result is not None
    ext = status.result.key.rpartition(".")[2]
    return f"{seq:03d}-{status.id}.{ext}"


class ArchiveWriter:
    def __init__(self, memes: MemeStore, outputs: OutputStore) -> None:
        self._memes = memes
        self._outputs = outputs

    async def build(self, batch: Batch) -> BatchArchive:
        key = archive_key(batch.id, batch.tenant)
        upload_id = await self._outputs.start_upload(key, "application/zip")
        try:
            archive = await self._stream(batch, key, upload_id)
        except BaseException:
            await self._outputs.abort_upload(key, upload_id)
            raise
        return archive

    async def _stream(self, batch: Batch, key: str, upload_id: str) -> BatchArchive:
        buffer = PartBuffer()
        etags: list[str] = []
        manifest: dict[int, dict[str, Any]] = {}
        files = 0

        async def ship(*, last: bool = False) -> None:
            if buffer.pending >= PART_BYTES or (last and (buffer.pending or not etags)):
                etags.append(
                    await self._outputs.upload_part(key, upload_id, len(etags) + 1, buffer.take())
                )

        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
            for done in await self._statuses(batch):
                for seq, status in done:
                    manifest[seq] = _manifest_entry(seq, status)
                ready = [(seq, s) for seq, s in done if s.state is MemeState.DONE and s.result]
                for start in range(0, len(ready), READ_AHEAD):
                    chunk = ready[start : start + READ_AHEAD]
                    images = await asyncio.gather(
                        *(
                            self._outputs.read(s.result.key, MAX_ARCHIVE_MEMBER_BYTES)
                            for _, s in chunk
                            if s.result
                        )
                    )
                    for (seq, status), data in zip(chunk, images, strict=True):
                        if data is None:
                            manifest[seq]["file"] = None
                            manifest[seq]["skipped"] = "too_large"
                            continue
                        zipped.writestr(member_name(seq, status), data)
                        files += 1
                        await ship()
            zipped.writestr(
                "manifest.json", json.dumps({"batch": batch.id, "items": list(manifest.values())})
            )
        await ship(last=True)
        await self._outputs.complete_upload(key, upload_id, etags)
        return BatchArchive(key=key, bytes=buffer.tell(), files=files)

    async def _statuses(self, batch: Batch) -> list[list[tuple[int, MemeStatus]]]:
        """Every item's status, read consistently (the batch index lags), in chunks."""
        chunks = []
        for start in range(0, batch.total, _STATUS_CHUNK):
            seqs = range(start, min(batch.total, start + _STATUS_CHUNK))
            ids = {batch_meme_id(batch.id, seq): seq for seq in seqs}
            found, _ = await self._memes.statuses(list(ids))
            chunks.append(sorted((ids[i], status) for i, status in found.items()))
        return chunks


def _manifest_entry(seq: int, status: MemeStatus) -> dict[str, Any]:
    entry: dict[str, Any] = {"item": seq, "id": status.id, "state": status.state.value}
    if status.result is not None and status.state is MemeState.DONE:
        entry["file"] = member_name(seq, status)
    if status.failure is not None:
        entry["failure"] = status.failure.reason
    return entry
