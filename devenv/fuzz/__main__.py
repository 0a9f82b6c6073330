"""``python -m devenv.fuzz`` (``make fuzz``): schemathesis against the live product.

Starts the whole stack as ``make run`` does (emulator, bootstrap, the three services, a
dev key), then runs schemathesis on its OpenAPI document with every check and every
phase (stateful included), authenticated with the dev key: once with a fixed seed (the
same cases every run) and once with a random one (printed, so a failure can be replayed
with ``--seed``). Exits non-zero on any failure. The rate limit is off: the fuzzer is a
load generator, and the limit has its own tests (tests/e2e/test_quotas.py).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from devenv.run.emulator import BACKENDS
from devenv.run.stack import UNLIMITED_RATE, register_webhook_secret, start_stack

CONFIG = Path(__file__).with_name("schemathesis.toml")
FIXED_SEED = 20261201
PHASES = "examples,coverage,fuzzing,stateful"
SETTINGS = {**UNLIMITED_RATE, "MEMEFORGE_RENDER_PROCESSES": "2", "MEMEFORGE_RECEIVE_WAIT_S": "2"}


def schemathesis(api_url: str, api_key: str, *, seed: int, examples: int) -> int:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{api_url}/openapi.json",
        "--checks",
        "all",
        # "A created resource is available" cannot hold for POST /templates/uploads: it
        # creates a form to upload with, and complete answers 404 upload-not-found until
        # the client has sent the bytes to S3, which schemathesis cannot do. (--checks all
        # overrides the config file, so the exclusion is made here.) Every other check runs.
        "--exclude-checks",
        "ensure_resource_availability",
        "--phases",
        PHASES,
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--generation-database",
        "none",
    ]
    print(f"--- schemathesis, seed {seed}, at most {examples} examples per operation", flush=True)
    env = {**os.environ, "MEMEFORGE_API_KEY": api_key}
    return subprocess.run(command, env=env, check=False).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=BACKENDS, default=None)
    parser.add_argument("--examples", type=int, default=10, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=None, help="the second run's (default random)")
    args = parser.parse_args()
    seeds = [FIXED_SEED, args.seed if args.seed is not None else random.randrange(2**31)]
    with tempfile.TemporaryDirectory(prefix="memeforge-fuzz-") as workdir:
        stack = start_stack(Path(workdir), backend=args.backend, settings=SETTINGS)
        try:
            # A meme may name a callback_url only once its tenant has a signing secret.
            register_webhook_secret(stack.env)
            codes = [
                schemathesis(stack.api_url, stack.api_key, seed=seed, examples=args.examples)
                for seed in seeds
            ]
        finally:
            stack.stop()
    for seed, code in zip(seeds, codes, strict=True):
        print(f"seed {seed}: {'passed' if code == 0 else f'FAILED (exit {code})'}")
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
