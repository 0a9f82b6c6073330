"""What the pipeline around the engine costs per meme: ``make bench-pipeline``.

    python -m bench.pipeline [--backend localstack|moto] [--memes 300] [--concurrency 16]

Starts the whole stack as real processes (devenv's ``start_stack``: emulator, bootstrap,
consumer, renderer with 2 render processes, api), submits memes over REST with the dev
API key (the per-key rate limit on, set high, so its DynamoDB call is paid and counted)
and measures, per phase:

- ``max``: ``--memes`` memes from ``--concurrency`` clients at once (closed loop): the
  maximum throughput, first PENDING → last DONE from the items' state times, and the
  api's accept rate (POSTs answered per second);
- ``light``, ``50%``, ``90%``: memes submitted at a fixed rate (open loop): one every
  200 ms, and 50 % and 90 % of the maximum throughput; latency is submit → DONE
  (PENDING → DONE in the item's ``state_times``);
- ``max, 1 render process``: the ``max`` phase again (half the memes) after restarting
  the renderer with one render process.

``--profile DIR`` also writes py-spy flame graphs (SVG) of each service during the
``max`` phase (sampling costs CPU: compare CPU figures between runs without it).

``--trace N`` records every AWS call, event-loop stall and long GC of the services
(``bench.calltrace``) and prints the N slowest memes of the 50 % phase stage by stage:
PENDING written, request sent, received by the consumer, render job sent, received by
the renderer, DONE written; with the stalls and slow calls meanwhile. Tracing costs the
services CPU: compare CPU figures only between runs made without it.

AWS requests come from the services' own ``memeforge_aws_requests_total`` counters
(scraped from each service's metrics port), empty receives apart; CPU from /proc (utime
+ stime) of the api, the consumer, the renderer's main process, its render pool and the
emulators (apart: on AWS they disappear). Calls and CPU per meme are those of the
``max`` phase (the other phases' calls per meme are in the table). The bench reads the
items' state times from DynamoDB itself after each phase, outside the counted services.

Dollars per million memes: AWS list prices below (us-east-1), for the requests counted
in the ``max`` phase. Prints a table and one JSON line.

The emulator's own pauses are reported apart: the table counts, per phase, LocalStack's
garbage collections over 100 ms (from the launcher's GC log), and the output names the
emulator tuning in force (``--localstack-gc freeze|default``, docs/localstack.md "Garbage
collection"). ``--keep`` keeps the run's directory (logs, the GC log); a failed run always
keeps it and prints its path and the last lines of every log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

from bench import calltrace, loopprobe
from bench.scrape import Samples, metric_samples
from devenv.run.backends.localstack import GC_POLICIES, slow_collections
from devenv.run.emulator import BACKENDS
from devenv.run.proc import free_port, http_ok, wait_until
from devenv.run.stack import SERVICE_MODULES, Stack, start_stack

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICES = tuple(SERVICE_MODULES)
CPU_GROUPS = ("api", "consumer", "renderer_main", "render_pool", "emulators")
SERVICE_CPU = ("api", "consumer", "renderer_main", "render_pool")

# AWS list prices, us-east-1, in USD per million requests / request units, as published
# on aws.amazon.com/{sqs,dynamodb,s3}/pricing on PRICES_DATE (no free tier applied).
PRICES_DATE = "2025-06-01"
PRICES = {
    "sqs_request": 0.40,  # standard queue, per request (a batch of ≤ 10 is one request)
    "dynamodb_write_unit": 0.625,  # on-demand WRU: 1 KB written (transactional: 2)
    "dynamodb_read_unit": 0.125,  # on-demand RRU: 4 KB strongly consistent read
    "s3_put_class": 5.00,  # PUT, COPY, POST, LIST
    "s3_get_class": 0.40,  # GET, HEAD and the rest (DELETE is free)
}
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
DYNAMODB_TRANSACT_WRITES = {"TransactWriteItems"}
DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
S3_PUT_CLASS = {"PutObject", "CopyObject", "ListObjectsV2", "CreateMultipartUpload"}
S3_FREE = {"DeleteObject", "DeleteObjects"}

LIGHT_RATE = 5.0  # memes/s: one every 200 ms
PHASE_TIMEOUT_S = 120.0


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [], list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += tree.get(child, [])
    return found


@dataclass
class Snapshot:
    cpu_s: dict[str, dict[int, float]]  # group → pid → CPU seconds
    requests: dict[str, Counter[tuple[str, str]]]  # service → (aws service, op) → count
    empty_receives: Counter[str]

    def cpu_since(self, before: Snapshot) -> dict[str, float]:
        """CPU seconds per group; a process that started meanwhile counts from 0."""
        return {
            group: sum(s - before.cpu_s[group].get(pid, 0.0) for pid, s in pids.items())
            for group, pids in self.cpu_s.items()
        }

    def requests_since(self, before: Snapshot) -> dict[str, Counter[tuple[str, str]]]:
        return {name: now - before.requests[name] for name, now in self.requests.items()}

    def empty_since(self, before: Snapshot) -> Counter[str]:
        return self.empty_receives - before.empty_receives


class Probe:
    """Reads the stack's processes: CPU from /proc, AWS requests from each metrics port."""

    def __init__(self, stack: Stack, ports: dict[str, int]) -> None:
        self.stack = stack
        self.ports = ports

    def _pids(self) -> dict[str, list[int]]:
        tree = _children()
        services = self.stack.services
        renderer = services["renderer"].pid
        emulators = [p.pid for p in self.stack.emulator.processes]
        return {
            "api": [services["api"].pid],
            "consumer": [services["consumer"].pid],
            "renderer_main": [renderer],
            "render_pool": _descendants(renderer, tree),
            "emulators": emulators + [d for p in emulators for d in _descendants(p, tree)],
        }

    def metrics(self, service: str) -> Samples:
        return metric_samples(f"http://127.0.0.1:{self.ports[service]}/metrics")

    def snapshot(self) -> Snapshot:
        requests: dict[str, Counter[tuple[str, str]]] = {}
        empty: Counter[str] = Counter()
        for service in SERVICES:
            families = self.metrics(service)
            counted: Counter[tuple[str, str]] = Counter()
            for labels, value in families.get("memeforge_aws_requests_total", []):
                counted[(labels["service"], labels["operation"])] += int(value)
            requests[service] = counted
            for _, value in families.get("memeforge_aws_empty_receives_total", []):
                empty[service] += int(value)
        cpu = {group: {pid: _cpu_s(pid) for pid in pids} for group, pids in self._pids().items()}
        return Snapshot(cpu_s=cpu, requests=requests, empty_receives=empty)

    def renderer_settled(self) -> int:
        """Render messages the renderer has settled (DONE or FAILED items: acknowledged)."""
        samples = self.metrics("renderer").get("memeforge_messages_total", [])
        return int(sum(v for labels, v in samples if labels.get("outcome") in ("done", "poison")))


@dataclass
class Phase:
    name: str
    memes: int
    accept_per_s: float
    memes_per_s: float
    latency_ms: dict[str, float]
    failed: int
    cpu_ms_per_meme: dict[str, float]
    requests_per_meme: dict[str, dict[str, float]]  # service → "sqs.SendMessage" → calls
    empty_receives: int
    item_kb: float
    offered_per_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    # LocalStack's garbage collections over 20 ms while the phase ran (ms, in order)
    emulator_gc_ms: list[float] = field(default_factory=list)

    @property
    def aws_calls_per_meme(self) -> float:
        return sum(sum(ops.values()) for ops in self.requests_per_meme.values())

    @property
    def service_cpu_ms_per_meme(self) -> float:
        return sum(self.cpu_ms_per_meme[group] for group in SERVICE_CPU)


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0], "p95": values[0], "p99": values[0]} if values else {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}


class Bench:
    def __init__(self, stack: Stack, probe: Probe, template_id: str) -> None:
        self.stack = stack
        self.probe = probe
        self.template_id = template_id
        self.table = stack.env.get("MEMEFORGE_TABLE", "memeforge-memes")
        self.ddb = boto3.client("dynamodb", region_name=stack.env["AWS_REGION"])
        self.seq = 0
        # Per meme: the POST sent and answered (CLOCK_MONOTONIC, the trace's clock).
        self.posted: dict[str, tuple[float, float]] = {}

    def _body(self) -> dict[str, str]:
        self.seq += 1
        return {"template_id": self.template_id, "top": f"meme {self.seq}", "bottom": "bench"}

    async def _post(self, api: httpx.AsyncClient) -> str:
        for attempt in range(5):
            sent = time.monotonic()
            response = await api.post("/memes", json=self._body())
            if response.status_code == 202:
                meme_id = str(response.json()["id"])
                self.posted[meme_id] = (sent, time.monotonic())
                return meme_id
            if response.status_code not in (429, 503) or attempt == 4:
                raise RuntimeError(f"POST /memes: {response.status_code} {response.text}")
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        raise AssertionError("unreachable")

    async def _submit(self, memes: int, *, concurrency: int, rate: float | None) -> list[str]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=self.stack.api_url,
            headers=self.stack.auth_headers,
            timeout=60,
            limits=limits,
        ) as api:
            slots = asyncio.Semaphore(concurrency)
            started = time.monotonic()

            async def one(i: int) -> str:
                if rate is not None:  # open loop: the i-th meme leaves at i / rate
                    await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                async with slots:
                    return await self._post(api)

            return list(await asyncio.gather(*(one(i) for i in range(memes))))

    def _wait_settled(self, settled_before: int, memes: int) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while self.probe.renderer_settled() - settled_before < memes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{memes} memes not settled in {PHASE_TIMEOUT_S:.0f}s")
            time.sleep(0.5)

    def _items(self, ids: list[str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for i in range(0, len(ids), 100):
            keys: list[dict[str, Any]] = [{"id": {"S": meme_id}} for meme_id in ids[i : i + 100]]
            while keys:
                request = {self.table: {"Keys": keys, "ConsistentRead": True}}
                response = self.ddb.batch_get_item(RequestItems=request)
                items += response["Responses"].get(self.table, [])
                keys = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
        return items

    def run(self, name: str, memes: int, *, concurrency: int, rate: float | None = None) -> Phase:
        settled = self.probe.renderer_settled()
        before = self.probe.snapshot()
        posted_at = time.monotonic()
        ids = asyncio.run(self._submit(memes, concurrency=concurrency, rate=rate))
        accept_s = time.monotonic() - posted_at
        self._wait_settled(settled, memes)
        after = self.probe.snapshot()
        items = self._items(ids)
        phase = self._phase(name, ids, items, before, after, accept_s, rate)
        phase.ids = ids
        phase.emulator_gc_ms = [
            round((gc.t1 - gc.t0) * 1000, 1)
            for gc in slow_collections(self.stack.workdir)
            if posted_at <= gc.t0 <= time.monotonic()
        ]
        return phase

    def _phase(
        self,
        name: str,
        ids: list[str],
        items: list[dict[str, Any]],
        before: Snapshot,
        after: Snapshot,
        accept_s: float,
        rate: float | None,
    ) -> Phase:
        n = len(ids)
        times = [{k: datetime.fromisoformat(v["S"]) for k, v in item["state_times"]["M"].items()}
                 for item in items]  # fmt: skip
        done = [t for t in times if "DONE" in t]
        latencies = [(t["DONE"] - t["PENDING"]).total_seconds() * 1000 for t in done]
        span = (max(t["DONE"] for t in done) - min(t["PENDING"] for t in done)).total_seconds()
        cpu = after.cpu_since(before)
        requests = after.requests_since(before)
        empty = after.empty_since(before)
        per_meme: dict[str, dict[str, float]] = {}
        for service, ops in requests.items():
            counted = Counter({f"{aws}.{op}": c for (aws, op), c in ops.items()})
            counted["sqs.ReceiveMessage"] -= empty[service]  # empty polls: apart
            per_meme[service] = {op: c / n for op, c in sorted(counted.items()) if c > 0}
        item_kb = statistics.mean(len(json.dumps(item)) for item in items) / 1024
        return Phase(
            name=name,
            memes=n,
            accept_per_s=n / accept_s,
            memes_per_s=len(done) / span if span > 0 else math.inf,
            latency_ms=percentiles(latencies),
            failed=n - len(done),
            cpu_ms_per_meme={group: cpu[group] * 1000 / n for group in CPU_GROUPS},
            requests_per_meme=per_meme,
            empty_receives=sum(empty.values()),
            item_kb=item_kb,
            offered_per_s=rate,
        )


def usd_per_million(phase: Phase) -> dict[str, float]:
    """Dollars per million memes at PRICES, by AWS service, for the phase's requests.
    DynamoDB units: each write at ceil(item KB) WRU and each read at ceil(item KB / 4)
    RRU with the meme item's size (an upper bound for the small rate-limit and
    idempotency items)."""
    wru = max(1, math.ceil(phase.item_kb))
    rru = max(1, math.ceil(phase.item_kb / 4))
    usd = Counter[str]()
    for ops in phase.requests_per_meme.values():
        for name, calls in ops.items():
            aws, op = name.split(".", 1)
            if aws == "sqs":
                usd["sqs"] += calls * PRICES["sqs_request"]
            elif op in DYNAMODB_WRITES:
                usd["dynamodb"] += calls * wru * PRICES["dynamodb_write_unit"]
            elif op in DYNAMODB_TRANSACT_WRITES:
                usd["dynamodb"] += calls * 2 * wru * PRICES["dynamodb_write_unit"]
            elif op in DYNAMODB_READS:
                usd["dynamodb"] += calls * rru * PRICES["dynamodb_read_unit"]
            elif aws == "s3" and op in S3_PUT_CLASS:
                usd["s3"] += calls * PRICES["s3_put_class"]
            elif aws == "s3" and op not in S3_FREE:
                usd["s3"] += calls * PRICES["s3_get_class"]
    # calls per meme * USD per million calls = USD per million memes
    return {k: round(v, 2) for k, v in sorted(usd.items())} | {"total": round(sum(usd.values()), 2)}


@contextlib.contextmanager
def profiled(stack: Stack, folder: Path | None) -> Iterator[None]:
    """With a folder: py-spy flame graphs (SVG) of each service while the block runs,
    the renderer's render pool included. Sampling costs the services CPU: compare CPU
    figures only between runs made without it."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, proc in stack.services.items():
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(proc.pid)]
        command += ["--format", "flamegraph", "--rate", "200", "--nonblocking"]
        command += ["--output", str(folder / f"{name}.svg")]
        if name == "renderer":
            command.append("--subprocesses")
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    try:
        time.sleep(1.0)  # attached before the load starts
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in spies:
            spy.wait(timeout=60)
    print(f"flame graphs: {', '.join(str(folder / f'{n}.svg') for n in stack.services)}")


def emulator_of(backend: str) -> dict[str, str]:
    """Which emulator process answers each AWS service, by backend."""
    if backend == "localstack":
        return {"sqs": "localstack", "s3": "localstack", "dynamodb": "dynamodb-local"}
    return {"sqs": "moto", "s3": "moto", "dynamodb": "moto"}


def emulator_pids(stack: Stack, backend: str) -> dict[str, int]:
    """The emulator processes by the names ``emulator_of`` gives them."""
    names = sorted(set(emulator_of(backend).values()), reverse=True)  # localstack first
    return {name: proc.pid for name, proc in zip(names, stack.emulator.processes, strict=False)}


def restart_renderer(stack: Stack, processes: int) -> None:
    stack.stop_service("renderer")
    stack.service_env["renderer"] = {
        **stack.service_env["renderer"],
        "MEMEFORGE_RENDER_PROCESSES": str(processes),
    }
    stack.start_service("renderer")


def print_log_tails(workdir: Path, lines: int = 20) -> None:
    """The last lines of every log in ``workdir`` (the services' and the emulators'), to
    stderr: what a failed start said."""
    for log in sorted(workdir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"\n--- {log} (last {len(tail)} lines) ---", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _table(phases: Iterable[Phase]) -> str:
    rows = [
        "| phase | memes | offered /s | accepted /s | memes/s | p50 ms | p95 ms | p99 ms "
        "| AWS calls/meme | service CPU ms/meme | api | consumer | renderer main "
        "| pool | emulators | LocalStack GCs > 100 ms (longest ms) |",
        "|---" * 16 + "|",
    ]
    for p in phases:
        lat = p.latency_ms
        offered = f"{p.offered_per_s:.1f}" if p.offered_per_s else "closed"
        cpu = p.cpu_ms_per_meme
        rows.append(
            f"| {p.name} | {p.memes} | {offered} | {p.accept_per_s:.1f} | {p.memes_per_s:.1f} "
            f"| {lat['p50']:.0f} | {lat['p95']:.0f} | {lat['p99']:.0f} "
            f"| {p.aws_calls_per_meme:.2f} | {p.service_cpu_ms_per_meme:.2f} "
            f"| {cpu['api']:.2f} | {cpu['consumer']:.2f} | {cpu['renderer_main']:.2f} "
            f"| {cpu['render_pool']:.2f} | {cpu['emulators']:.1f} "
            f"| {_pauses(p.emulator_gc_ms)} |"
        )
    return "\n".join(rows)


def _pauses(collections_ms: list[float]) -> str:
    over = [ms for ms in collections_ms if ms > 100]
    return f"{len(over)} ({max(collections_ms, default=0):.0f})"


def _calls_table(phase: Phase) -> str:
    rows = ["| service | AWS request | per meme |", "|---|---|---|"]
    for service, ops in phase.requests_per_meme.items():
        rows += [f"| {service} | {op} | {calls:.2f} |" for op, calls in ops.items()]
    return "\n".join(rows)


def _start(args: argparse.Namespace, workdir: Path, prepare: Callable[[Stack], None]) -> Stack:
    return start_stack(
        workdir,
        backend=args.backend,
        settings={
            "MEMEFORGE_RENDER_PROCESSES": "2",
            "MEMEFORGE_RECEIVE_WAIT_S": "5",  # quick restarts; empty polls are counted apart
            # The rate limit stays on (its DynamoDB call is part of the cost), far above
            # what one bench key sends.
            "MEMEFORGE_RATE_LIMIT_PER_MINUTE": "60000",
            "MEMEFORGE_RATE_LIMIT_BURST": "100000",
        },
        prepare=prepare,
    )


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ports = {service: free_port() for service in SERVICES}

    trace_env = {}
    if args.trace:
        (workdir / "hook").mkdir()
        (workdir / "hook" / "sitecustomize.py").write_text(calltrace.HOOK)
        shutil.copy(Path(loopprobe.__file__), workdir / "hook" / "loopprobe.py")
        (workdir / "calltrace").mkdir()
        trace_env = {
            "PYTHONPATH": str(workdir / "hook"),
            "BENCH_CALLTRACE": str(workdir / "calltrace"),
        }

    def own_metrics_ports(stack: Stack) -> None:
        for service in SERVICES:
            stack.service_env[service] = {
                **stack.env,
                "MEMEFORGE_METRICS_PORT": str(ports[service]),
                **trace_env,
            }

    with _environ("MEMEFORGE_LOCALSTACK_GC", args.localstack_gc):  # read by the launcher
        stack = _start(args, workdir, own_metrics_ports)
    tuning = stack.emulator.tuning
    saved = dict(os.environ)
    os.environ.update(stack.env)  # the bench's own reads go to the same emulator
    try:
        probe = Probe(stack, ports)
        for service in SERVICES:
            wait_until(
                http_ok(f"http://127.0.0.1:{ports[service]}/metrics"),
                timeout=60,
                what=f"{service} metrics",
                proc=stack.services[service],
            )
        template = httpx.get(
            f"{stack.api_url}/templates", headers=stack.auth_headers, timeout=30
        ).json()["items"][0]["id"]
        bench = Bench(stack, probe, template)
        c = args.concurrency
        bench.run("warm-up", 40, concurrency=c)
        sampler = None
        if args.trace:
            sampler = calltrace.ProcessSampler(emulator_pids(stack, args.backend))
            sampler.start()
        with profiled(stack, args.profile):
            peak = bench.run("max", args.memes, concurrency=c)
        light = bench.run("light", args.light_memes, concurrency=c, rate=LIGHT_RATE)
        loads = [
            bench.run(
                f"{int(share * 100)}%",
                max(20, min(args.memes, int(peak.memes_per_s * share * args.phase_s))),
                concurrency=4 * c,
                rate=peak.memes_per_s * share,
            )
            for share in (0.5, 0.9)
        ]
        if sampler is not None:
            pids = {proc.pid: name for name, proc in stack.services.items()}
            records = calltrace.load(workdir / "calltrace", pids)
            half = loads[0]
            posted = {meme_id: bench.posted[meme_id] for meme_id in half.ids}
            half.extra["slowest"] = calltrace.explain(records, posted, args.trace)
            phase_start = min(sent for sent, _ in posted.values())
            phase_end = max(done for _, done in posted.values()) + 5.0
            in_phase = [r for r in records if phase_start <= r.t0 <= phase_end]
            emulators = emulator_of(args.backend)
            stalls = calltrace.emulator_stalls(in_phase, emulators)
            calltrace.print_emulator_stalls(stalls, phase_start, emulators, sampler)
            sampler.stop()
            half.extra["emulator_stalls_ms"] = [
                round((st.end - min(r.t0 for r in st.calls)) * 1000) for st in stalls
            ]
        restart_renderer(stack, 1)
        wait_until(
            http_ok(f"http://127.0.0.1:{ports['renderer']}/metrics"),
            timeout=60,
            what="renderer metrics",
            proc=stack.services["renderer"],
        )
        bench.run("warm-up", 20, concurrency=c)
        one = bench.run("max, 1 render process", args.memes // 2, concurrency=c)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stack.stop()
    return {"peak": peak, "light": light, "loads": loads, "one": one, "tuning": tuning}


def report(args: argparse.Namespace, phases: dict[str, Any], load: str) -> dict[str, Any]:
    peak: Phase = phases["peak"]
    half, ninety = phases["loads"]
    one: Phase = phases["one"]
    ordered = [phases["light"], half, ninety, peak, one]
    print(f"\nbench/pipeline: {args.backend}, load average {load}")
    tuning = phases["tuning"].items()
    print(
        "emulator tuning (test rig only): " + ("; ".join(f"{k} = {v}" for k, v in tuning) or "none")
    )
    print(f"\n{_table(ordered)}")
    print(f"\nAWS requests per meme ({peak.name} phase; empty receives apart):\n")
    print(_calls_table(peak))
    usd = usd_per_million(peak)
    print(
        f"\nUSD per million memes ({PRICES_DATE} us-east-1 list prices: "
        + ", ".join(f"{k} ${v}/M" for k, v in PRICES.items())
        + f"): {usd}"
    )
    print(
        f"renderer render processes 2 vs 1: {peak.memes_per_s:.1f} vs {one.memes_per_s:.1f} "
        f"memes/s ({peak.memes_per_s / one.memes_per_s:.2f}x) on {os.cpu_count()} cores"
    )
    pixels = peak.cpu_ms_per_meme["render_pool"] / peak.service_cpu_ms_per_meme
    return {
        "bench": "pipeline",
        "backend": args.backend,
        "load_average": load,
        "memes": peak.memes,
        "concurrency": args.concurrency,
        "memes_per_s": round(peak.memes_per_s, 2),
        "accept_per_s": round(peak.accept_per_s, 2),
        "latency_ms": {k: round(v, 1) for k, v in half.latency_ms.items()},
        "latency_ms_by_load": {
            p.name: {k: round(v, 1) for k, v in p.latency_ms.items()}
            for p in (phases["light"], half, ninety, peak)
        },
        "aws_calls_per_meme": round(peak.aws_calls_per_meme, 3),
        "aws_calls_per_meme_by_phase": {p.name: round(p.aws_calls_per_meme, 3) for p in ordered},
        "aws_requests_per_meme": {
            s: {op: round(c, 3) for op, c in ops.items()}
            for s, ops in peak.requests_per_meme.items()
        },
        "empty_receives": peak.empty_receives,
        "service_cpu_ms_per_meme": round(peak.service_cpu_ms_per_meme, 3),
        "cpu_ms_per_meme": {k: round(v, 3) for k, v in peak.cpu_ms_per_meme.items()},
        "pixels_share_of_service_cpu": round(pixels, 3),
        "usd_per_million_memes": usd["total"],
        "usd_per_million_memes_by_service": usd,
        "prices_usd_per_million": PRICES,
        "prices_date": PRICES_DATE,
        "render_processes": {
            "2": round(peak.memes_per_s, 2),
            "1": round(one.memes_per_s, 2),
            "ratio_2_over_1": round(peak.memes_per_s / one.memes_per_s, 3),
        },
        "failed": sum(p.failed for p in ordered),
        "emulator_tuning": phases["tuning"],
        "localstack_gc_over_100ms_at_50pct": sum(ms > 100 for ms in half.emulator_gc_ms),
        "localstack_gc_longest_ms_by_phase": {
            p.name: max(p.emulator_gc_ms, default=0.0) for p in ordered
        },
        **({"slowest_at_50pct": half.extra["slowest"]} if "slowest" in half.extra else {}),
        **(
            {"emulator_stalls_ms_at_50pct": half.extra["emulator_stalls_ms"]}
            if "emulator_stalls_ms" in half.extra
            else {}
        ),
        "targets": {
            "aws_calls_per_meme_le_5": peak.aws_calls_per_meme <= 5.0,
            "service_cpu_ms_per_meme_le_10": peak.service_cpu_ms_per_meme <= 10.0,
            "pixels_share_ge_25pct": pixels >= 0.25,
            "p99_at_50pct_lt_300ms": half.latency_ms["p99"] < 300,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=BACKENDS, default="localstack")
    parser.add_argument("--memes", type=int, default=300, help="memes in the max phase")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in the max phase")
    parser.add_argument("--light-memes", type=int, default=30)
    # 20 s at 50 % load is about 280 memes: enough for a p99 that is not one meme's.
    parser.add_argument("--phase-s", type=float, default=20.0, help="length of the 50/90%% phases")
    parser.add_argument(
        "--profile", type=Path, help="write py-spy flame graphs of the max phase here"
    )
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="N",
        help="trace the services' AWS calls and print the N slowest memes at 50 %% load",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's directory (logs); kept on failure"
    )
    parser.add_argument(
        "--localstack-gc",
        choices=GC_POLICIES,
        default=os.environ.get("MEMEFORGE_LOCALSTACK_GC", GC_POLICIES[0]),
        help="LocalStack's garbage-collector policy (docs/localstack.md); default %(default)s",
    )
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    load = _load_average()
    try:
        phases = measure(args, workdir)
    except BaseException:
        print(f"\nbench/pipeline failed: its directory is kept: {workdir}", file=sys.stderr)
        print_log_tails(workdir)
        raise
    if args.keep:
        print(f"bench/pipeline's directory (logs, LocalStack's GC log): {workdir}")
    else:
        shutil.rmtree(workdir)
    result = report(args, phases, load)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
