"""CPU per AWS call inside a service process: ``make bench-sdk``.

    python -m bench.sdk_calls [--calls 1500] [--rounds 3]

Most of a service's CPU per meme is the SDK's per-call work (bench/pipeline.py
--profile), and on a shared machine the pipeline bench's CPU per meme swings with the
load and with SQS batch sizes. This one isolates what memeforge_common.aws and the
event loop decide: each variant runs in a fresh process that sends ``--calls`` DynamoDB
UpdateItem and SQS SendMessageBatch calls (8 at a time, the shapes the services send)
to a stub HTTP server on loopback, which answers ``{}`` at once, and reports its own
CPU time (``time.process_time``, warm-up excluded) per call. The stub's CPU is not
counted, so neither an emulator nor the network is in the figure: only the client's.

Variants, run in turn in each round (so load lands on all alike), medians reported:

- ``defaults``: ``client_config()`` with botocore's own User-Agent and parameter
  validation (what the services ran before), on asyncio's event loop;
- ``client_config``: ``client_config()`` as the services use it, on asyncio;
- ``client_config+uvloop``: the same on uvloop;
- ``+fast_signing``: that, with memeforge_common.signing installed on each client, as the
  services ran it before the lean transport (``AwsClients.open`` with
  MEMEFORGE_LEAN_CALLS=0);
- ``lean``: that, with the hot calls sent by memeforge_common.leancalls, as the services
  run it now.

Then the signature alone, in this process: botocore's SigV4 signers against
memeforge_common.signing's on a DynamoDB and an S3 PutObject request, alternated, CPU per
signature (the per-call figures above swing more between rounds than signing costs).

Prints a table and one JSON line (``cpu_us_per_call`` and ``ratio_vs_defaults`` by
variant, ``signing_us`` by signer, the load average).
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
from pathlib import Path

import aioboto3
import uvloop
from aiobotocore.config import AioConfig
from aiohttp import web
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from memeforge_common import leanclients, signing
from memeforge_common.aws import RefreshOnCredentialError, client_config, session_credentials

from devenv.run.proc import free_port

VARIANTS = ("defaults", "client_config", "client_config+uvloop", "+fast_signing", "lean")
CONCURRENCY = 8
WARM_UP = 100


def serve_stub(port: int) -> None:
    """Answer every request with an empty JSON object (both protocols parse it)."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"{}", content_type="application/x-amz-json-1.0")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def config_for(variant: str) -> AioConfig:
    if variant == "defaults":
        return client_config().merge(AioConfig(user_agent=None, parameter_validation=True))
    return client_config()


async def measure(variant: str, endpoint: str, calls: int) -> float:
    """CPU microseconds per call, this process, after a warm-up."""
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    config = config_for(variant)
    async with (
        session.client("dynamodb", endpoint_url=endpoint, config=config) as dynamodb,
        session.client("sqs", endpoint_url=endpoint, config=config) as sqs,
    ):
        if variant in ("+fast_signing", "lean"):
            signing.install(dynamodb)
            signing.install(sqs)
        if variant == "lean":
            credentials = await session_credentials(session)
            refresh = RefreshOnCredentialError(session)
            dynamodb = await leanclients.lean_dynamodb(dynamodb, credentials, refresh)
            sqs = await leanclients.lean_sqs(sqs, credentials, refresh)

        async def one(i: int) -> None:
            if i % 2:
                await dynamodb.update_item(
                    TableName="memeforge-memes",
                    Key={"pk": {"S": f"meme#{i:032x}"}, "sk": {"S": "meme"}},
                    UpdateExpression="SET #state = :to, state_times.#to = :now",
                    ConditionExpression="#state = :from",
                    ExpressionAttributeNames={"#state": "state", "#to": "QUEUED"},
                    ExpressionAttributeValues={
                        ":to": {"S": "QUEUED"},
                        ":from": {"S": "PENDING"},
                        ":now": {"S": "2026-01-01T00:00:00.000000Z"},
                    },
                    ReturnValues="ALL_NEW",
                )
            else:
                await sqs.send_message_batch(
                    QueueUrl=f"{endpoint}/000000000000/memeforge-requests",
                    Entries=[
                        {
                            "Id": "0",
                            "MessageBody": json.dumps({"v": 1, "meme_id": f"{i:032x}"}),
                            "MessageAttributes": {
                                "traceparent": {
                                    "DataType": "String",
                                    "StringValue": f"00-{i:032x}-{i:016x}-01",
                                }
                            },
                        }
                    ],
                )

        slots = asyncio.Semaphore(CONCURRENCY)

        async def bounded(i: int) -> None:
            async with slots:
                await one(i)

        await asyncio.gather(*(bounded(i) for i in range(WARM_UP)))
        started = time.process_time()
        await asyncio.gather(*(bounded(i) for i in range(calls)))
        return (time.process_time() - started) / calls * 1e6


SIGNINGS = 5000


def signing_cost() -> dict[str, float]:
    """CPU microseconds per signature, botocore's signers and ours, alternated."""
    credentials = Credentials("AKIDEXAMPLE", "secret", "token")
    body = json.dumps({"TableName": "memeforge-memes", "Key": {"id": {"S": "0" * 32}}})
    shapes = (
        (SigV4Auth, signing.FastSigV4Auth, "dynamodb", "http://127.0.0.1:4566/", body.encode()),
        (S3SigV4Auth, signing.FastS3SigV4Auth, "s3", "http://127.0.0.1:4566/b/k", b"x" * 65536),
    )
    spent = {"botocore": 0.0, "memeforge": 0.0}
    for _ in range(3):
        for botocores, ours, service, url, data in shapes:
            for name, cls in (("botocore", botocores), ("memeforge", ours)):
                started = time.process_time()
                for _ in range(SIGNINGS):
                    request = AWSRequest(method="POST", url=url, data=data, headers={"X-A": "b"})
                    cls(credentials, service, "us-east-1").add_auth(request)
                spent[name] += time.process_time() - started
    return {name: s / (3 * len(shapes) * SIGNINGS) * 1e6 for name, s in spent.items()}


def child(variant: str, endpoint: str, calls: int) -> None:
    run = asyncio.run if variant in ("defaults", "client_config") else uvloop.run
    print(json.dumps({"cpu_us_per_call": run(measure(variant, endpoint, calls))}))


def run_variant(variant: str, endpoint: str, calls: int) -> float:
    command = [sys.executable, "-m", "bench.sdk_calls", "--child", variant, endpoint]
    done = subprocess.run(
        [*command, "--calls", str(calls)], check=True, capture_output=True, text=True
    )
    return float(json.loads(done.stdout.splitlines()[-1])["cpu_us_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.calls)
        return
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-c", f"from bench.sdk_calls import serve_stub; serve_stub({port})"]
    )
    try:
        time.sleep(2.0)  # the stub binds its port
        endpoint = f"http://127.0.0.1:{port}"
        samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                samples[variant].append(run_variant(variant, endpoint, args.calls))
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    medians = {v: statistics.median(s) for v, s in samples.items()}
    signatures = signing_cost()
    base = medians["defaults"]
    print(f"\nbench/sdk_calls: {args.calls} calls x {args.rounds} rounds, load average {load}\n")
    print("| variant | CPU us per call (median) | rounds | vs defaults |")
    print("|---|---|---|---|")
    for variant, median in medians.items():
        rounds = ", ".join(f"{s:.0f}" for s in samples[variant])
        print(f"| {variant} | {median:.0f} | {rounds} | {median / base:.2f}x |")
    ours, botocores = signatures["memeforge"], signatures["botocore"]
    print(
        f"\nSigV4 signature alone (DynamoDB + S3 PutObject, 64 KB body): botocore "
        f"{botocores:.0f} us, memeforge_common.signing {ours:.0f} us ({ours / botocores:.2f}x)"
    )
    print(
        json.dumps(
            {
                "bench": "sdk_calls",
                "load_average": load,
                "calls": args.calls,
                "rounds": args.rounds,
                "cpu_us_per_call": {v: round(m, 1) for v, m in medians.items()},
                "ratio_vs_defaults": {v: round(m / base, 3) for v, m in medians.items()},
                "signing_us": {k: round(v, 1) for k, v in signatures.items()},
                "cpu_count": os.cpu_count(),
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
