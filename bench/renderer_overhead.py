"""The renderer main process's CPU per meme outside the AWS SDK.

bench/worker_cpu.py measures the renderer main against an emulator, SDK included (about
5 of its 6 ms per meme). This bench puts instant in-process stand-ins where the SDK
clients were (SQS hands out the queued jobs, DynamoDB and S3 answer at once) and runs
the real thing otherwise: QueueWorker, Renderer, RenderingMark, Endings, MemeStore's
write building, the real render pool (one process) and JSON logging. What it reads
(``time.process_time`` of the main process, warm-up excluded, the pool apart) is what
the renderer's own code costs per meme: the part the SDK work does not touch.

    python -m bench.renderer_overhead                      # 500 memes, 5 rounds
    python -m bench.renderer_overhead --tree /tmp/base     # alternate with another tree

``--tree DIR`` (a checkout or ``git archive`` of another commit) runs every round twice,
once on DIR's services and once on this tree's, alternated, for before/after figures
from one run. Prints a table and one JSON line: {"bench": "renderer_overhead", "memes":
N, "load_avg": ..., "rows": [{"tree": ..., "main_cpu_ms_per_meme": median, "all": [...],
"ratio": x}]}, ratio against the first tree (``--tree``'s when given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import uvloop
from memeforge_common.animation import AnimationLimits
from memeforge_common.endings import Endings
from memeforge_common.items import MemeStore
from memeforge_common.logs import configure_logging
from memeforge_common.models import RenderJob, RenderSpec, classic_boxes, template_key
from memeforge_common.outputs import OutputStore
from memeforge_common.publishers import NotificationPublisher
from memeforge_common.templates import TemplateStore
from memeforge_common.tracing import new_traceparent, trace_attributes
from memeforge_common.worker import QueueWorker, per_message
from memeforge_renderer.cache import TemplateBytesCache
from memeforge_renderer.pool import PoolCaches, RenderPool
from memeforge_renderer.worker import Renderer

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "services/common/memeforge_common/seeds/ocean-waves.jpg"
KEY, ETAG = template_key("bench-ocean", "bench"), '"bench-etag"'
WARM_UP = 20


class _Errors:
    class ConditionalCheckFailedException(Exception):
        pass

    class TransactionCanceledException(Exception):
        pass


class InstantSQS:
    """Hands out queued messages; deletes and sends succeed at once."""

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] = deque()
        self.deleted = 0
        self._deletes = asyncio.Condition()

    async def wait_deleted(self, count: int) -> None:
        async with self._deletes:
            await self._deletes.wait_for(lambda: self.deleted >= count)

    async def receive_message(self, **request: Any) -> dict[str, Any]:
        await asyncio.sleep(0)  # a response arrives on a later turn of the loop
        count = min(request["MaxNumberOfMessages"], len(self.messages))
        if not count:
            await asyncio.sleep(0.05)
        return {"Messages": [self.messages.popleft() for _ in range(count)]}

    async def delete_message_batch(self, **request: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        async with self._deletes:
            self.deleted += len(request["Entries"])
            self._deletes.notify_all()
        return {"Successful": [{"Id": entry["Id"]} for entry in request["Entries"]]}

    async def send_message_batch(self, **request: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"Successful": [{"Id": entry["Id"]} for entry in request["Entries"]]}

    async def change_message_visibility_batch(self, **request: Any) -> dict[str, Any]:
        return {}


class InstantAws:
    """DynamoDB and S3: every write succeeds at once."""

    exceptions = _Errors

    async def _done(self, **request: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"ETag": ETAG}

    transact_write_items = update_item = put_object = _done


def job_messages(count: int) -> list[dict[str, Any]]:
    """Render jobs as the consumer sends them (counted, traced), as SQS returns them."""
    messages = []
    for i in range(count):
        job = RenderJob(
            meme_id=uuid.uuid4().hex,
            template_key=KEY,
            template_etag=ETAG,
            spec=RenderSpec(boxes=classic_boxes(f"bench {i}", "cpu per meme")),
            tenant="bench",
            counted=True,
        )
        messages.append(
            {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": uuid.uuid4().hex * 4,
                "Body": job.model_dump_json(),
                "Attributes": {"ApproximateReceiveCount": "1"},
                "MessageAttributes": trace_attributes(new_traceparent()),
            }
        )
    return messages


async def measure(memes: int) -> float:
    """Main-process CPU ms per meme over ``memes`` jobs (after a warm-up), until the
    last one is deleted."""
    sqs, aws = InstantSQS(), InstantAws()
    pool = RenderPool(1, PoolCaches())
    await pool.start()
    store = MemeStore(aws, "table")  # type: ignore[arg-type]
    cache = TemplateBytesCache(10_000_000)
    cache.put(KEY, ETAG, SEED.read_bytes())
    renderer = Renderer(
        store,
        TemplateStore(aws, "bucket"),  # type: ignore[arg-type]
        OutputStore(aws, "bucket"),  # type: ignore[arg-type]
        pool,
        cache,
        Endings(store, NotificationPublisher(sqs, "notifications")),  # type: ignore[arg-type]
        max_source_pixels=50_000_000,
        animation_limits=AnimationLimits(),
    )
    worker = QueueWorker(
        sqs,  # type: ignore[arg-type]
        "renders",
        per_message(renderer.handle),
        concurrency=16,
        gather_s=0.05,
    )
    running = asyncio.create_task(worker.run())
    try:
        sqs.messages.extend(job_messages(WARM_UP))
        timed = job_messages(memes)
        await sqs.wait_deleted(WARM_UP)
        started = time.process_time()
        sqs.messages.extend(timed)
        await sqs.wait_deleted(WARM_UP + memes)  # settled, and deleted (the Deleter's cost)
        return (time.process_time() - started) * 1000 / memes
    finally:
        worker.stop()
        await running
        await pool.close()


def child(memes: int) -> None:
    configure_logging("renderer", "INFO", "json")  # to stderr: the parent discards it
    print(json.dumps({"main_cpu_ms_per_meme": uvloop.run(measure(memes))}))


def run_round(tree: Path | None, memes: int) -> float:
    env = dict(os.environ)
    if tree is not None:
        paths = [str(tree / "services" / s) for s in ("common", "renderer")]
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "bench.renderer_overhead", "--child", str(memes)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=300,
    )
    return float(json.loads(done.stdout.splitlines()[-1])["main_cpu_ms_per_meme"])


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=None, help="another tree to alternate with")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    trees: list[Path | None] = [args.tree, None] if args.tree else [None]
    names = [str(t) if t else "this tree" for t in trees]
    load_before = load_avg()
    results: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for tree, name in zip(trees, names, strict=True):
            results[name].append(run_round(tree, args.memes))
    first = statistics.median(results[names[0]])
    rows = [
        {
            "tree": name,
            "main_cpu_ms_per_meme": round(statistics.median(values), 3),
            "all": [round(v, 3) for v in values],
            "ratio": round(statistics.median(values) / first, 3),
        }
        for name, values in results.items()
    ]
    load = f"{load_before} -> {load_avg()}"
    print(f"renderer main CPU outside the SDK, {args.memes} memes x {args.rounds}; load {load}")
    print("| tree | main CPU ms/meme (median) | rounds | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['tree']} | {row['main_cpu_ms_per_meme']} | {row['all']} | {row['ratio']} |")
    print(
        json.dumps(
            {"bench": "renderer_overhead", "memes": args.memes, "load_avg": load, "rows": rows}
        )
    )


if __name__ == "__main__":
    main()
