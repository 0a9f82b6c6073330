"""Waiting benchmark: what 1,000 waiting clients cost one api process (``make bench-waiting``).

One emulator (LocalStack backend by default: S3 + SQS on LocalStack, DynamoDB Local),
then for each column an api process of its own on it:

* **watcher**: the api of this tree (one watcher per process: change feed + batched
  consistent reads);
* **baseline**: the api as it was before the watcher (``git worktree`` of the commit
  before ``watcher.py`` appeared, put first on the api's PYTHONPATH): each waiting
  request polls its own GetItem, 50 ms backing off to 500 ms;
* any ``--against NAME=REF``: the api of that git commit, the same way (e.g. the
  polling-only watcher, to compare with the change feed).

Per column: ``--memes`` memes written QUEUED; ``--waiters`` clients with one API key (half long-poll
``?wait=20``, re-asked until DONE; half SSE ``/events``), spread evenly over the memes;
an idle phase (nothing moves); then the bench itself moves the memes RENDERING → DONE
at ``--rate`` per second with the same conditional writes the renderer makes (so no
render CPU shares the machine with the api). It reports the api's CPU seconds from
/proc (per 1,000 waiters, idle and while memes finish), the DynamoDB calls and items
the api made (counted inside the api process by a sitecustomize hook on aiobotocore,
the same hook for both columns), and DONE → seen: from the DONE write returning to the
client parsing it. Prints a table, the machine's load, and one JSON line.

    python -m bench.waiting                       # 1,000 waiters, watcher and baseline
    python -m bench.waiting --against polling=63f35ea
    python -m bench.waiting --waiters 200 --no-baseline --backend moto
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for sub in ("services/common", "services/api", "."):
    sys.path.insert(0, str(ROOT / sub))

from memeforge_common.apikeys import ALL_SCOPES, KeyStore  # noqa: E402
from memeforge_common.aws import AwsClients  # noqa: E402
from memeforge_common.bootstrap import bootstrap  # noqa: E402
from memeforge_common.items import MemeStore, new_item  # noqa: E402
from memeforge_common.models import MemeState, RenderSpec, classic_boxes  # noqa: E402
from memeforge_common.settings import Settings  # noqa: E402

from bench import loopprobe  # noqa: E402
from devenv.run.emulator import start_emulator  # noqa: E402
from devenv.run.proc import free_port, http_ok, spawn, stop, wait_until  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Counts every AWS call (and the items it returned) inside the api process,
# written to $BENCH_COUNTS every 0.2 s: the same instrument for both columns.
SITECUSTOMIZE = """
import json, os, threading, time
from collections import Counter
from aiobotocore.client import AioBaseClient
_calls, _items = Counter(), Counter()
# aiobotocore's clients and memeforge's lean ones (memeforge_common.leanclients) each
# have one door every call goes through: _make_api_call(operation, params).
_doors = {AioBaseClient: AioBaseClient._make_api_call}
try:
    from memeforge_common.leanclients import LeanClient
    _doors[LeanClient] = LeanClient._make_api_call
except ImportError:  # a tree from before the lean transport
    pass
def _orig(self, operation, params):
    door = next(d for d in _doors if isinstance(self, d))
    return _doors[door](self, operation, params)
async def _counted(self, operation, params):
    response = await _orig(self, operation, params)
    _calls[operation] += 1
    if operation == "GetItem":
        _items[operation] += int("Item" in response)
    elif operation == "BatchGetItem":
        _items[operation] += sum(len(v) for v in response.get("Responses", {}).values())
    return response
for _door in _doors:
    _door._make_api_call = _counted
def _dump():
    path = os.environ["BENCH_COUNTS"]
    while True:
        with open(path + ".tmp", "w") as f:
            json.dump({"calls": dict(_calls), "items": dict(_items)}, f)
        os.replace(path + ".tmp", path)
        time.sleep(0.2)
threading.Thread(target=_dump, daemon=True).start()
"""
# With --trace, also every DynamoDB read's start and end and the ids it returned DONE
# (CLOCK_MONOTONIC: the bench's clock too), and the api's event-loop stalls
# (bench.loopprobe, with the loop's CPU and run-queue time) and garbage collections over
# 5 ms, as JSON lines to $BENCH_TRACE.
TRACE_HOOK = """
import asyncio
import loopprobe
_trace = open(os.environ["BENCH_TRACE"], "a", buffering=1)
_probing = []
import gc
_gc_start = []
def _gc(phase, info):
    if phase == "start":
        _gc_start[:] = [time.monotonic()]
    elif _gc_start and time.monotonic() - _gc_start[0] > 0.005:
        record = {"op": "gc", "gen": info["generation"], "t0": _gc_start[0], "t1": time.monotonic()}
        _trace.write(json.dumps(record) + "\\n")
gc.callbacks.append(_gc)
def _done_ids(operation, response):
    if operation == "BatchGetItem":
        items = [i for v in response.get("Responses", {}).values() for i in v]
    else:
        items = response.get("Items", []) + ([response["Item"]] if "Item" in response else [])
    return [i["id"]["S"] for i in items if i.get("state", {}).get("S") == "DONE"]
async def _traced(self, operation, params):
    if not _probing:
        report = lambda stall: _trace.write(json.dumps(stall) + "\\n")
        _probing.append(asyncio.get_running_loop().create_task(loopprobe.watch(report)))
    t0 = time.monotonic()
    response = await _counted(self, operation, params)
    if operation in ("Query", "BatchGetItem", "GetItem"):
        record = {"op": operation, "t0": t0, "t1": time.monotonic()}
        record["done"] = _done_ids(operation, response)
        _trace.write(json.dumps(record) + "\\n")
    return response
for _door in _doors:
    _door._make_api_call = _traced
"""
DYNAMO_OPS = ("GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem")
TENANT = "bench"
# Each other column over this tree's, in the JSON line.
RATIO_KEYS = (
    "idle_cpu_pct_per_1k_waiters",
    "idle_dynamodb_calls_per_s",
    "finish_cpu_pct_per_1k_waiters",
    "finish_dynamodb_calls_per_s",
    "done_to_seen_p99_ms",
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Phase:
    seconds: float = 0.0
    cpu_s: float = 0.0
    calls: int = 0
    items: int = 0


@dataclass
class Column:
    name: str
    idle: Phase = field(default_factory=Phase)
    finish: Phase = field(default_factory=Phase)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # by client kind
    seen: list[tuple[str, str, float]] = field(default_factory=list)
    calls_by_operation: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    # Per meme: (request sent, answer read, state) of each long-poll request or SSE event
    # (an event's "sent" is its stream's), and (DONE write sent, returned).
    answers: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)
    done_writes: dict[str, tuple[float, float]] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)  # the api's, with --trace
    # The bench's own event-loop stalls, with --trace: a client "sees" late in them.
    client_stalls: list[dict[str, Any]] = field(default_factory=list)


class Api:
    def __init__(self, env: dict[str, str], counts: Path, workdir: Path, name: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.counts = counts
        self.trace = workdir / f"{name}.trace.jsonl"
        env = env | {
            "MEMEFORGE_API_PORT": str(self.port),
            "MEMEFORGE_LOG_LEVEL": "WARNING",
            "BENCH_COUNTS": str(counts),
            "BENCH_TRACE": str(self.trace),
            "MEMEFORGE_METRICS_PORT": str(self.metrics_port),
        }
        self.proc = spawn(
            [sys.executable, "-m", "memeforge_api"], env=env, log_path=str(workdir / f"{name}.log")
        )
        wait_until(http_ok(f"{self.url}/healthz"), timeout=60, what=name, proc=self.proc)

    async def until_connected(self, waiters: int) -> None:
        """Every client's first read done (each request starts with a GetItem, or with
        a subscription the watcher counts), so the idle phase has no arrivals in it."""
        for _ in range(1200):
            subscribed = await self._waiters()
            if subscribed is None:  # the baseline: no watcher, count first reads
                data = json.loads(self.counts.read_text()) if self.counts.exists() else {}
                subscribed = data.get("calls", {}).get("GetItem", 0)
            if subscribed >= waiters:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("clients did not all connect")

    async def _waiters(self) -> int | None:
        try:
            reader, writer = await _request(self.metrics_port, "/metrics")
        except OSError:  # the baseline serves no metrics port
            return None
        text = (await reader.read()).decode()
        writer.close()
        gauge = [line for line in text.splitlines() if line.startswith("memeforge_waiters ")]
        return int(float(gauge[0].split()[1])) if gauge else None

    def by_operation(self) -> dict[str, int]:
        return dict(json.loads(self.counts.read_text())["calls"])

    def snapshot(self) -> tuple[float, int, int]:
        time.sleep(0.45)  # let the counts file catch up (written every 0.2 s)
        data = json.loads(self.counts.read_text())
        calls = sum(data["calls"].get(op, 0) for op in DYNAMO_OPS)
        items = sum(data["items"].values())
        return cpu_seconds(self.proc.pid), calls, items


async def _request(
    port: int, target: str, token: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = f"GET {target} HTTP/1.1\r\nHost: bench\r\n{auth}Connection: close\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def _refused(status: int, body: bytes, col: Column) -> bool:
    """A 503 (too many waiters, AWS slow to answer the first read) is counted and asked
    again a second later, as a client would; anything else but 200 is a bench bug."""
    if status == 503:
        col.refused += 1
        await asyncio.sleep(1)
        return True
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return False


def _state(body: bytes) -> str:
    return body.split(b'"state":"', 1)[-1].split(b'"', 1)[0].decode()


async def long_poller(port: int, meme_id: str, token: str, col: Column) -> None:
    while True:
        sent = time.monotonic()
        reader, writer = await _request(port, f"/memes/{meme_id}?wait=20", token)
        status = int((await reader.readline()).split()[1])
        body = await reader.read()
        writer.close()
        if await _refused(status, body, col):
            continue
        col.answers.setdefault(meme_id, []).append((sent, time.monotonic(), _state(body)))
        if b'"state":"DONE"' in body:
            col.seen.append(("long_poll", meme_id, time.monotonic()))
            return


async def sse_client(port: int, meme_id: str, token: str, col: Column) -> None:
    while True:
        sent = time.monotonic()
        reader, writer = await _request(port, f"/memes/{meme_id}/events?timeout=600", token)
        status = int((await reader.readline()).split()[1])
        if status == 200:
            break
        body = await reader.read()
        writer.close()
        await _refused(status, body, col)
    try:
        async for line in reader:
            if line.startswith(b"data: "):
                event = (sent, time.monotonic(), _state(line))
                col.answers.setdefault(meme_id, []).append(event)
            if line.startswith(b"data: ") and b'"state":"DONE"' in line:
                col.seen.append(("sse", meme_id, time.monotonic()))
                return
    finally:
        writer.close()


async def run_column(
    name: str, env: dict[str, str], settings: Settings, args: argparse.Namespace, workdir: Path
) -> Column:
    col = Column(name)
    api = Api(env, workdir / f"{name}.counts.json", workdir, name)
    probing = asyncio.create_task(
        loopprobe.watch(col.client_stalls.append) if args.trace else asyncio.sleep(0)
    )
    try:
        async with AwsClients.open(settings) as aws:
            store = MemeStore(aws.dynamodb, settings.table)
            token = (
                await KeyStore(aws.dynamodb, settings.table).create(TENANT, name, ALL_SCOPES)
            ).token
            spec = RenderSpec(boxes=classic_boxes("bench", name))
            ids = []
            for _ in range(args.memes):
                item = new_item(os.urandom(16).hex(), "bench", spec, tenant=TENANT)
                await store.create(item)
                await store.transition(item.id, MemeState.QUEUED)
                ids.append(item.id)
            done_at: dict[str, float] = {}
            clients = [
                asyncio.create_task(
                    (long_poller if n % 2 == 0 else sse_client)(
                        api.port, ids[n % len(ids)], token, col
                    )
                )
                for n in range(args.waiters)
            ]
            await api.until_connected(args.waiters)
            await asyncio.sleep(args.settle_s)

            cpu0, calls0, items0 = api.snapshot()
            t0 = time.monotonic()
            await asyncio.sleep(args.idle_s)
            cpu1, calls1, items1 = api.snapshot()
            t1 = time.monotonic()
            col.idle = Phase(t1 - t0, cpu1 - cpu0, calls1 - calls0, items1 - items0)

            started = time.monotonic()
            for n, meme_id in enumerate(ids):
                await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
                await store.transition(meme_id, MemeState.RENDERING, attempts=1)
                writing = time.monotonic()
                await store.transition(meme_id, MemeState.DONE)
                done_at[meme_id] = time.monotonic()
                col.done_writes[meme_id] = (writing, done_at[meme_id])
            await asyncio.wait_for(asyncio.gather(*clients), timeout=60)
            # Seen before the DONE write's answer reached the bench counts as 0 ms.
            for kind, meme_id, seen in col.seen:
                latency = max(0.0, seen - done_at[meme_id]) * 1000
                col.latencies_ms.setdefault(kind, []).append(latency)
            cpu2, calls2, items2 = api.snapshot()
            col.finish = Phase(time.monotonic() - t1, cpu2 - cpu1, calls2 - calls1, items2 - items1)
            col.calls_by_operation = api.by_operation()
    finally:
        probing.cancel()
        stop(api.proc, grace=10)
    if api.trace.exists():
        col.trace = [json.loads(line) for line in api.trace.read_text().splitlines()]
    return col


def watcher_added_parent() -> str:
    """The commit before the watcher (the per-client polling api)."""
    added = subprocess.run(
        [
            "git",
            "log",
            "--diff-filter=A",
            "--format=%H",
            "--",
            "services/api/memeforge_api/watcher.py",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    return f"{added}^"


def checkout(workdir: Path, name: str, ref: str) -> Path:
    """A detached worktree of ``ref``, whose api a column runs."""
    tree = workdir / f"tree-{name}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), ref],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return tree


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(col: Column, waiters: int) -> dict[str, Any]:
    per_k = 1000 / waiters
    every = [latency for latencies in col.latencies_ms.values() for latency in latencies]
    return {
        "idle_cpu_pct_per_1k_waiters": 100 * col.idle.cpu_s / col.idle.seconds * per_k,
        "finish_cpu_pct_per_1k_waiters": 100 * col.finish.cpu_s / col.finish.seconds * per_k,
        "idle_dynamodb_calls_per_s": col.idle.calls / col.idle.seconds,
        "finish_dynamodb_calls_per_s": col.finish.calls / col.finish.seconds,
        "idle_items_read_per_s": col.idle.items / col.idle.seconds,
        "finish_items_read_per_s": col.finish.items / col.finish.seconds,
        "done_to_seen_p50_ms": _pct(every, 0.50),
        "done_to_seen_p99_ms": _pct(every, 0.99),
        "sse_done_to_seen_p99_ms": _pct(col.latencies_ms.get("sse", []), 0.99),
        "long_poll_done_to_seen_p99_ms": _pct(col.latencies_ms.get("long_poll", []), 0.99),
        "seen": len(col.seen),
        "refused": col.refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="localstack", choices=("localstack", "moto"))
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--memes", type=int, default=1000, help="waiters spread over these")
    parser.add_argument("--rate", type=float, default=50.0, help="memes reaching DONE per s")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--settle-s", type=float, default=3.0, help="after all connected")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="N",
        help="trace the api's reads and print the N slowest DONE -> seen cases step by step",
    )
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="NAME=REF",
        help="also run the api of git commit REF as column NAME",
    )
    parser.add_argument(
        "--api-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an api environment variable, e.g. MEMEFORGE_WATCHER_MAX_CALLS_PER_S=50",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-waiting-") as tmp:
        workdir = Path(tmp)
        (workdir / "hook").mkdir()
        hook_code = SITECUSTOMIZE + (TRACE_HOOK if args.trace else "")
        (workdir / "hook" / "sitecustomize.py").write_text(hook_code)
        shutil.copy(Path(loopprobe.__file__), workdir / "hook" / "loopprobe.py")
        emulator = start_emulator(args.backend, workdir=workdir / "emulator")
        refs = dict(against.split("=", 1) for against in args.against)
        if not args.no_baseline:
            refs["baseline"] = watcher_added_parent()
        trees: list[Path] = []
        try:
            settings = Settings(table=f"bench-waiting-{os.getpid()}")
            extra = dict(setting.split("=", 1) for setting in args.api_setting)
            base_env = emulator.child_env(
                {
                    "MEMEFORGE_TABLE": settings.table,
                    "MEMEFORGE_MAX_LONG_POLL_S": "20",
                    # Off: its UpdateItem per request is not what this measures, and
                    # 1,000 clients of one key would spend its burst on connecting.
                    "MEMEFORGE_RATE_LIMIT_PER_MINUTE": "0",
                    **extra,
                }
            )
            os.environ.update({k: v for k, v in base_env.items() if k.startswith("AWS_")})
            asyncio.run(bootstrap(settings, seed=False))
            busy0, total0 = machine_busy()
            load0 = os.getloadavg()[0]
            columns = {}
            hook = str(workdir / "hook")
            env = base_env | {"PYTHONPATH": hook}
            columns["watcher"] = asyncio.run(run_column("watcher", env, settings, args, workdir))
            for name, ref in refs.items():
                trees.append(tree := checkout(workdir, name, ref))
                code = f"{tree}/services/api:{tree}/services/common"
                env = base_env | {"PYTHONPATH": f"{hook}:{code}"}
                columns[name] = asyncio.run(run_column(name, env, settings, args, workdir))
            busy1, total1 = machine_busy()
            load1 = os.getloadavg()[0]
        finally:
            emulator.stop()
            for tree in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    report(args, columns, 100 * (busy1 - busy0) / max(1, total1 - total0), (load0, load1))


def explain(name: str, col: Column, top: int) -> None:
    """The ``top`` slowest DONE -> seen cases, each as what happened from the DONE write
    on (ms after the write returned): the api's reads and stalls, the client's answers."""
    seen = {meme_id: (kind, at) for kind, meme_id, at in col.seen}
    feed = sorted((r for r in col.trace if r["op"] == "Query"), key=lambda r: r["t0"])
    batched = sorted((r for r in col.trace if r["op"] == "BatchGetItem"), key=lambda r: r["t0"])
    slowest = sorted(seen, key=lambda m: seen[m][1] - col.done_writes[m][1], reverse=True)
    print(f"\n{name}: the {top} slowest DONE -> seen (ms from the DONE write returning)")
    for meme_id in slowest[:top]:
        kind, at = seen[meme_id]
        start, end = col.done_writes[meme_id]

        def ms(t: float, end: float = end) -> str:
            return f"{(t - end) * 1000:+.0f}"

        saw = [r for r in col.trace if meme_id in r.get("done", ())]
        first = min(saw, key=lambda r: r["t1"], default=None)
        after = [r for r in feed if r["t0"] >= start and r["t0"] <= at]
        stalls = [r for r in col.trace if r["op"] == "stall" and r["t1"] >= start and r["t0"] <= at]
        client_stalls = [r for r in col.client_stalls if r["t1"] >= start and r["t0"] <= at]
        answers = [
            f"{state}@{ms(got)} (asked {ms(sent)})"
            for sent, got, state in col.answers.get(meme_id, [])
            if got >= start - 2
        ]
        print(
            f"  {meme_id[:8]} {kind:9} seen {ms(at)}  write took {(end - start) * 1000:.0f}"
            f"  first read with DONE: "
            + (f"{first['op']} {ms(first['t0'])}..{ms(first['t1'])}" if first else "none")
        )
        print(
            "    feed queries since the write: "
            + " ".join(
                f"{ms(r['t0'])}..{ms(r['t1'])}{'*' if meme_id in r['done'] else ''}"
                for r in after[:8]
            )
        )
        reads = [r for r in batched if r["t1"] >= start and r["t0"] <= at]
        print(
            "    batched reads (the read tick; the feed waits for it): "
            + " ".join(f"{ms(r['t0'])}..{ms(r['t1'])}" for r in reads[:8])
        )
        print("    api loop stalls: " + " ".join(_stall(r, ms) for r in stalls))
        collections = [
            r for r in col.trace if r["op"] == "gc" and r["t1"] >= start and r["t0"] <= at
        ]
        print(
            "    api GCs over 5 ms: "
            + " ".join(f"gen{r['gen']} {ms(r['t0'])}..{ms(r['t1'])}" for r in collections)
        )
        print("    bench loop stalls: " + " ".join(_stall(r, ms) for r in client_stalls))
        print("    client: " + "; ".join(answers[-4:]))


def _stall(record: dict[str, Any], ms: Callable[[float], str]) -> str:
    """A stall's span, and its loop's CPU and run-queue ms: own work or machine load."""
    span = f"{ms(record['t0'])}..{ms(record['t1'])}"
    return f"{span}(cpu {record['cpu_ms']:.0f} runq {record['runq_ms']:.0f})"


def report(
    args: argparse.Namespace, columns: dict[str, Column], busy_pct: float, load: tuple[float, float]
) -> None:
    stats = {name: summary(col, args.waiters) for name, col in columns.items()}
    rows = list(next(iter(stats.values())))
    print(
        f"\n{args.waiters} waiters (half long-poll, half SSE) on {args.memes} memes, "
        f"DONE at {args.rate:g}/s, backend {args.backend} {' '.join(args.api_setting)}"
    )
    print(f"{'':34}" + "".join(f"{name:>12}" for name in stats))
    for row in rows:
        print(f"{row:34}" + "".join(f"{s[row]:>12.1f}" for s in stats.values()))
    for name, col in columns.items():
        print(f"{name} calls over the whole run, by operation: {col.calls_by_operation}")
    for name, col in columns.items():
        if col.trace:
            explain(name, col, args.trace)
    print(
        f"machine: {os.cpu_count()} cores, {busy_pct:.0f} % busy during the run, "
        f"load average {load[0]:.1f} → {load[1]:.1f}"
    )
    result: dict[str, Any] = {
        "bench": "waiting",
        "backend": args.backend,
        "waiters": args.waiters,
        "memes": args.memes,
        "rate_per_s": args.rate,
        "machine_busy_pct": round(busy_pct, 1),
        "api_settings": args.api_setting,
    }
    for name, s in stats.items():
        result |= {f"{name}_{k}": round(v, 2) for k, v in s.items()}
    w = stats["watcher"]
    for name, other in stats.items():
        if name == "watcher":
            continue
        for key in RATIO_KEYS:
            result[f"{name}_over_watcher_{key}"] = round(other[key] / max(w[key], 1e-9), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
