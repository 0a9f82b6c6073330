"""Api memory under concurrent template uploads: what its memory limit must cover.

Starts an emulator and the real api process, uploads ``C`` largest-allowed templates at
once (a PNG just under ``MEMEFORGE_MAX_SOURCE_PIXELS`` and ``MEMEFORGE_MAX_UPLOAD_BYTES``:
the worst case, since the api decodes a PNG in full to check it), and reads the api's
peak RSS (VmHWM) after each round, from a fresh api process per concurrency level. The
idle row is the baseline (a started api that served /healthz). The per-upload cost is
(peak - idle) / C.

    python -m bench.api_memory                    # C = 1, 2, 4
    python -m bench.api_memory --concurrency 1 8

Prints a table and one JSON line: {"bench": "api_memory", "idle_mib": ..., "rows": [{"c":
..., "peak_mib": ..., "per_upload_mib": ..., "ratio_to_idle": ...}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
from pathlib import Path

import httpx
from memeforge_common.settings import Settings
from PIL import Image

from devenv.run.emulator import start_emulator
from devenv.run.proc import free_port, http_ok, stop, wait_until
from devenv.run.stack import Stack, bootstrap


def largest_template(settings: Settings) -> bytes:
    """A PNG of just under max_source_pixels that fits max_upload_bytes (smooth, so it
    compresses well: the decode, not the transfer, is what costs memory)."""
    side = int((settings.max_source_pixels * 0.99) ** 0.5)
    small = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    image = small.resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    assert len(data) <= settings.max_upload_bytes, len(data)
    return data


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def upload_all(url: str, data: bytes, count: int, round_id: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/templates",
                    data={"name": f"bench-{round_id}-{i}"},
                    files={"file": ("big.png", data, "image/png")},
                )
                for i in range(count)
            )
        )
    return [r.status_code for r in responses]


def measure(stack: Stack, data: bytes, count: int) -> float:
    proc = stack.start_service("api")
    try:
        wait_until(http_ok(f"{stack.api_url}/healthz"), timeout=120, what="api", proc=proc)
        if count:
            statuses = asyncio.run(upload_all(stack.api_url, data, count, count))
            assert all(s < 300 for s in statuses), statuses
        return peak_rss_mib(proc.pid)
    finally:
        stop(stack.services.pop("api"), grace=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    settings = Settings()
    data = largest_template(settings)
    with tempfile.TemporaryDirectory() as tmp:
        emulator = start_emulator(None, workdir=Path(tmp))
        try:
            port = free_port()
            env = emulator.child_env(
                {"MEMEFORGE_API_HOST": "127.0.0.1", "MEMEFORGE_API_PORT": str(port)}
            )
            bootstrap(env)
            stack = Stack(emulator, env, f"http://127.0.0.1:{port}", Path(tmp))
            idle = measure(stack, data, 0)
            rows = []
            for count in args.concurrency:
                peak = measure(stack, data, count)
                rows.append(
                    {
                        "c": count,
                        "peak_mib": round(peak, 1),
                        "per_upload_mib": round((peak - idle) / count, 1),
                        "ratio_to_idle": round(peak / idle, 2),
                    }
                )
        finally:
            emulator.stop()
    pixels = settings.max_source_pixels
    print(f"upload: {len(data) / 2**20:.1f} MiB PNG, {pixels / 1e6:.0f} MP; idle {idle:.0f} MiB")
    print(f"{'concurrent':>10} {'peak MiB':>9} {'per upload':>11} {'x idle':>7}")
    for row in rows:
        print(
            f"{row['c']:>10} {row['peak_mib']:>9.0f} {row['per_upload_mib']:>11.0f} "
            f"{row['ratio_to_idle']:>7.2f}"
        )
    print(json.dumps({"bench": "api_memory", "idle_mib": round(idle, 1), "rows": rows}))


if __name__ == "__main__":
    main()
