"""The batch ZIP streams into multipart parts with bounded memory (fakes for the stores)."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from memeforge_common.fanout import batch_meme_id
from memeforge_common.models import Batch, BatchState, Failure, MemeResult, MemeState, MemeStatus
from memeforge_consumer import archive
from memeforge_consumer.archive import ArchiveWriter

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _batch(total: int) -> Batch:
    return Batch(
        id="cd" * 16,
        tenant="t",
        state=BatchState.ARCHIVING,
        total=total,
        created_at=NOW,
        updated_at=NOW,
    )


class FakeMemes:
    """Every item DONE with one shared output, except those in ``failed``."""

    def __init__(self, batch: Batch, failed: set[int]) -> None:
        self._seqs = {batch_meme_id(batch.id, seq): seq for seq in range(batch.total)}
        self._failed = failed

    async def statuses(self, ids: Sequence[str]) -> tuple[dict[str, MemeStatus], int]:
        found = {}
        for meme_id in ids:
            seq = self._seqs[meme_id]
            failed = seq in self._failed
            found[meme_id] = MemeStatus(
                id=meme_id,
                state=MemeState.FAILED if failed else MemeState.DONE,
                template_id="any",
                created_at=NOW,
                updated_at=NOW,
                state_times={},
                result=None
                if failed
                else MemeResult(key=f"k/{seq}.png", content_type="x", bytes=1, width=1, height=1),
                failure=Failure(reason="stuck") if failed else None,
            )
        return found, 1


class FakeOutputs:
    """Outputs by key; a multipart upload that keeps parts (or only their sizes)."""

    def __init__(self, images: dict[str, bytes], *, keep_parts: bool) -> None:
        self.images = images
        self.keep_parts = keep_parts
        self.parts: list[bytes] = []
        self.sizes: list[int] = []
        self.completed = False

    async def read(self, key: str, max_bytes: int) -> bytes | None:
        data = self.images[key]
        return data if len(data) <= max_bytes else None

    async def start_upload(self, key: str, content_type: str) -> str:
        return "upload"

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        assert number == len(self.sizes) + 1
        self.sizes.append(len(data))
        if self.keep_parts:
            self.parts.append(data)
        return f"etag{number}"

    async def complete_upload(self, key: str, upload_id: str, etags: list[str]) -> None:
        assert etags == [f"etag{i}" for i in range(1, len(self.sizes) + 1)]
        self.completed = True

    async def abort_upload(self, key: str, upload_id: str) -> None:
        raise AssertionError("not aborted in these tests")


async def test_the_zip_holds_every_done_output_in_parts_of_at_least_the_part_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(archive, "PART_BYTES", 64 * 1024)
    batch = _batch(30)
    images = {f"k/{seq}.png": os.urandom(10_000 + seq) for seq in range(30)}
    outputs = FakeOutputs(images, keep_parts=True)
    built = await ArchiveWriter(FakeMemes(batch, {4}), outputs).build(batch)  # type: ignore[arg-type]
    assert outputs.completed
    assert len(outputs.parts) > 3
    assert all(size >= 64 * 1024 for size in outputs.sizes[:-1])
    data = b"".join(outputs.parts)
    assert built.bytes == len(data)
    assert built.files == 29
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        assert zipped.testzip() is None
        names = [n for n in zipped.namelist() if n != "manifest.json"]
        assert len(names) == 29
        for name in names:
            seq = int(name.split("-")[0])
            assert zipped.read(name) == images[f"k/{seq}.png"]
        assert '"failure": "stuck"' in zipped.read("manifest.json").decode()


async def test_memory_stays_bounded_for_500_items() -> None:
    """docs/architecture.md "Memory: one part and four outputs": 500 outputs of 200 KB (a
    100 MB ZIP) are built holding a few parts' worth."""
    batch = _batch(500)
    shared = os.urandom(200_000)
    images = {f"k/{seq}.png": shared for seq in range(500)}
    outputs = FakeOutputs(images, keep_parts=False)
    tracemalloc.start()
    try:
        built = await ArchiveWriter(FakeMemes(batch, set()), outputs).build(batch)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert built.bytes > 100_000_000
    assert built.files == 500
    # One part being filled, its copy on the way out, and the images read ahead.
    assert peak < 3 * archive.PART_BYTES + archive.READ_AHEAD * len(shared)
