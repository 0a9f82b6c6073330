"""The api process's own CPU per meme, served by uvicorn: ``make bench-api``.

    python -m bench.api_cpu [--backend moto|localstack] [--memes 100] [--rounds 4]
                            [--concurrency 16] [--base DIR]

Starts an emulator and the real api process (``python -m memeforge_api``, as the stack
runs it: uvicorn, JSON logs, the per-key rate limit on and set high, the in-flight cap
and the back-pressure gate on), and sends, per round, ``--memes`` ``POST /memes`` (202,
no captions: the api's hot path, as bench/pipeline.py sends it) and then one status
``GET /memes/<id>`` of each (one GetItem) from ``--concurrency`` keep-alive clients. No
worker runs, so nothing but the requests moves the api.

CPU is the api process's utime + stime from /proc, taken around each batch of requests;
AWS calls are its own ``memeforge_aws_requests_total`` counters, scraped outside the CPU
window (the scrape costs the api CPU). The SDK's share is estimated as calls times
``--sdk-us-per-call`` (what ``make bench-sdk`` measures per call; pass the current
figure): the rest is the api's own, which is what this bench is for.

``--base DIR``: a second api process from another checkout (e.g. ``git worktree add
/tmp/base main``; its ``services/api`` and ``services/common`` go first on PYTHONPATH),
on the same emulator; the two take turns batch by batch so that the machine's load
lands on both alike, and the table shows candidate ÷ base.

Prints a table and one JSON line: ``cpu_ms_per_meme`` (POST + GET), ``post_ms``,
``get_ms``, ``aws_calls_per_meme`` and ``own_ms_per_meme`` per api, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.scrape import aws_requests_by_operation
from devenv.run.emulator import start_emulator
from devenv.run.proc import free_port, http_ok, spawn, stop, wait_until
from devenv.run.stack import bootstrap, create_key

CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTINGS = {
    # As bench/pipeline.py: the rate limit's call is paid, far above what the bench sends.
    "MEMEFORGE_RATE_LIMIT_PER_MINUTE": "60000",
    "MEMEFORGE_RATE_LIMIT_BURST": "100000",
    # No worker takes the memes: the cap and the gate stay on, out of the bench's reach.
    "MEMEFORGE_MAX_IN_FLIGHT_PER_TENANT": "1000000",
    "MEMEFORGE_OVERLOAD_QUEUE_DEPTH": "1000000",
}
WARM_UP = 50


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


@dataclass
class Api:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    metrics_url: str
    post_s: list[float] = field(default_factory=list)
    get_s: list[float] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    memes: int = 0

    def aws_calls(self) -> Counter[str]:
        return aws_requests_by_operation(self.metrics_url)


def start_api(name: str, env: dict[str, str], tree: Path | None, workdir: Path) -> Api:
    port, metrics_port = free_port(), free_port()
    own = {**env, "MEMEFORGE_API_PORT": str(port), "MEMEFORGE_METRICS_PORT": str(metrics_port)}
    if tree is not None:
        path = [str(tree / "services" / "api"), str(tree / "services" / "common")]
        own["PYTHONPATH"] = os.pathsep.join([*path, *filter(None, [own.get("PYTHONPATH")])])
    proc = spawn(
        [sys.executable, "-m", "memeforge_api"], env=own, log_path=str(workdir / f"{name}.log")
    )
    api = Api(name, proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics")
    wait_until(http_ok(f"{api.url}/healthz"), timeout=60, what=f"api {name}", proc=proc)
    return api


async def _requests(
    api: Api, headers: dict[str, str], memes: int, concurrency: int
) -> tuple[float, float]:
    """``memes`` POSTs, then a GET of each: the api's CPU seconds for each half."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=api.url, headers=headers, timeout=60, limits=limits
    ) as client:
        slots = asyncio.Semaphore(concurrency)

        async def post(i: int) -> str:
            async with slots:
                body = {"template_id": "bench", "top": f"meme {i}", "bottom": "bench"}
                response = await client.post("/memes", json=body)
            if response.status_code != 202:
                raise RuntimeError(f"POST /memes: {response.status_code} {response.text}")
            return str(response.json()["id"])

        async def get(meme_id: str) -> None:
            async with slots:
                response = await client.get(f"/memes/{meme_id}")
            if response.status_code != 200:
                raise RuntimeError(f"GET /memes: {response.status_code} {response.text}")

        started = cpu_s(api.proc.pid)
        ids = await asyncio.gather(*(post(i) for i in range(memes)))
        posted = cpu_s(api.proc.pid)
        await asyncio.gather(*(get(meme_id) for meme_id in ids))
        return posted - started, cpu_s(api.proc.pid) - posted


def batch(api: Api, headers: dict[str, str], memes: int, concurrency: int) -> None:
    before = api.aws_calls()
    post_s, get_s = asyncio.run(_requests(api, headers, memes, concurrency))
    api.calls += api.aws_calls() - before
    api.post_s.append(post_s)
    api.get_s.append(get_s)
    api.memes += memes


FIGURES = ("cpu_ms_per_meme", "post_ms", "get_ms", "aws_calls_per_meme", "own_ms_per_meme")


def figures(api: Api, memes: int, sdk_us: float) -> dict[str, float]:
    """Median batch's CPU ms per meme, and the calls per meme over every batch."""
    post = statistics.median(api.post_s) / memes * 1000
    get = statistics.median(api.get_s) / memes * 1000
    calls = sum(api.calls.values()) / api.memes
    return {
        "cpu_ms_per_meme": round(post + get, 3),
        "post_ms": round(post, 3),
        "get_ms": round(get, 3),
        "aws_calls_per_meme": round(calls, 3),
        "own_ms_per_meme": round(post + get - calls * sdk_us / 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="moto", choices=("moto", "localstack"))
    parser.add_argument("--memes", type=int, default=100, help="POST + GET pairs per batch")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sdk-us-per-call", type=float, default=1200.0)
    parser.add_argument("--base", type=Path, help="a checkout to compare against")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        workdir = Path(tmp)
        emulator = start_emulator(args.backend, workdir=workdir)
        apis: list[Api] = []
        try:
            env = emulator.child_env({"MEMEFORGE_API_HOST": "127.0.0.1", **SETTINGS})
            bootstrap(env)
            headers = {"Authorization": f"Bearer {create_key(env)}"}
            apis.append(start_api("candidate", env, None, workdir))
            if args.base is not None:
                apis.append(start_api("base", env, args.base.resolve(), workdir))
            for api in apis:
                asyncio.run(_requests(api, headers, WARM_UP, args.concurrency))
            load_before = os.getloadavg()
            for round_ in range(args.rounds):
                # ABBA: neither api always goes first (the first of a pair ran slower).
                for api in apis if round_ % 2 == 0 else apis[::-1]:
                    batch(api, headers, args.memes, args.concurrency)
            load_after = os.getloadavg()
        finally:
            for api in apis:
                stop(api.proc)
            emulator.stop()
    report(apis, args, load_before, load_after)


def report(
    apis: list[Api],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    results = {api.name: figures(api, args.memes, args.sdk_us_per_call) for api in apis}
    print(f"api CPU per meme (POST + status GET), {args.backend}, {args.rounds} x {args.memes}")
    print(f"{'':20}" + "".join(f"{name:>12}" for name in results))
    for key in FIGURES:
        print(f"{key:20}" + "".join(f"{r[key]:>12}" for r in results.values()))
    for api in apis:
        calls = ", ".join(f"{op} {n / api.memes:.2f}" for op, n in sorted(api.calls.items()))
        print(f"{api.name} calls per meme: {calls}")
    line: dict[str, object] = {
        "bench": "api_cpu",
        "backend": args.backend,
        "memes": args.memes,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "sdk_us_per_call": args.sdk_us_per_call,
        "load_avg": [round(v, 2) for v in (*load_before, *load_after)],
        "apis": {
            api.name: {
                **results[api.name],
                "calls_by_operation": {
                    op: round(n / api.memes, 3) for op, n in sorted(api.calls.items())
                },
            }
            for api in apis
        },
    }
    if "base" in results:
        candidate, base = results["candidate"], results["base"]
        ratios = {
            key: round(candidate[key] / base[key], 3)
            for key in ("cpu_ms_per_meme", "post_ms", "get_ms", "own_ms_per_meme")
        }
        print("candidate / base: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
        line["ratio_vs_base"] = ratios
    print(json.dumps(line))


if __name__ == "__main__":
    main()
