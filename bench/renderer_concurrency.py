"""Renderer throughput by messages in flight per pod (``MEMEFORGE_WORKER_CONCURRENCY``).

One renderer with 2 render processes (the manifests' CPU limit), the whole stack as real
processes against moto. For each concurrency, a fresh stack renders the same burst of
memes (submitted at once through the api); the time from the first submit to the last
DONE gives memes/s. Ratios are against the first concurrency listed, in the same run.
Holding more messages than the pool can render only helps while S3/DynamoDB calls
overlap renders; beyond that it just keeps messages from other pods (KEDA adds pods
for a backlog that one pod already holds).

    python -m bench.renderer_concurrency                      # 8 4 2, 40 memes
    python -m bench.renderer_concurrency --concurrency 8 3 --memes 60

Prints a table and one JSON line: {"bench": "renderer_concurrency", "memes": N, "rows":
[{"concurrency": C, "seconds": s, "memes_per_s": r, "ratio": x}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from devenv.run.stack import Stack, start_stack


async def burst(api_url: str, memes: int) -> float:
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as api:
        template = (await api.get("/templates")).json()["items"][0]["id"]
        started = time.monotonic()
        created = await asyncio.gather(
            *(
                api.post("/memes", json={"template_id": template, "top": f"burst {i}"})
                for i in range(memes)
            )
        )
        ids = [r.json()["id"] for r in created]

        async def settled(meme_id: str) -> None:
            for _ in range(100):
                meme = (await api.get(f"/memes/{meme_id}", params={"wait": 10})).json()
                if meme["state"] == "DONE":
                    return
                if meme["state"] == "FAILED":
                    raise RuntimeError(f"{meme_id} failed: {meme.get('failure')}")
            raise RuntimeError(f"{meme_id} did not finish")

        await asyncio.gather(*(settled(i) for i in ids))
        return time.monotonic() - started


def run_one(concurrency: int, memes: int) -> float:
    def renderer_concurrency(stack: Stack) -> None:
        stack.service_env["renderer"] = {
            **stack.env,
            "MEMEFORGE_WORKER_CONCURRENCY": str(concurrency),
        }

    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(
            Path(tmp),
            backend="moto",
            settings={"MEMEFORGE_RENDER_PROCESSES": "2", "MEMEFORGE_RECEIVE_WAIT_S": "2"},
            prepare=renderer_concurrency,
        )
        try:
            asyncio.run(burst(stack.api_url, 4))  # warm: pool processes, template cache
            return asyncio.run(burst(stack.api_url, memes))
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 4, 2])
    parser.add_argument("--memes", type=int, default=40)
    args = parser.parse_args()
    rows = []
    for concurrency in args.concurrency:
        seconds = run_one(concurrency, args.memes)
        rows.append({"concurrency": concurrency, "seconds": round(seconds, 2)})
    base = args.memes / rows[0]["seconds"]
    for row in rows:
        rate = args.memes / row["seconds"]
        row["memes_per_s"] = round(rate, 2)
        row["ratio"] = round(rate / base, 2)
    print(f"{args.memes} memes, 1 renderer x 2 render processes, moto")
    print(f"{'concurrency':>11} {'seconds':>8} {'memes/s':>8} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['concurrency']:>11} {row['seconds']:>8.1f} {row['memes_per_s']:>8.2f} "
            f"{row['ratio']:>6.2f}"
        )
    print(json.dumps({"bench": "renderer_concurrency", "memes": args.memes, "rows": rows}))


if __name__ == "__main__":
    main()
