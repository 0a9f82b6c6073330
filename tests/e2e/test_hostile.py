"""Hostile inputs against the running stack (issue #18): one crafted meme must not hurt the
renderer, and a pool process killed mid-render is replaced with the job retried."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from devenv.run.proc import wait_until
from devenv.run.stack import Stack
from tests.support.memes import wait_until_settled

pytestmark = pytest.mark.e2e

HUGE_SIDE = 6324  # the 169 KB PNG: just under the 40 Mpx source limit
POOL_PROCESS_BUDGET_KB = 1024 * 1024  # k8s: 2 Gi for 2 pool processes and the parent


def pool_processes(renderer_pid: int) -> list[int]:
    """The renderer's pool processes (spawned children; not multiprocessing's tracker)."""
    children = Path(f"/proc/{renderer_pid}/task/{renderer_pid}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 140)).save(out, "PNG")
    return out.getvalue()


async def upload(api: httpx.AsyncClient, template_id: str, data: bytes) -> None:
    response = await api.post(
        "/templates",
        data={"name": template_id, "id": template_id},
        files={"file": (f"{template_id}.png", data, "image/png")},
    )
    assert response.status_code in (201, 409), response.text


def full_boxes(n: int, rotation: float = 0.0) -> list[dict[str, Any]]:
    return [
        {"text": f"hostile box {i}", "x": 0, "y": 0, "width": 1, "height": 1, "rotation": rotation}
        for i in range(n)
    ]


async def meme(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    created = await api.post("/memes", json=body)
    assert created.status_code == 202, created.text
    meme_id: str = created.json()["id"]
    return meme_id


async def test_a_crafted_meme_fails_typed_and_the_renderer_carries_on(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """README "Permanent errors fail fast": an undecodable image ends FAILED."""
    renderer = stack.services["renderer"]
    await upload(api, "hostile-huge", png(HUGE_SIDE, HUGE_SIDE))
    huge = await meme(api, {"template_id": "hostile-huge", "boxes": full_boxes(16)})
    turned = await meme(
        api,
        {"template_id": "hostile-huge", "boxes": full_boxes(16, 30), "max_side": 4000},
    )
    settled = [await wait_until_settled(api, m) for m in (huge, turned)]
    assert [m["state"] for m in settled] == ["FAILED", "FAILED"]
    assert settled[0]["failure"]["reason"] == "output_too_large"
    assert settled[1]["failure"]["reason"] == "too_expensive"

    pool = pool_processes(renderer.pid)
    assert pool
    assert all(peak_rss_kb(pid) < POOL_PROCESS_BUDGET_KB for pid in pool)
    normal = await meme(api, {"template_id": "sunset-hills", "top": "still", "bottom": "here"})
    assert (await wait_until_settled(api, normal))["state"] == "DONE"
    assert renderer.poll() is None  # the same renderer did it
    assert pool_processes(renderer.pid) == pool  # and no pool process had to be replaced


async def test_a_pool_process_killed_mid_render_is_replaced_and_the_job_is_done(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    renderer = stack.services["renderer"]
    await upload(api, "hostile-slow", png(1600, 1200))
    before = set(pool_processes(renderer.pid))
    for pid in before:  # frozen: whatever render reaches them stays mid-way
        os.kill(pid, signal.SIGSTOP)
    slow = await meme(api, {"template_id": "hostile-slow", "top": "killed", "bottom": "mid-render"})
    state = "PENDING"
    while state == "PENDING":  # the long poll answers on each state change
        state = (await api.get(f"/memes/{slow}", params={"wait": 10})).json()["state"]
    assert state == "RENDERING"
    for pid in before:
        os.kill(pid, signal.SIGKILL)

    done = await wait_until_settled(api, slow)
    assert done["state"] == "DONE", done
    assert done["attempts"] >= 2, done  # the killed attempt, then the retry
    assert renderer.poll() is None
    # The idle process killed beside it is found dead by the next job that takes it
    # (that job is retried); later memes are DONE and both processes end up replaced.
    for n in range(2):
        later = await meme(api, {"template_id": "hostile-slow", "top": f"after {n}"})
        assert (await wait_until_settled(api, later))["state"] == "DONE"
    # Every killed process is replaced (the last replacement may still be starting).
    await asyncio.to_thread(
        wait_until,
        lambda: len(pool_processes(renderer.pid)) == len(before),
        timeout=60,
        what="replaced pool processes",
        proc=renderer,
    )
    assert not set(pool_processes(renderer.pid)) & before


API_BUDGET_KB = 512 * 1024  # k8s: the api's memory limit


async def test_concurrent_large_uploads_all_get_an_answer_within_the_api_memory(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    data = png(HUGE_SIDE, HUGE_SIDE)  # each decode alone adds ~155 MB
    responses = await asyncio.gather(
        *(
            api.post(
                "/templates",
                data={"name": f"big {i}", "id": f"hostile-big-{i}"},
                files={"file": ("big.png", data, "image/png")},
                timeout=300,
            )
            for i in range(6)
        )
    )
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    assert stack.services["api"].poll() is None
    assert peak_rss_kb(stack.services["api"].pid) < API_BUDGET_KB
