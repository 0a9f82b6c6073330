"""``make chaos``: the failure drill at full size, one line of results (plus JSON).

    python -m bench.chaos [--memes 500] [--batch-items 100] [--backend localstack|moto] ...

Runs the real services as processes against the emulator, SIGKILLs a random renderer,
consumer or notifier every few seconds and restarts it, cuts every service off from AWS for
``--outage`` seconds through a TCP proxy, and injects poison into both queues. Exits
non-zero unless every promise held (``ChaosReport.failures``): lost == 0, duplicated == 0
(one meme item and at most one DONE transition per submission), every output matches a
DONE meme, done == submitted, kills > 0, the outage reached the services, every
poison message was handled, and every meme's webhook (each meme carries a callback_url
to a loopback receiver that first answers 500 ten times) was delivered at least once,
every copy under the event's one webhook-id with a valid signature. A batch of
``--batch-items`` runs beside the memes: every item ends, its counters equal its items'
states, its ZIP holds every DONE item, and its batch.done is delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from devenv.drills.chaos import ChaosConfig, run_chaos
from devenv.run.backends.localstack import find_install


def localstack_installed() -> bool:
    try:
        find_install()
    except RuntimeError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memes", type=int, default=500)
    parser.add_argument("--batch-items", type=int, default=100, help="0: no batch")
    parser.add_argument("--renderers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--outage-after", type=float, default=5.0)
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument(
        "--backend",
        choices=("localstack", "moto"),
        default=None,
        help="default: localstack when installed (make setup-localstack), else moto",
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    backend = args.backend or ("localstack" if localstack_installed() else "moto")
    config = ChaosConfig(
        memes=args.memes,
        renderers=args.renderers,
        kill_every_s=args.kill_every,
        outage_s=args.outage,
        outage_after_s=args.outage_after,
        deadline_s=args.deadline,
        backend=backend,
        seed=args.seed,
        batch_items=args.batch_items,
    )
    with tempfile.TemporaryDirectory(prefix="memeforge-chaos-") as workdir:
        report = asyncio.run(run_chaos(config, Path(workdir)))
    print(f"backend: {backend}")
    print(report.line())
    print(report.json())
    failures = report.failures()
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
