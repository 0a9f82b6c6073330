"""Chaos drill: real services, killed at random, cut off from AWS, fed poison.

Used by ``bench/chaos.py`` (``make chaos``) and, shortened, by the e2e test suite.
Everything runs on loopback: the emulator, a TCP proxy between the services and the
emulator (so an outage can be staged while the emulator keeps its state), the four
services as processes, and a webhook receiver that every meme calls back. The driver
inspects the emulator directly, past the proxy, and what the receiver got: every meme
must be announced at least once, every copy under the event's one ``webhook-id`` and
with a valid signature. A batch submitted beside the memes goes through the same kills:
every item must end, its counters must add up to its items' states, its ZIP must hold
every DONE item, and its ``batch.done`` must reach the receiver under its one id.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import signal
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from memeforge_common.aws import AwsClients
from memeforge_common.batches import BatchStore
from memeforge_common.fanout import batch_meme_id
from memeforge_common.items import MemeStore, new_item
from memeforge_common.models import (
    BATCHES_FOLDER,
    Batch,
    BatchState,
    MemeState,
    RenderJob,
    RenderSpec,
    RequestMessage,
    classic_boxes,
    template_key,
)
from memeforge_common.queues import queue_url
from memeforge_common.settings import Settings
from standardwebhooks.webhooks import Webhook

from devenv.drills.receiver import Delivery, Receiver
from devenv.drills.tcpproxy import TcpProxy
from devenv.drills.templates import upload_gradient_template
from devenv.run.emulator import start_emulator
from devenv.run.proc import free_port, http_ok, wait_until
from devenv.run.stack import (
    DEV_TENANT,
    UNLIMITED_RATE,
    Stack,
    bootstrap,
    create_key,
    register_webhook_secret,
)

TEMPLATE_ID = "chaos-template"
ANIMATED_SEED = "bouncing-ball"
ANIMATED_EVERY = 10
"""One meme in ten captions the animated seed as a GIF."""
SPEC = RenderSpec(boxes=classic_boxes("chaos", "monkey"))

# Settings that make failures play out in seconds rather than minutes.
FAST_FAILURE_SETTINGS = {
    "MEMEFORGE_RECEIVE_WAIT_S": "2",
    "MEMEFORGE_VISIBILITY_TIMEOUT_S": "15",
    "MEMEFORGE_RETRY_BASE_S": "1",
    "MEMEFORGE_RETRY_MAX_S": "8",
    "MEMEFORGE_MAX_RECEIVE_COUNT": "10",
    "MEMEFORGE_SWEEP_INTERVAL_S": "3",
    "MEMEFORGE_PENDING_TIMEOUT_S": "20",
    "MEMEFORGE_RENDERING_TIMEOUT_S": "60",
    "MEMEFORGE_SHUTDOWN_GRACE_S": "5",
    "MEMEFORGE_RENDER_PROCESSES": "1",
    "MEMEFORGE_WORKER_CONCURRENCY": "8",
    # Webhooks to the drill's loopback receiver, retried within seconds.
    "MEMEFORGE_EGRESS_ALLOW": "127.0.0.1/32",
    "MEMEFORGE_EGRESS_TIMEOUT_S": "5",
    "MEMEFORGE_NOTIFY_RETRY_BASE_S": "1",
    "MEMEFORGE_NOTIFY_RETRY_MAX_S": "4",
    "MEMEFORGE_NOTIFY_MAX_ATTEMPTS": "40",
    "MEMEFORGE_NOTIFY_ENQUEUE_TIMEOUT_S": "10",
    **UNLIMITED_RATE,
}
HOOK_PATH = "/chaos"
WEBHOOK_TOLERANCE_S = 300  # Standard Webhooks: a timestamp more than 5 minutes off is refused
# The receiver answers 500 to this many deliveries first: the retries are part of the drill.
HOOK_FAILURES = 10
BATCH_HOOK_PATH = "/chaos-batch"


@dataclass
class ChaosConfig:
    memes: int = 500
    renderers: int = 2
    kill_every_s: float = 4.0
    max_kills: int | None = None
    min_kills: int = 0
    outage_s: float = 10.0
    outage_after_s: float = 5.0
    submit_concurrency: int = 8
    deadline_s: float = 300.0
    backend: str | None = None
    seed: int | None = None
    batch_items: int = 0  # a batch of this many beside the memes; 0: none


@dataclass
class BatchOutcome:
    """The batch at the end: its state, its counters, its items' states as read one by
    one, the images in its ZIP, and whether its batch.done got a 2xx."""

    items: int
    state: str
    counted: dict[str, int]
    item_states: dict[str, int]
    archive_files: int
    announced: bool

    def line(self) -> str:
        return (
            f"batch={self.state}:{self.items} counted={self.counted} "
            f"items={self.item_states} zip={self.archive_files} announced={self.announced}"
        )

    def checks(self) -> dict[str, bool]:
        counted = self.counted
        ended = {state: self.item_states.get(state, 0) for state in counted}
        return {
            "the batch ended (DONE)": self.state == "DONE",
            "no batch item lost": sum(ended.values()) == self.items,
            "the batch's counts add up": counted == ended,
            "the batch's ZIP holds every DONE item": self.archive_files == counted["DONE"],
            "batch.done delivered": self.announced,
        }


@dataclass
class ChaosReport:
    backend: str
    submitted: int
    done: int
    failed: int
    failed_reasons: dict[str, int]
    lost: int
    # Submissions that took effect more than once: meme items beyond one per submission
    # (and per poison meme), plus memes whose DONE transition was won more than once.
    duplicated: int
    meme_items: int
    extra_items: int
    repeated_done: int
    # Outputs a client could see wrongly: an object no DONE item points at, or a DONE
    # item without its object.
    mismatched_outputs: int
    re_renders: int
    max_attempts: int
    kills: int
    outage_s: float
    refused_during_outage: int
    drain_s: float
    total_s: float
    poison: dict[str, str] = field(default_factory=dict)
    poison_ok: bool = True
    # Webhooks: memes announced (a 2xx delivery of their event), deliveries in all
    # (retries and redeliveries included), deliveries under another id than their
    # event's, and deliveries whose signature did not verify.
    webhooks_delivered: int = 0
    webhook_deliveries: int = 0
    webhook_ids_unstable: int = 0
    webhook_bad_signatures: int = 0
    batch: BatchOutcome | None = field(default=None, init=False)  # None: no batch in the drill

    def line(self) -> str:
        reasons = ",".join(f"{k}={v}" for k, v in sorted(self.failed_reasons.items())) or "-"
        return (
            f"chaos[{self.backend}] submitted={self.submitted} DONE={self.done} "
            f"FAILED={self.failed} ({reasons}) lost={self.lost} duplicated={self.duplicated} "
            f"(items={self.meme_items} extra={self.extra_items} "
            f"repeated-DONE={self.repeated_done}) mismatched={self.mismatched_outputs} "
            f"re-renders={self.re_renders} max_attempts={self.max_attempts} kills={self.kills} "
            f"outage={self.outage_s:.0f}s drain={self.drain_s:.1f}s total={self.total_s:.1f}s "
            f"poison={'ok' if self.poison_ok else 'NOT OK'} "
            f"webhooks={self.webhooks_delivered}/{self.submitted} "
            f"(deliveries={self.webhook_deliveries} unstable-ids={self.webhook_ids_unstable} "
            f"bad-signatures={self.webhook_bad_signatures})"
            + (f" {self.batch.line()}" if self.batch else "")
        )

    def json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def failures(self) -> list[str]:
        """What the drill promises, as the checks that did not hold (empty: passed)."""
        checks = {
            "lost == 0": self.lost == 0,
            "duplicated == 0": self.duplicated == 0,
            "mismatched_outputs == 0": self.mismatched_outputs == 0,
            "done == submitted": self.done == self.submitted,
            "kills > 0": self.kills > 0,
            "refused_during_outage > 0 (the outage reached the services)": (
                self.outage_s <= 0 or self.refused_during_outage > 0
            ),
            "poison handled": self.poison_ok,
            "every meme's webhook delivered": self.webhooks_delivered == self.submitted,
            "one webhook-id per event": self.webhook_ids_unstable == 0,
            "every webhook signed": self.webhook_bad_signatures == 0,
        }
        if self.batch is not None:
            checks |= self.batch.checks()
        return [name for name, held in checks.items() if not held]


class ChaosRun:
    def __init__(self, config: ChaosConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.random = random.Random(config.seed)
        self.kills = 0
        self.enough_kills = asyncio.Event()
        if config.min_kills == 0:
            self.enough_kills.set()
        self.proxies: list[TcpProxy] = []
        self.stack: Stack | None = None
        self.hooks = Receiver()
        self.secret = ""

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        emulator = start_emulator(self.config.backend, workdir=self.workdir)
        try:
            # The driver talks to the emulator directly; the services through proxies.
            direct_env = emulator.child_env(FAST_FAILURE_SETTINGS)
            os.environ.update({k: v for k, v in direct_env.items() if k.startswith("AWS_")})
            proxied = {}
            for name, url in emulator.env.items():
                proxy, proxy_url = await TcpProxy.in_front_of(url)
                self.proxies.append(proxy)
                proxied[name] = proxy_url
            port = free_port()
            service_env = {
                **direct_env,
                **proxied,
                "MEMEFORGE_API_HOST": "127.0.0.1",
                "MEMEFORGE_API_PORT": str(port),
            }
            await asyncio.to_thread(bootstrap, direct_env)
            settings = Settings()  # reads the same MEMEFORGE_* defaults the services use
            self.stack = Stack(emulator, service_env, f"http://127.0.0.1:{port}", self.workdir)
            self.stack.api_key = await asyncio.to_thread(create_key, direct_env)
            self.secret = await asyncio.to_thread(register_webhook_secret, direct_env)
            self.hooks.fail(HOOK_PATH, HOOK_FAILURES)
            self.hooks.up()
            self.stack.start_service("consumer")
            self.stack.start_service("notifier")
            for i in range(self.config.renderers):
                self.stack.start_service(f"renderer-{i}")
            api = self.stack.start_service("api")
            await asyncio.to_thread(
                wait_until,
                http_ok(f"{self.stack.api_url}/healthz"),
                timeout=60,
                what="api",
                proc=api,
            )
            async with AwsClients.open(settings) as aws:
                return await self._drill(aws, settings, started)
        finally:
            # Off the event loop: the proxies run on it and must keep forwarding while
            # the services drain, or every service would hang until its SIGKILL.
            if self.stack is not None:
                await asyncio.to_thread(self.stack.stop)
            else:
                await asyncio.to_thread(emulator.stop)
            for proxy in self.proxies:
                await proxy.close()
            self.hooks.down()

    async def _drill(self, aws: AwsClients, settings: Settings, started: float) -> ChaosReport:
        await aws.s3.put_bucket_versioning(
            Bucket=settings.bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        assert self.stack is not None
        async with httpx.AsyncClient(
            base_url=self._api_url, headers=self.stack.auth_headers, timeout=30
        ) as api:
            await upload_gradient_template(api, TEMPLATE_ID, "Chaos", (480, 360))
            stop = asyncio.Event()
            killer = asyncio.create_task(self._kill_randomly(stop))
            outage = asyncio.create_task(self._outage())
            try:
                poison = await self._inject_poison(aws, settings, api)
                ids, batch_id = await asyncio.gather(self._submit(api), self._submit_batch(api))
                submitted_at = time.monotonic()
                await outage
                await self.enough_kills.wait()  # the drill promised at least min_kills
                batch_items = self._batch_item_ids(batch_id)
                settled = await self._wait_until_settled(
                    aws, settings, ids + list(poison) + batch_items
                )
                await self._wait_until_announced(ids, started + self.config.deadline_s)
                batch = await self._wait_until_archived(
                    aws, settings, batch_id, started + self.config.deadline_s
                )
            finally:
                # Also when the drill fails: a killer still running would restart a
                # service after the stack's stop, leaving it behind as an orphan.
                stop.set()
                outage.cancel()
                await killer
        drain_s = time.monotonic() - submitted_at
        report = await self._report(
            aws, settings, ids, poison, settled, drain_s, started, batch_items
        )
        if batch is not None:
            report.batch = await self._report_batch(aws, settings, report, batch, settled)
        return report

    @property
    def _api_url(self) -> str:
        assert self.stack is not None
        return self.stack.api_url

    async def _submit(self, api: httpx.AsyncClient) -> list[str]:
        """POST every meme, concurrently (``_post`` retries as a careful client)."""
        gate = asyncio.Semaphore(self.config.submit_concurrency)

        async def submit(i: int) -> str:
            body = {
                "template_id": TEMPLATE_ID,
                "top": f"meme {i}",
                "bottom": "survives chaos",
                "callback_url": self.hooks.url(HOOK_PATH),
            }
            if i % ANIMATED_EVERY == 0:  # a few long renders among the stills
                body |= {"template_id": ANIMATED_SEED, "format": "gif"}
            async with gate:
                return await _post(api, "/memes", body)

        return list(await asyncio.gather(*(submit(i) for i in range(self.config.memes))))

    async def _submit_batch(self, api: httpx.AsyncClient) -> str | None:
        if not self.config.batch_items:
            return None
        items = [
            {"template_id": TEMPLATE_ID, "top": f"batch item {i}", "bottom": "survives chaos"}
            for i in range(self.config.batch_items)
        ]
        body = {"items": items, "callback_url": self.hooks.url(BATCH_HOOK_PATH)}
        return await _post(api, "/batches", body)

    def _batch_item_ids(self, batch_id: str | None) -> list[str]:
        if batch_id is None:
            return []
        return [batch_meme_id(batch_id, seq) for seq in range(self.config.batch_items)]

    def _batch_announced(self) -> bool:
        return any(200 <= d.status < 300 for d in self.hooks.to(BATCH_HOOK_PATH))

    async def _wait_until_archived(
        self, aws: AwsClients, settings: Settings, batch_id: str | None, deadline: float
    ) -> Batch | None:
        """The batch once DONE and its batch.done answered 2xx (or as it is at the deadline)."""
        if batch_id is None:
            return None
        batches = BatchStore(aws.dynamodb, settings.table)
        while True:
            batch = await batches.get(batch_id)
            done = batch is not None and batch.state is BatchState.DONE
            if (done and self._batch_announced()) or time.monotonic() >= deadline:
                return batch
            await asyncio.sleep(1.0)

    async def _kill_randomly(self, stop: asyncio.Event) -> None:
        assert self.stack is not None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.kill_every_s)
            if stop.is_set() or (
                self.config.max_kills is not None and self.kills >= self.config.max_kills
            ):
                continue
            victims = [n for n in self.stack.services if n != "api"]
            name = self.random.choice(victims)
            proc = self.stack.services[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the pool's children die with it
            await asyncio.to_thread(proc.wait)
            self.kills += 1
            if self.kills >= self.config.min_kills:
                self.enough_kills.set()
            self.stack.start_service(name)

    async def _outage(self) -> None:
        if self.config.outage_s <= 0:
            return
        await asyncio.sleep(self.config.outage_after_s)
        for proxy in self.proxies:
            proxy.pause(self.config.outage_s)
        await asyncio.sleep(self.config.outage_s)

    async def _inject_poison(
        self, aws: AwsClients, settings: Settings, api: httpx.AsyncClient
    ) -> dict[str, str]:
        """Poison both queues directly. Returns meme id → what must become of it; the
        messages that name no meme must end up parked in a DLQ (checked in the report)."""
        store = MemeStore(aws.dynamodb, settings.table)
        requests = await queue_url(aws.sqs, settings.request_queue)
        renders = await queue_url(aws.sqs, settings.render_queue)
        unknown = uuid.uuid4().hex
        garbage = [
            (requests, "{this is not json"),
            (requests, json.dumps({"v": 99, "kind": "meme.requested", "meme_id": unknown})),
            (requests, RequestMessage(meme_id=unknown).model_dump_json()),
            (renders, "<<binary-ish garbage \ufffd>>"),
            (renders, json.dumps({"v": 42, "kind": "meme.render", "meme_id": unknown})),
        ]
        for url, body in garbage:
            await aws.sqs.send_message(QueueUrl=url, MessageBody=body)
        expected: dict[str, str] = {}

        # A request whose template is gone: the consumer fails it.
        gone = await _post(api, "/memes", {"template_id": "deleted-template", "top": "x"})
        expected[gone] = "FAILED:template_not_found"

        async def queued_item(template_id: str, body: bytes, *, delete_first: bool = False) -> str:
            tkey = template_key(template_id, DEV_TENANT)
            put = await aws.s3.put_object(Bucket=settings.bucket, Key=tkey, Body=body)
            if delete_first:  # the template existed when the job was made, not any more
                await aws.s3.delete_object(Bucket=settings.bucket, Key=tkey)
            item = new_item(uuid.uuid4().hex, template_id, SPEC, tenant=DEV_TENANT)
            await store.create(item)  # PENDING, as the consumer leaves it
            job = RenderJob(
                meme_id=item.id,
                template_key=tkey,
                template_etag=put["ETag"],
                spec=SPEC,
                tenant=DEV_TENANT,
            )
            await aws.sqs.send_message(QueueUrl=renders, MessageBody=job.model_dump_json())
            return item.id

        # Render jobs whose template was deleted, or whose bytes are not an image.
        deleted = await queued_item("deleted-before-render", b"soon gone", delete_first=True)
        expected[deleted] = "FAILED:template_not_found"
        corrupt = await queued_item("corrupt-bytes", b"\xff\xd8\xff garbage")
        expected[corrupt] = "FAILED:corrupt_image"
        return expected

    def _announced(self) -> set[str]:
        """Memes whose event the receiver answered 2xx to (by the payload's meme id)."""
        found = set()
        for delivery in self.hooks.to(HOOK_PATH):
            if 200 <= delivery.status < 300:
                with contextlib.suppress(ValueError, KeyError):
                    found.add(str(json.loads(delivery.body)["data"]["id"]))
        return found

    async def _wait_until_announced(self, ids: list[str], deadline: float) -> None:
        while time.monotonic() < deadline:
            if not set(ids) - self._announced():
                return
            await asyncio.sleep(1.0)

    def _webhook_counts(self, ids: list[str]) -> dict[str, int]:
        deliveries = self.hooks.to(HOOK_PATH)
        return {
            "webhooks_delivered": len(set(ids) & self._announced()),
            "webhook_deliveries": len(deliveries),
            "webhook_ids_unstable": sum(not _stable_id(d) for d in deliveries),
            "webhook_bad_signatures": sum(not self._signed(d) for d in deliveries),
        }

    def _signed(self, delivery: Delivery) -> bool:
        return signed_when_received(self.secret, delivery)

    async def _wait_until_settled(
        self, aws: AwsClients, settings: Settings, ids: list[str]
    ) -> dict[str, Any]:
        store = MemeStore(aws.dynamodb, settings.table)
        deadline = time.monotonic() + self.config.deadline_s
        items: dict[str, Any] = {}
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            for meme_id in list(pending):
                item = await store.get(meme_id)
                if item is not None and item.state.terminal:
                    items[meme_id] = item
                    pending.discard(meme_id)
            if pending:
                await asyncio.sleep(1.0)
        for meme_id in pending:
            items[meme_id] = await store.get(meme_id)
        return items

    async def _report(
        self,
        aws: AwsClients,
        settings: Settings,
        ids: list[str],
        poison: dict[str, str],
        items: dict[str, Any],
        drain_s: float,
        started: float,
        batch_items: list[str],
    ) -> ChaosReport:
        states: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for meme_id in ids:
            item = items.get(meme_id)
            state = item.state.value if item is not None else "MISSING"
            states[state] += 1
            if item is not None and item.failure is not None:
                reasons[item.failure.reason] += 1
        versions = await _output_versions(aws, settings.bucket)
        done_keys = {
            items[i].result.key
            for i in ids + list(poison) + batch_items
            if items.get(i) is not None and items[i].state is MemeState.DONE
        }
        mismatched = len(set(versions) - done_keys) + len(done_keys - set(versions))
        meme_ids = await _meme_ids(aws, settings.table)
        extra_items = len(meme_ids - set(ids) - set(poison) - set(batch_items))
        done_wins = self._done_transitions()
        repeated_done = sum(1 for n in done_wins.values() if n > 1)
        poison_outcomes = {}
        for meme_id in poison:
            item = items.get(meme_id)
            got = "MISSING"
            if item is not None:
                got = item.state.value + (f":{item.failure.reason}" if item.failure else "")
            poison_outcomes[meme_id] = got
        parked = await _dlq_depth(aws, settings)
        poison_outcomes["parked_in_dlqs"] = str(parked)
        poison_ok = all(poison_outcomes[m] == e for m, e in poison.items()) and parked >= 5
        attempts = [items[i].attempts for i in ids if items.get(i) is not None]
        refused = sum(p.refused for p in self.proxies)
        return ChaosReport(
            backend=self.stack.emulator.backend if self.stack else "?",
            submitted=len(ids),
            done=states["DONE"],
            failed=states["FAILED"],
            failed_reasons=dict(reasons),
            lost=len(ids) - states["DONE"] - states["FAILED"],
            duplicated=extra_items + repeated_done,
            meme_items=len(meme_ids),
            extra_items=extra_items,
            repeated_done=repeated_done,
            mismatched_outputs=mismatched,
            re_renders=sum(n - 1 for n in versions.values()),
            max_attempts=max(attempts, default=0),
            kills=self.kills,
            outage_s=self.config.outage_s,
            refused_during_outage=refused,
            drain_s=drain_s,
            total_s=time.monotonic() - started,
            poison=poison_outcomes,
            poison_ok=poison_ok,
            **self._webhook_counts(ids),
        )

    async def _report_batch(
        self,
        aws: AwsClients,
        settings: Settings,
        report: ChaosReport,
        batch: Batch,
        items: dict[str, Any],
    ) -> BatchOutcome:
        """The batch's outcome; its batch.done deliveries join the report's webhook counts."""
        states: Counter[str] = Counter(
            items[i].state.value if items.get(i) is not None else "MISSING"
            for i in self._batch_item_ids(batch.id)
        )
        files = 0
        if batch.archive is not None:
            obj = await aws.s3.get_object(Bucket=settings.bucket, Key=batch.archive.key)
            async with obj["Body"] as body:
                data = await body.read()
            with zipfile.ZipFile(io.BytesIO(data)) as zipped:
                files = sum(1 for name in zipped.namelist() if name != "manifest.json")
        deliveries = self.hooks.to(BATCH_HOOK_PATH)
        report.webhook_deliveries += len(deliveries)
        report.webhook_ids_unstable += sum(not _stable_id(d) for d in deliveries)
        report.webhook_bad_signatures += sum(not self._signed(d) for d in deliveries)
        return BatchOutcome(
            items=batch.total,
            state=batch.state.value,
            counted={"DONE": batch.done, "FAILED": batch.failed},
            item_states=dict(states),
            archive_files=files,
            announced=self._batch_announced(),
        )

    def _done_transitions(self) -> Counter[str]:
        """Meme id → how many times a renderer won its DONE transition. The renderer logs
        "rendered" only when its conditional write to DONE succeeded; a renderer killed
        between the write and the log line makes this an undercount, never an overcount."""
        wins: Counter[str] = Counter()
        for log in self.workdir.glob("renderer-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if '"rendered"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("message") == "rendered" and record.get("meme_id"):
                        wins[record["meme_id"]] += 1
        return wins


def _stable_id(delivery: Delivery) -> bool:
    """The delivery carries its event's id: msg_<meme id>_<event>, whoever sent it."""
    try:
        payload = json.loads(delivery.body)
        meme_id, event = payload["data"]["id"], payload["type"]
    except (ValueError, KeyError):
        return False
    return delivery.headers.get("webhook-id") == f"msg_{meme_id}_{event.replace('.', '_')}"


async def _post(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> str:
    """POST a meme (or a batch) like a careful client (the outage may be on): retry 503s
    and dropped connections with the same Idempotency-Key, so a retry never makes a
    second one."""
    key = f"chaos-{uuid.uuid4().hex}"
    for attempt in range(60):
        try:
            response = await api.post(path, json=body, headers={"Idempotency-Key": key})
            if response.status_code == 202:
                return str(response.json()["id"])
            if response.status_code != 503:
                raise RuntimeError(f"meme refused: {response.status_code} {response.text}")
        except httpx.TransportError:
            pass
        await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
    raise RuntimeError(f"could not submit {body}")


async def _meme_ids(aws: AwsClients, table: str) -> set[str]:
    """Every meme item in the table (idempotency records are not memes)."""
    found: set[str] = set()
    paginator = aws.dynamodb.get_paginator("scan")
    async for page in paginator.paginate(
        TableName=table, ProjectionExpression="id, template_id", ConsistentRead=True
    ):
        for record in page.get("Items", []):
            if "template_id" in record:
                found.add(record["id"]["S"])
    return found


async def _output_versions(aws: AwsClients, bucket: str) -> dict[str, int]:
    """Output key → how many versions were written (versioning is on for the drill)."""
    counts: Counter[str] = Counter()
    paginator = aws.s3.get_paginator("list_object_versions")
    async for page in paginator.paginate(Bucket=bucket, Prefix="memes/"):
        for version in page.get("Versions", []):
            if f"/{BATCHES_FOLDER}" not in version["Key"]:  # a batch's request and ZIP
                counts[version["Key"]] += 1
    return dict(counts)


async def _dlq_depth(aws: AwsClients, settings: Settings) -> int:
    total = 0
    for name in (settings.request_dlq, settings.render_dlq):
        url = await queue_url(aws.sqs, name)
        attributes = await aws.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        values = attributes["Attributes"]
        total += int(values.get("ApproximateNumberOfMessages", 0))
        total += int(values.get("ApproximateNumberOfMessagesNotVisible", 0))
    return total


async def run_chaos(config: ChaosConfig, workdir: Path) -> ChaosReport:
    saved = dict(os.environ)
    try:
        return await ChaosRun(config, workdir).run()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def signed_when_received(secret: str, delivery: Delivery) -> bool:
    """Signed with ``secret``, and fresh when it arrived. Webhook.verify judges freshness
    against now, and a long drill checks every delivery at its end, past the Standard
    Webhooks tolerance (5 minutes) for the early ones."""
    headers = delivery.headers
    try:
        sent = int(headers["webhook-timestamp"])
        expected = Webhook(secret).sign(
            headers["webhook-id"], datetime.fromtimestamp(sent, UTC), delivery.body.decode()
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return False
    fresh = abs(delivery.received_at - sent) <= WEBHOOK_TOLERANCE_S
    return fresh and expected in headers.get("webhook-signature", "").split(" ")
