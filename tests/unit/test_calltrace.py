"""bench.calltrace and bench.loopprobe: the tail tracing of bench.pipeline / bench.waiting."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from bench import calltrace, loopprobe

pytestmark = pytest.mark.unit

MEME = "a" * 32
OTHER = "b" * 32


def _line(op: str, t0: float, t1: float, **extra: Any) -> str:
    return json.dumps({"op": op, "t0": t0, "t1": t1} | extra)


def test_a_memes_stages_are_found_in_each_services_calls(tmp_path: Path) -> None:
    """Records as the hook writes them, one file per process: each stage is the first
    call of its kind that carried the meme, in the process that owns that stage."""
    api, consumer, renderer = 101, 102, 103
    (tmp_path / f"{api}.jsonl").write_text(
        "\n".join(
            [
                _line("PutItem", 1.000, 1.010, ids=[MEME], state="PENDING"),
                _line("SendMessageBatch", 1.010, 1.020, ids=[OTHER, MEME], url="requests"),
            ]
        )
    )
    (tmp_path / f"{consumer}.jsonl").write_text(
        "\n".join(
            [
                _line("ReceiveMessage", 0.5, 1.030, ids=[MEME], url="requests"),
                _line("UpdateItem", 1.031, 1.040, ids=[MEME], state="QUEUED"),
                _line("SendMessageBatch", 1.041, 1.050, ids=[MEME], url="render"),
                _line("stall", 1.2, 1.5, cpu_ms=10.0, runq_ms=280.0),
            ]
        )
    )
    (tmp_path / f"{renderer}.jsonl").write_text(
        "\n".join(
            [
                _line("ReceiveMessage", 0.9, 1.400, ids=[MEME], url="render"),
                _line("UpdateItem", 1.401, 1.410, ids=[MEME], state="RENDERING"),
                _line("PutObject", 1.420, 1.430, ids=[f"memes/t1/{MEME}.jpg"]),
                _line("UpdateItem", 1.430, 1.440, ids=[MEME], state="DONE"),
                _line("UpdateItem", 1.450, 1.460, ids=[MEME], state="DONE"),  # a redelivery
            ]
        )
    )
    names = {api: "api", consumer: "consumer", renderer: "renderer"}
    records = calltrace.load(tmp_path, names)

    stages = calltrace.timelines(records, {MEME})[MEME]

    assert {name: (r.service, r.t1) for name, r in stages.items()} == {
        "PENDING written": ("api", 1.010),
        "request sent": ("api", 1.020),
        "request received": ("consumer", 1.030),
        "QUEUED written": ("consumer", 1.040),
        "render job sent": ("consumer", 1.050),
        "render job received": ("renderer", 1.400),
        "RENDERING written": ("renderer", 1.410),
        "image stored": ("renderer", 1.430),
        "DONE written": ("renderer", 1.440),
    }
    slowest = calltrace.explain(records, {MEME: (0.995, 1.025)}, top=1)
    took = {step["stage"]: step["took_ms"] for step in slowest[0]["stages"]}
    assert slowest[0]["total_ms"] == pytest.approx(445.0)
    assert took["render job received"] == pytest.approx(350.0)  # the renderer's wait


def _stalls(block: Any) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        stalls: list[dict[str, Any]] = []
        probe = asyncio.create_task(loopprobe.watch(stalls.append))
        await asyncio.sleep(0.05)  # the probe is running
        block()
        await asyncio.sleep(0.05)  # it wakes, late
        probe.cancel()
        return stalls

    return asyncio.run(main())


def test_a_blocked_loop_is_a_stall_and_sleeping_is_not_cpu() -> None:
    stalls = _stalls(lambda: time.sleep(0.2))

    assert len(stalls) >= 1
    longest = max(stalls, key=lambda s: s["t1"] - s["t0"])
    # the block, less the tick the probe was sleeping when it began
    assert longest["t1"] - longest["t0"] >= 0.2 - 2 * loopprobe.TICK_S
    assert longest["cpu_ms"] < 100  # it slept: neither its own work nor waiting for a CPU


def test_a_stall_of_own_work_shows_as_cpu() -> None:
    def spin() -> None:
        until = time.thread_time() + 0.2
        while time.thread_time() < until:
            pass

    stalls = _stalls(spin)

    assert max(s["cpu_ms"] for s in stalls) >= 190


def test_slow_calls_of_several_processes_ending_together_are_one_emulator_stall() -> None:
    """The LocalStack freeze seen at 50 % load: S3 and SQS calls of three processes
    started apart and all ended together, while DynamoDB Local answered as usual."""
    r = calltrace.Record
    records = [
        r("renderer", "PutObject", 10.00, 10.49, aws="s3"),
        r("api", "SendMessageBatch", 10.05, 10.50, aws="sqs"),
        r("consumer", "DeleteMessageBatch", 10.25, 10.495, aws="sqs"),
        r("renderer", "TransactWriteItems", 10.30, 10.33, aws="dynamodb"),
        r("consumer", "ReceiveMessage", 5.0, 10.50, aws="sqs"),  # a long poll: not a stall
        r("api", "PutObject", 12.0, 12.4, aws="s3"),  # slow, but alone: not counted
    ]
    emulators = {"sqs": "localstack", "s3": "localstack", "dynamodb": "dynamodb-local"}

    stalls = calltrace.emulator_stalls(records, emulators)

    assert len(stalls) == 1
    assert stalls[0].services == ("s3", "sqs")
    assert stalls[0].processes == {"renderer", "api", "consumer"}
    assert [o.op for o in stalls[0].others] == ["TransactWriteItems"]


def test_the_process_sampler_sees_a_process_working() -> None:
    sampler = calltrace.ProcessSampler({"self": os.getpid()}, every_s=0.02)
    sampler.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    until = time.thread_time() + 0.3
    while time.thread_time() < until:
        pass
    t1 = time.monotonic()
    time.sleep(0.1)
    sampler.stop()

    cpu, _ = sampler.usage("self", t0, t1)
    assert cpu >= 300  # at least the spinning thread's own 300 ms
