"""CPU per meme of one queue worker (renderer or consumer) alone, read from /proc.

One service runs as a real process against the emulator (moto by default); the bench
writes N PENDING items itself, starts the service, waits until it idles, then puts the
N messages on its queue at once (render jobs for the renderer, requests for the
consumer) and waits until the queue is drained. CPU is read from /proc before the
messages and after the drain, so start-up (imports, pool spawn) is not counted: the
renderer's main process and its render pool apart. Each round starts a fresh service
on fresh resources; rounds alternate the settings compared (``--processes``).

    python -m bench.worker_cpu                                # renderer, 300 memes, 1 process
    python -m bench.worker_cpu --service consumer --memes 500
    python -m bench.worker_cpu --processes 1 2 --rounds 2     # alternated, same run
    python -m bench.worker_cpu --profile /tmp/renderer.prof   # + cProfile on CPU time

``--profile`` runs the service under ``bench.cpu_profile`` (cProfile timed by the
process's CPU clock, on only while the messages are handled); its overhead inflates the
figures, so a profiled round is for where the time goes, not for how much.

Prints a table and one JSON line: {"bench": "worker_cpu", "service": ..., "memes": N,
"load_avg": "...", "rows": [{"processes": P, "main_cpu_ms_per_meme": x,
"pool_cpu_ms_per_meme": y, "emulator_cpu_ms_per_meme": e, "memes_per_s": r, "done": d,
"ratio": main / first row's, "aws_calls_per_meme": c,
"aws_calls_per_meme_by_operation": {...}}]} (calls from the service's own
``memeforge_aws_requests_total``, every HTTP request counted, retries too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from memeforge_common.aws import AwsClients
from memeforge_common.bootstrap import bootstrap
from memeforge_common.items import MemeStore, new_item
from memeforge_common.models import (
    MemeItem,
    MemeState,
    RenderJob,
    RenderSpec,
    RequestMessage,
    classic_boxes,
    template_key,
)
from memeforge_common.queues import queue_url, send_batch
from memeforge_common.settings import Settings
from memeforge_common.templates import TemplateStore
from memeforge_common.tracing import new_traceparent, trace_attributes

from bench.scrape import aws_requests_by_operation
from devenv.run.emulator import Emulator, start_emulator
from devenv.run.proc import free_port, spawn, stop

MODULES = {"renderer": "memeforge_renderer", "consumer": "memeforge_consumer"}
TENANT = "bench"
TEMPLATE_ID = "bench-ocean"
SEED = Path(__file__).resolve().parents[1] / (
    "services/common/memeforge_common/seeds/ocean-waves.jpg"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def emulator_cpu_s(emulator: Emulator) -> float:
    """The emulator's processes and their children (DynamoDB Local's JVM), in seconds."""
    pids = [p.pid for p in emulator.processes]
    return sum(cpu_s(p) for p in pids + [c for p in pids for c in children(p)])


def aws_requests(port: int) -> Counter[str]:
    """The service's AWS requests so far by operation (its own metrics counter)."""
    return aws_requests_by_operation(f"http://127.0.0.1:{port}/metrics")


@dataclass
class Round:
    processes: int
    main_ms: float
    pool_ms: float
    seconds: float
    done: int
    calls: dict[str, float]  # AWS requests per meme by operation
    emulator_ms: float

    def row(self, memes: int, first_main_ms: float) -> dict[str, object]:
        return {
            "processes": self.processes,
            "main_cpu_ms_per_meme": round(self.main_ms, 3),
            "pool_cpu_ms_per_meme": round(self.pool_ms, 3),
            "emulator_cpu_ms_per_meme": round(self.emulator_ms, 3),
            "memes_per_s": round(memes / self.seconds, 1),
            "done": self.done,
            "ratio": round(self.main_ms / first_main_ms, 3),
            "aws_calls_per_meme": round(sum(self.calls.values()), 3),
            "aws_calls_per_meme_by_operation": self.calls,
        }


def resource_settings() -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        bucket=f"mf-bench-{suffix}",
        table=f"mf-bench-{suffix}",
        request_queue=f"mf-bench-{suffix}-requests",
        render_queue=f"mf-bench-{suffix}-renders",
        notification_queue=f"mf-bench-{suffix}-notifications",
    )


def service_env(
    emulator: Emulator, settings: Settings, processes: int, metrics_port: int
) -> dict[str, str]:
    return emulator.child_env(
        {
            "MEMEFORGE_METRICS_PORT": str(metrics_port),
            "MEMEFORGE_BUCKET": settings.bucket,
            "MEMEFORGE_TABLE": settings.table,
            "MEMEFORGE_REQUEST_QUEUE": settings.request_queue,
            "MEMEFORGE_RENDER_QUEUE": settings.render_queue,
            "MEMEFORGE_NOTIFICATION_QUEUE": settings.notification_queue,
            "MEMEFORGE_RENDER_PROCESSES": str(processes),
        }
    )


async def prepare(aws: AwsClients, settings: Settings, memes: int) -> tuple[list[MemeItem], str]:
    """A template and ``memes`` PENDING (counted) items on it, and the template's ETag."""
    data = SEED.read_bytes()
    etag = await TemplateStore(aws.s3, settings.bucket).upload(
        TEMPLATE_ID,
        tenant=TENANT,
        name=TEMPLATE_ID,
        data=data,
        content_type="image/jpeg",
        width=1,
        height=1,
    )
    store = MemeStore(aws.dynamodb, settings.table)
    items = [
        new_item(
            uuid.uuid4().hex,
            TEMPLATE_ID,
            RenderSpec(boxes=classic_boxes(f"bench {i}", "cpu per meme")),
            tenant=TENANT,
            counted=True,
        )
        for i in range(memes)
    ]
    # Counted, as the api writes them: the ending also frees the tenant's in-flight slot.
    for item in items:
        await store.create_counted(item, in_flight_cap=memes + 1)
    return items, etag


def bodies(service: str, items: list[MemeItem], etag: str) -> list[str]:
    if service == "consumer":
        return [RequestMessage.of(item).model_dump_json() for item in items]
    return [
        RenderJob(
            meme_id=item.id,
            template_key=template_key(TEMPLATE_ID, TENANT),
            template_etag=etag,
            spec=item.spec,
            tenant=TENANT,
            counted=True,
        ).model_dump_json()
        for item in items
        if item.spec is not None
    ]


async def drained(aws: AwsClients, url: str, timeout_s: float) -> None:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)  # type: ignore[arg-type]
        if all(int(found["Attributes"].get(n, "0")) == 0 for n in names):  # type: ignore[call-overload]
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"queue not drained within {timeout_s}s")


async def count_done(
    aws: AwsClients, settings: Settings, service: str, items: list[MemeItem]
) -> int:
    """Items the service moved on: DONE (renderer), or a job on the render queue (consumer)."""
    if service == "consumer":
        url = await queue_url(aws.sqs, settings.render_queue)
        found = await aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(found["Attributes"].get("ApproximateNumberOfMessages", "0"))
    store = MemeStore(aws.dynamodb, settings.table)
    done = 0
    for item in items:
        got = await store.get(item.id)
        done += got is not None and got.state is MemeState.DONE
    return done


def wait_started(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited ({proc.returncode}); see {log}")
        if log.exists() and "worker started" in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"service not started within {timeout_s}s; see {log}")


async def one_round(
    emulator: Emulator,
    service: str,
    memes: int,
    processes: int,
    workdir: Path,
    profile: Path | None,
) -> Round:
    settings = resource_settings()
    await bootstrap(settings, seed=False)
    async with AwsClients.open(settings) as aws:
        items, etag = await prepare(aws, settings, memes)
        queue = settings.request_queue if service == "consumer" else settings.render_queue
        url = await queue_url(aws.sqs, queue)
        log = workdir / f"{service}-{processes}-{uuid.uuid4().hex[:6]}.log"
        command = [sys.executable, "-m", MODULES[service]]
        if profile is not None:
            command = [sys.executable, "-m", "bench.cpu_profile", str(profile), MODULES[service]]
        port = free_port()
        env = service_env(emulator, settings, processes, port)
        proc = spawn(command, env=env, log_path=str(log))
        try:
            wait_started(log, proc)
            await asyncio.sleep(2.0)  # the pool warmed up, the first long polls are out
            pid = proc.pid
            pool = children(pid)
            if profile is not None:
                os.kill(pid, signal.SIGUSR1)
            calls_before = aws_requests(port)
            emulator_before = emulator_cpu_s(emulator)
            main_before = cpu_s(pid)
            pool_before = {p: cpu_s(p) for p in pool}
            started = time.monotonic()
            messages = bodies(service, items, etag)
            attributes = [trace_attributes(new_traceparent()) for _ in messages]
            await send_batch(aws.sqs, url, messages, attributes)
            await drained(aws, url, timeout_s=60 + memes / 2)
            seconds = time.monotonic() - started
            main_after = cpu_s(pid)
            pool_after = {p: cpu_s(p) for p in set(pool) | set(children(pid))}
            emulator_s = emulator_cpu_s(emulator) - emulator_before
            calls = aws_requests(port) - calls_before
            if profile is not None:
                os.kill(pid, signal.SIGUSR2)
            done = await count_done(aws, settings, service, items)
        finally:
            stop(proc, grace=30)
    pool_s = sum(s - pool_before.get(p, 0.0) for p, s in pool_after.items())
    return Round(
        processes,
        (main_after - main_before) * 1000 / memes,
        pool_s * 1000 / memes,
        seconds,
        done,
        {op: round(n / memes, 3) for op, n in sorted(calls.items())},
        emulator_s * 1000 / memes,
    )


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", choices=sorted(MODULES), default="renderer")
    parser.add_argument("--memes", type=int, default=300)
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backend", default="moto")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()

    load_before = load_avg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        emulator = start_emulator(args.backend, workdir=workdir)
        saved = dict(os.environ)
        os.environ.update(emulator.child_env())
        try:
            rounds = [
                asyncio.run(one_round(emulator, args.service, args.memes, p, workdir, args.profile))
                for _ in range(args.rounds)
                for p in args.processes
            ]
        finally:
            os.environ.clear()
            os.environ.update(saved)
            emulator.stop()
    first = rounds[0].main_ms
    rows = [r.row(args.memes, first) for r in rounds]
    print(f"{args.service}, {args.memes} memes, {args.backend}; load {load_before} -> {load_avg()}")
    print(
        "| processes | main CPU ms/meme | pool CPU ms/meme | emulator CPU ms/meme | memes/s "
        "| done | ratio | AWS calls/meme |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row, one in zip(rows, rounds, strict=True):
        by_op = ", ".join(f"{op} {n}" for op, n in one.calls.items())
        print(
            f"| {row['processes']} | {row['main_cpu_ms_per_meme']} | {row['pool_cpu_ms_per_meme']}"
            f" | {row['emulator_cpu_ms_per_meme']} | {row['memes_per_s']} | {row['done']}"
            f" | {row['ratio']}"
            f" | {row['aws_calls_per_meme']} ({by_op}) |"
        )
    print(
        json.dumps(
            {
                "bench": "worker_cpu",
                "service": args.service,
                "memes": args.memes,
                "backend": args.backend,
                "load_avg": f"{load_before} -> {load_avg()}",
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
