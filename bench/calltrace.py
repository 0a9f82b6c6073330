"""Per-meme timelines across the services, for ``bench.pipeline --trace N``.

``HOOK`` is a ``sitecustomize`` put first on every service's PYTHONPATH. In each
process it records, as JSON lines in ``$BENCH_CALLTRACE/<pid>.jsonl`` (CLOCK_MONOTONIC,
the bench's clock too):

* every AWS call: operation, start, end, the meme ids it carried (item keys, message
  bodies sent or received) and the state a transition wrote;
* event-loop stalls (``bench.loopprobe``: with the loop's CPU and run-queue time);
* garbage collections that took more than 5 ms.

``timelines`` turns those records into, per meme, when each stage happened: the PENDING
write, the request sent, received by the consumer, the render job sent, received by the
renderer, the DONE write. ``explain`` prints the slowest memes stage by stage, with the
stalls and slow calls of the processes that held each stage.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOOK = r"""
import gc, json, os, time
_dir = os.environ.get("BENCH_CALLTRACE")
try:
    from aiobotocore.client import AioBaseClient
except ImportError:  # a process without the SDK (a render pool worker, say)
    AioBaseClient = None
if _dir and AioBaseClient is not None:
    import asyncio
    _out = []
    def _write(record):
        if not _out:
            _out.append(open(os.path.join(_dir, f"{os.getpid()}.jsonl"), "a", buffering=1))
        _out[0].write(json.dumps(record) + "\n")
    _gc_start = []
    def _gc(phase, info):
        if phase == "start":
            _gc_start[:] = [time.monotonic()]
        elif _gc_start and time.monotonic() - _gc_start[0] > 0.005:
            now = time.monotonic()
            _write({"op": "gc", "gen": info["generation"], "t0": _gc_start[0], "t1": now})
    gc.callbacks.append(_gc)
    def _ids_in(value, found):
        if isinstance(value, dict):
            key = value.get("id")
            if isinstance(key, dict) and isinstance(key.get("S"), str):
                found.append(key["S"])
            for inner in value.values():
                _ids_in(inner, found)
        elif isinstance(value, list):
            for inner in value:
                _ids_in(inner, found)
    def _body_ids(bodies, found):
        for body in bodies:
            try:
                meme_id = json.loads(body).get("meme_id")
            except (ValueError, AttributeError):
                continue
            if isinstance(meme_id, str):
                found.append(meme_id)
    import loopprobe
    _probing = []
    # aiobotocore's clients and memeforge's lean ones (memeforge_common.leanclients)
    # each have one door every call goes through: _make_api_call(operation, params).
    _doors = [AioBaseClient]
    try:
        from memeforge_common.leanclients import LeanClient
        _doors.append(LeanClient)
    except ImportError:  # a tree from before the lean transport
        pass
    def _traced_door(_orig):
        async def _traced(self, operation, params):
            if not _probing:
                _probing.append(asyncio.get_running_loop().create_task(loopprobe.watch(_write)))
            t0 = time.monotonic()
            try:
                response = await _orig(self, operation, params)
            except Exception:
                aws = self.meta.service_model.service_name
                t1 = time.monotonic()
                _write({"op": operation, "aws": aws, "t0": t0, "t1": t1, "error": True})
                raise
            t1 = time.monotonic()
            ids = []
            if operation in ("PutItem", "UpdateItem", "GetItem", "TransactWriteItems"):
                _ids_in(params, ids)
            elif operation == "SendMessage":
                _body_ids([params.get("MessageBody")], ids)
            elif operation == "SendMessageBatch":
                _body_ids([e.get("MessageBody") for e in params.get("Entries", [])], ids)
            elif operation == "ReceiveMessage":
                _body_ids([m.get("Body") for m in response.get("Messages", [])], ids)
            elif operation == "PutObject":
                ids.append(params.get("Key", ""))
            record = {"op": operation, "t0": t0, "t1": t1, "ids": ids}
            record["aws"] = self.meta.service_model.service_name
            values = params.get("ExpressionAttributeValues") or {}
            if not values and operation == "TransactWriteItems":
                for step in params.get("TransactItems", []):
                    values = values or step.get("Update", {}).get("ExpressionAttributeValues", {})
            if ":target" in values:
                record["state"] = values[":target"].get("S")
            elif operation == "PutItem":
                record["state"] = params.get("Item", {}).get("state", {}).get("S")
            if operation == "ReceiveMessage":
                record["url"] = params.get("QueueUrl", "").rsplit("/", 1)[-1]
            elif operation in ("SendMessage", "SendMessageBatch"):
                record["url"] = params.get("QueueUrl", "").rsplit("/", 1)[-1]
            _write(record)
            return response
        return _traced
    for _door in _doors:
        _door._make_api_call = _traced_door(_door._make_api_call)
"""

# A stage: the event that ends it, found in the trace as (service, operation, match).
STAGES = (
    "PENDING written",
    "request sent",
    "request received",
    "QUEUED written",
    "render job sent",
    "render job received",
    "RENDERING written",
    "image stored",
    "DONE written",
)


@dataclass
class Record:
    service: str
    op: str
    t0: float
    t1: float
    ids: list[str] = field(default_factory=list)
    state: str | None = None
    url: str = ""
    cpu_ms: float = 0.0
    runq_ms: float = 0.0
    aws: str = ""  # the AWS service a call went to ("" for stalls and GCs)


def load(folder: Path, services: dict[int, str]) -> list[Record]:
    """Every record of the processes in ``services`` (pid → name), in start order."""
    records = []
    for path in folder.glob("*.jsonl"):
        service = services.get(int(path.stem), f"pid {path.stem}")
        for line in path.read_text().splitlines():
            raw: dict[str, Any] = json.loads(line)
            records.append(
                Record(
                    service=service,
                    op=raw["op"],
                    t0=raw["t0"],
                    t1=raw["t1"],
                    ids=raw.get("ids", []),
                    state=raw.get("state"),
                    url=raw.get("url", ""),
                    cpu_ms=raw.get("cpu_ms", 0.0),
                    runq_ms=raw.get("runq_ms", 0.0),
                    aws=raw.get("aws", ""),
                )
            )
    return sorted(records, key=lambda r: r.t0)


def _stage(record: Record, meme_id: str) -> str | None:
    """Which stage of ``meme_id`` the record ends, if any (its first such record counts)."""
    carries = meme_id in record.ids or any(meme_id in i for i in record.ids if "/" in i)
    if not carries:
        return None
    if record.op in ("PutItem", "UpdateItem", "TransactWriteItems") and record.state:
        return f"{record.state} written"
    if record.op == "PutObject":
        return "image stored"
    if record.op in ("SendMessage", "SendMessageBatch"):
        if record.service == "api":
            return "request sent"
        if record.service == "consumer" and "render" in record.url:
            return "render job sent"
    if record.op == "ReceiveMessage":
        if record.service == "consumer":
            return "request received"
        if record.service == "renderer":
            return "render job received"
    return None


def timelines(records: list[Record], ids: set[str]) -> dict[str, dict[str, Record]]:
    """Per meme: its first record of each stage."""
    found: dict[str, dict[str, Record]] = {meme_id: {} for meme_id in ids}
    for record in records:
        for carried in record.ids:
            meme_id = carried if carried in found else _meme_of_key(carried, ids)
            if meme_id is None:
                continue
            stage = _stage(record, meme_id)
            if stage is not None:
                found[meme_id].setdefault(stage, record)
    return found


def _meme_of_key(key: str, ids: set[str]) -> str | None:
    """The meme an S3 key belongs to (outputs are named after the meme id)."""
    for part in key.replace(".", "/").split("/"):
        if part in ids:
            return part
    return None


def explain(
    records: list[Record],
    submitted: dict[str, tuple[float, float]],
    top: int,
) -> list[dict[str, Any]]:
    """Print the ``top`` slowest memes (POST sent → DONE written) stage by stage: each
    stage's end (ms after the POST was sent) and the call that ended it, then the
    stalls, GCs and calls over 50 ms of every service while the meme was in flight.
    Returns the same as dicts (for the JSON line)."""
    lines = timelines(records, set(submitted))
    done = {m: t["DONE written"].t1 for m, t in lines.items() if "DONE written" in t}
    slowest = sorted(done, key=lambda m: done[m] - submitted[m][0], reverse=True)[:top]
    print(f"\nstage durations over {len(done)} memes (ms, from the previous stage's end)")
    print(f"  {'stage':22}{'p50':>8}{'p99':>8}{'max':>8}")
    for name, took in _stage_durations(lines, submitted, done).items():
        ordered = sorted(took)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(f"  {name:22}{ordered[len(ordered) // 2]:>8.0f}{p99:>8.0f}{ordered[-1]:>8.0f}")
    out = []
    print(f"\nthe {len(slowest)} slowest memes, POST sent -> DONE written (ms after the POST)")
    for meme_id in slowest:
        sent, answered = submitted[meme_id]
        stages = lines[meme_id]

        def ms(t: float, sent: float = sent) -> float:
            return round((t - sent) * 1000, 1)

        steps = []
        previous = sent
        for name in STAGES:
            record = stages.get(name)
            if record is None:
                continue
            steps.append(
                {
                    "stage": name,
                    "at_ms": ms(record.t1),
                    "took_ms": round((record.t1 - previous) * 1000, 1),
                    "call_ms": round((record.t1 - record.t0) * 1000, 1),
                }
            )
            previous = record.t1
        end = done[meme_id]
        noise = [
            r
            for r in records
            if r.t1 >= sent
            and r.t0 <= end
            and (r.op in ("stall", "gc") or (r.t1 - r.t0 > 0.05 and r.op != "ReceiveMessage"))
        ]
        print(
            f"  {meme_id[:8]} total {ms(end):.0f} ms (POST answered +{ms(answered):.0f}): "
            + ", ".join(
                f"{s['stage']} +{s['took_ms']:.0f} (call {s['call_ms']:.0f})" for s in steps
            )
        )
        print(
            "    stalls/GC/slow calls meanwhile: "
            + (
                " ".join(f"{_name(r)} {ms(r.t0):.0f}..{ms(r.t1):.0f}{_why(r)}" for r in noise[:12])
                or "none"
            )
        )
        out.append({"meme": meme_id, "total_ms": ms(end), "stages": steps})
    return out


def _stage_durations(
    lines: dict[str, dict[str, Record]],
    submitted: dict[str, tuple[float, float]],
    done: dict[str, float],
) -> dict[str, list[float]]:
    """Per stage, how long it took (ms since the previous stage's end) for each meme."""
    took: dict[str, list[float]] = {}
    for meme_id in done:
        previous = submitted[meme_id][0]
        for name in STAGES:
            record = lines[meme_id].get(name)
            if record is not None:
                took.setdefault(name, []).append((record.t1 - previous) * 1000)
                previous = record.t1
    return took


def _name(record: Record) -> str:
    """service:aws.Operation for a call, service:stall / service:gc otherwise."""
    aws = f"{record.aws}." if record.aws else ""
    return f"{record.service}:{aws}{record.op}"


def _why(record: Record) -> str:
    """A stall's CPU and run-queue milliseconds: its own work, or the machine's load."""
    if record.op != "stall":
        return ""
    return f" (cpu {record.cpu_ms:.0f} runq {record.runq_ms:.0f})"


# A call slower than this, not a long poll, may be an emulator's stall.
SLOW_CALL_S = 0.2
# Slow calls that end this close together, from two processes or more: one stall.
TOGETHER_S = 0.03


@dataclass
class EmulatorStall:
    """Slow calls from several processes to one emulator that all ended together: the
    emulator answered nothing for a while, then everything at once. ``others``: the
    calls to the other emulators made meanwhile, which show whether the machine stood
    still too (they would be slow) or only this emulator (they were answered)."""

    services: tuple[str, ...]  # AWS services of the stalled calls (one emulator's)
    start: float  # the latest start among them: the stall lasted at least until end
    end: float
    calls: list[Record]
    others: list[Record]

    @property
    def processes(self) -> set[str]:
        return {call.service for call in self.calls}


def emulator_stalls(records: list[Record], emulators: dict[str, str]) -> list[EmulatorStall]:
    """Stalls of each emulator (``emulators``: AWS service → emulator name), oldest first."""
    slow = sorted(
        (r for r in records if r.aws and r.op != "ReceiveMessage" and r.t1 - r.t0 > SLOW_CALL_S),
        key=lambda r: r.t1,
    )
    found: list[EmulatorStall] = []
    group: list[Record] = []
    for record in [*slow, None]:
        if (
            record is not None
            and group
            and record.t1 - group[-1].t1 <= TOGETHER_S
            and emulators.get(record.aws) == emulators.get(group[0].aws)
        ):
            group.append(record)
            continue
        if len({r.service for r in group}) >= 2:
            start, end = max(r.t0 for r in group), max(r.t1 for r in group)
            name = emulators.get(group[0].aws)
            others = [
                r
                for r in records
                if r.aws
                and emulators.get(r.aws) != name
                and r.op != "ReceiveMessage"
                and r.t0 >= start
                and r.t1 <= end
            ]
            services = tuple(sorted({r.aws for r in group}))
            found.append(EmulatorStall(services, start, end, group, others))
        group = [record] if record is not None else []
    return found


def print_emulator_stalls(
    stalls: list[EmulatorStall],
    since: float,
    emulators: dict[str, str],
    sampler: ProcessSampler | None = None,
) -> None:
    """One line per stall: how long, which processes' calls, what the other emulators
    did meanwhile, and the stalled emulator's CPU and run-queue time in it."""
    print(
        f"\nemulator stalls (calls from 2+ processes over {SLOW_CALL_S * 1000:.0f} ms "
        "that ended together)"
    )
    for stall in stalls:
        others = sorted(r.t1 - r.t0 for r in stall.others)
        meanwhile = (
            f"{len(others)} calls to the other emulator answered meanwhile, "
            f"median {others[len(others) // 2] * 1000:.0f} ms, max {others[-1] * 1000:.0f} ms"
            if others
            else "no call to the other emulator meanwhile"
        )
        print(
            f"  {'+'.join(stall.services)} at +{(stall.start - since):.1f} s: "
            f"{(stall.end - min(r.t0 for r in stall.calls)) * 1000:.0f} ms, "
            f"{len(stall.calls)} calls of {', '.join(sorted(stall.processes))} ended within "
            f"{(stall.end - min(r.t1 for r in stall.calls)) * 1000:.0f} ms; {meanwhile}"
        )
        if sampler is not None:
            name = emulators[stall.services[0]]
            cpu, runq = sampler.usage(name, stall.start, stall.end)
            print(
                f"    {name} in its last {(stall.end - stall.start) * 1000:.0f} ms "
                f"(sampled every {sampler.every_s * 1000:.0f} ms): "
                f"CPU {cpu:.0f} ms, run queue {runq:.0f} ms (all threads)"
            )


class ProcessSampler(threading.Thread):
    """Every ``every_s``, each process's CPU and run-queue nanoseconds summed over its
    threads (``/proc/<pid>/task/*/schedstat``): whether an emulator that answered
    nothing was working (CPU: its own work, e.g. a collection), waiting for a CPU
    (run queue: the machine's load), or neither (blocked on a lock or a disk)."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self._pids = pids
        self.every_s = every_s
        self._halt = threading.Event()
        self.samples: dict[str, list[tuple[float, int, int]]] = {name: [] for name in pids}

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            for name, pid in self._pids.items():
                cpu = runq = 0
                for task in Path(f"/proc/{pid}/task").glob("*"):
                    try:
                        on_cpu, waiting, _ = (task / "schedstat").read_text().split()
                    except (FileNotFoundError, ProcessLookupError, ValueError):
                        continue
                    cpu, runq = cpu + int(on_cpu), runq + int(waiting)
                self.samples[name].append((time.monotonic(), cpu, runq))

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def usage(self, name: str, t0: float, t1: float) -> tuple[float, float]:
        """CPU and run-queue ms of ``name`` between the samples around t0 and t1."""
        samples = self.samples.get(name, [])
        before = [s for s in samples if s[0] <= t0]
        after = [s for s in samples if s[0] >= t1]
        if not before or not after:
            return float("nan"), float("nan")
        return (after[0][1] - before[-1][1]) / 1e6, (after[0][2] - before[-1][2]) / 1e6
