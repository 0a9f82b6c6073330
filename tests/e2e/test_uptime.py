"""Liveness and shutdown of real renderer processes, with the production timings (20 s
long poll, 25 s shutdown grace counted from SIGTERM), against a slow or silent AWS staged
by the drills' TCP proxy.

- a full batch stuck on a stalled S3 keeps the liveness check green (the loop beats
  while it waits), and the worker's watchdog leaves it alone;
- SIGTERM while a message is held and a long poll is open: the process exits by itself
  before the platform's SIGKILL (shutdown grace + exit margin) and the held message is
  visible again at once (released, not hidden for the visibility timeout);
- a loop that really stops (SIGSTOP) turns the liveness check red;
- a renderer whose AWS has gone silent exits within the grace after SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aioboto3
import httpx
import pytest
import pytest_asyncio
from memeforge_common import timing
from memeforge_common.aws import client_config

from devenv.drills.tcpproxy import TcpProxy
from devenv.run.emulator import start_emulator
from devenv.run.proc import wait_until
from devenv.run.stack import Stack, start_stack

# One stack per backend for both tests: its async proxy lives on the module's loop.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# The production budget: SIGKILL comes this long after SIGTERM (compose: 40 s, k8s: 45 s).
SHUTDOWN_GRACE_S = timing.DEFAULTS["MEMEFORGE_SHUTDOWN_GRACE_S"]
STOP_GRACE_S = SHUTDOWN_GRACE_S + timing.EXIT_MARGIN_S
# Short, so that "really stuck" shows within seconds; the watchdog uses it too.
MAX_AGE_S = 8


@dataclass
class Drill:
    stack: Stack
    s3: TcpProxy  # the renderer's S3 goes through this; SQS and DynamoDB do not
    heartbeat: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def drill(tmp_path_factory: pytest.TempPathFactory, e2e_backend: str) -> AsyncIterator[Drill]:
    tmp_path = tmp_path_factory.mktemp(f"uptime-{e2e_backend}")
    emulator = await asyncio.to_thread(start_emulator, e2e_backend, workdir=tmp_path / "emu")
    s3, s3_url = await TcpProxy.in_front_of(emulator.env["AWS_ENDPOINT_URL"])
    heartbeat = tmp_path / "renderer-heartbeat"

    def renderer_through_the_proxy(stack: Stack) -> None:
        stack.service_env["renderer"] = {
            **stack.env,
            "AWS_ENDPOINT_URL_S3": s3_url,
            "MEMEFORGE_WORKER_CONCURRENCY": "2",
            "MEMEFORGE_HEARTBEAT_FILE": str(heartbeat),
            "MEMEFORGE_LIVENESS_MAX_AGE_S": str(MAX_AGE_S),
        }

    stack = await asyncio.to_thread(
        start_stack,
        tmp_path / "stack",
        emulator=emulator,
        settings={"MEMEFORGE_RENDER_PROCESSES": "2"},  # production timings otherwise
        prepare=renderer_through_the_proxy,
    )
    try:
        yield Drill(stack, s3, heartbeat)
    finally:
        s3.resume()
        await asyncio.to_thread(stack.stop)
        await s3.close()
        for name in ("renderer", "renderer-quiet", "renderer-silent"):
            log = stack.log_path(name)
            if log.exists():
                print(f"--- {name} log (tail) ---\n{log.read_text()[-3000:]}")


def _healthy(heartbeat: Path) -> bool:
    env = {**os.environ, "MEMEFORGE_HEARTBEAT_FILE": str(heartbeat)}
    cmd = [sys.executable, "-m", "memeforge_common.healthcheck", "--max-age", str(MAX_AGE_S)]
    return subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0


def _started(stack: Stack, name: str) -> None:
    log = stack.log_path(name)
    wait_until(
        lambda: log.exists() and "worker started" in log.read_text(),
        timeout=120,
        what=name,
        proc=stack.services[name],
    )


async def _wait_for_state(api: httpx.AsyncClient, meme_id: str, state: str) -> None:
    for _ in range(30):
        meme = (await api.get(f"/memes/{meme_id}", params={"wait": 5})).json()
        if meme["state"] == state:
            return
    raise AssertionError(f"meme {meme_id} never reached {state}")


async def _create(api: httpx.AsyncClient, template_id: str, caption: str) -> str:
    created = await api.post("/memes", json={"template_id": template_id, "top": caption})
    assert created.status_code == 202, created.text
    meme_id: str = created.json()["id"]
    return meme_id


async def test_liveness_and_shutdown_under_a_slow_and_a_silent_aws(drill: Drill) -> None:
    """README "Liveness": fail when a loop stops turning, "never because AWS is down"."""
    stack = drill.stack
    await asyncio.to_thread(_started, stack, "renderer")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as api:
        template_id = (await api.get("/templates")).json()["items"][0]["id"]

        # A full batch (2 of 2 slots) held by a stalled S3: busy, not stuck.
        drill.s3.stall()
        held = [await _create(api, template_id, f"held {i}") for i in range(2)]
        for meme_id in held:
            await _wait_for_state(api, meme_id, "RENDERING")
        for _ in range(2 * MAX_AGE_S // 4):  # sample across more than the max age
            assert await asyncio.to_thread(_healthy, drill.heartbeat)
            await asyncio.sleep(4)
        assert stack.services["renderer"].poll() is None  # the watchdog left it alone
        drill.s3.resume()
        for meme_id in held:
            await _wait_for_state(api, meme_id, "DONE")

        # SIGTERM with one message held (S3 stalled again) and a long poll open for the
        # second slot: the process exits by itself before SIGKILL, releasing the message.
        drill.s3.stall()
        last = await _create(api, template_id, "held at shutdown")
        await _wait_for_state(api, last, "RENDERING")
        status = await asyncio.to_thread(stack.stop_service, "renderer", grace=STOP_GRACE_S)
        assert status == 0  # not -9: it finished within the budget
        drill.s3.resume()

    session = aioboto3.Session(
        aws_access_key_id=stack.env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=stack.env.get("AWS_SECRET_ACCESS_KEY"),
        region_name=stack.env.get("AWS_REGION", "us-east-1"),
    )
    async with session.client(
        "sqs", endpoint_url=stack.env["AWS_ENDPOINT_URL"], config=client_config()
    ) as sqs:
        url = (await sqs.get_queue_url(QueueName="memeforge-renders"))["QueueUrl"]
        # The queue's visibility timeout is 60 s: seeing it now means it was handed back.
        response = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)
        assert [last in m["Body"] for m in response.get("Messages", [])] == [True]

    # A loop that really stops: the liveness check goes red.
    proc = stack.start_service("renderer-quiet")
    await asyncio.to_thread(
        wait_until, lambda: _healthy(drill.heartbeat), timeout=120, what="green", proc=proc
    )
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: not _healthy(drill.heartbeat),
            timeout=60,
            what="red liveness",
            proc=None,
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGCONT)
        await asyncio.to_thread(proc.wait)
        stack.services.pop("renderer-quiet")


async def test_a_renderer_whose_aws_went_silent_exits_within_the_grace(
    drill: Drill, tmp_path: Path
) -> None:
    """README "SIGTERM": within the grace "even when AWS cannot be reached".
    All of its AWS through a proxy that then forwards nothing: a long poll and its
    retries would hang for minutes; the shutdown budget cuts them off."""
    stack = drill.stack
    aws, aws_url = await TcpProxy.in_front_of(stack.env["AWS_ENDPOINT_URL"])
    try:
        stack.service_env["renderer-silent"] = {
            **stack.env,
            "AWS_ENDPOINT_URL": aws_url,
            "MEMEFORGE_HEARTBEAT_FILE": str(tmp_path / "silent-heartbeat"),
        }
        stack.start_service("renderer-silent")
        await asyncio.to_thread(_started, stack, "renderer-silent")
        aws.stall()  # its long poll under way, or the next one, now hangs in the silence
        status = await asyncio.to_thread(stack.stop_service, "renderer-silent", grace=STOP_GRACE_S)
        assert status == 0  # exited by itself, not killed at the end of the grace
    finally:
        aws.resume()
        await aws.close()
