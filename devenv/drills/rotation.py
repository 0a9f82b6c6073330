"""Key rotation under load: the pipeline keeps working while every service's keys rotate.

Used by ``bench/rotation_soak.py`` (``make rotation-soak``) and, shortened, by the e2e suite.
moto enforces IAM (``devenv.iam.moto_iam``); each service gets its own IAM user's keys from
``devenv.iam.credentials_vendor`` through the container credentials provider, and the vendor
rotates them (new key served, old one deactivated, verified refused, deleted). Meanwhile
memes are submitted at a steady rate, polled until they settle and their images downloaded
through presigned URLs. The run lasts until ``rotations`` old keys per service have been
retired (a condition read from the vendor's log, not a timer). The report says whether:
every meme ended DONE, no request failed, no service process was restarted or died, every
service fetched every key generation that was retired, and every retired key was refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devenv.drills.templates import upload_gradient_template
from devenv.iam.users import SERVICES, Rotation, VendedCredentials
from devenv.run.backends.moto import start_moto
from devenv.run.stack import UNLIMITED_RATE, Stack, start_stack

TEMPLATE_ID = "rotation-template"
# What a service would log if it ever signed with a retired or unknown key.
CREDENTIAL_ERRORS = re.compile(
    r"ExpiredToken|InvalidClientTokenId|UnrecognizedClientException|SignatureDoesNotMatch"
    r"|InvalidSignatureException|InvalidAccessKeyId|InvalidToken|CredentialRetrievalError"
    r"|NoCredentialsError|Unable to locate credentials"
)
SETTINGS = {
    "MEMEFORGE_RECEIVE_WAIT_S": "2",
    "MEMEFORGE_RETRY_BASE_S": "1",
    "MEMEFORGE_RETRY_MAX_S": "4",
    "MEMEFORGE_SHUTDOWN_GRACE_S": "5",
    **UNLIMITED_RATE,
}


@dataclass
class RotationConfig:
    rotations: int = 3  # run until this many keys per service have been retired on schedule
    rotate_every_s: float = 8.0
    overlap_s: float = 5.0
    expiration_s: float = 20.0
    rate: float = 4.0  # memes submitted per second
    renderers: int = 1
    render_processes: int = 2
    # Emergency revocation (vendor SIGUSR1: new keys now, old ones deleted at once) this many
    # seconds into the load; services must refresh on the refusals and lose nothing.
    revoke_after_s: float | None = None
    deadline_s: float = 240.0


@dataclass
class RotationReport:
    rotations: int
    revocations: int
    retired: dict[str, int]
    refused_after_deactivation: int
    accepted_after_deactivation: int
    submitted: int
    done: int
    failed: int
    unsettled: int
    request_errors: dict[str, int]
    downloads: int
    stale_presigned: int
    fetches: dict[str, int]
    generations: dict[str, list[int]]
    missed_generations: dict[str, list[int]]
    restarted: list[str]
    credential_errors: dict[str, int]
    load_s: float
    total_s: float
    pids: dict[str, int] = field(default_factory=dict)

    def ok(self) -> bool:
        return (
            self.failed == 0
            and self.unsettled == 0
            and self.done == self.submitted > 0
            and not self.request_errors
            and not self.restarted
            and self.accepted_after_deactivation == 0
            and not any(self.missed_generations.values())
            and all(n > 0 for n in self.fetches.values())
        )

    def line(self) -> str:
        retired = ",".join(f"{k}={v}" for k, v in sorted(self.retired.items()))
        fetches = ",".join(f"{k}={v}" for k, v in sorted(self.fetches.items()))
        gens = ",".join(f"{k}={len(v)}" for k, v in sorted(self.generations.items()))
        errors = ",".join(f"{k}={v}" for k, v in sorted(self.request_errors.items())) or "0"
        cred = ",".join(f"{k}={v}" for k, v in sorted(self.credential_errors.items())) or "0"
        return (
            f"rotation rotations={self.rotations} revocations={self.revocations} "
            f"retired[{retired}] "
            f"refused={self.refused_after_deactivation} "
            f"still-accepted={self.accepted_after_deactivation} submitted={self.submitted} "
            f"DONE={self.done} FAILED={self.failed} unsettled={self.unsettled} "
            f"request-errors={errors} downloads={self.downloads} "
            f"stale-presigned={self.stale_presigned} fetches[{fetches}] "
            f"generations-fetched[{gens}] restarted={','.join(self.restarted) or '-'} "
            f"credential-errors-in-logs={cred} load={self.load_s:.1f}s "
            f"total={self.total_s:.1f}s {'OK' if self.ok() else 'NOT OK'}"
        )

    def json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def vendor_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


class RotationRun:
    def __init__(self, config: RotationConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.vended = VendedCredentials(
            Rotation(
                rotate_every_s=config.rotate_every_s,
                overlap_s=config.overlap_s,
                expiration_s=config.expiration_s,
            )
        )
        self.ids: list[str] = []
        self.states: dict[str, str] = {}
        self.errors: Counter[str] = Counter()
        self.downloads = 0
        self.stale_presigned = 0  # presigned URLs refused once, their key retired since
        self.timings: dict[str, float] = {}
        self.vendor_pid = 0

    @property
    def vendor_log(self) -> Path:
        assert self.vended.log_path is not None
        return self.vended.log_path

    async def run(self) -> RotationReport:
        started = time.monotonic()
        stack = await asyncio.to_thread(self._start)
        try:
            pids = {name: proc.pid for name, proc in stack.services.items()}
            self.vendor_pid = stack.helpers[0].pid
            async with httpx.AsyncClient(
                base_url=stack.api_url, headers=stack.auth_headers, timeout=30
            ) as api:
                await upload_gradient_template(api, TEMPLATE_ID, "Rotation", (320, 240))
                load_started = time.monotonic()
                await self._load(api)
                load_s = time.monotonic() - load_started
                await self._settle(api, deadline=started + self.config.deadline_s)
                self.timings = {
                    "startup_s": load_started - started,
                    "settle_s": time.monotonic() - load_started - load_s,
                }
            restarted = [
                name
                for name, pid in pids.items()
                if name not in stack.services
                or stack.services[name].pid != pid
                or stack.services[name].poll() is not None
            ]
        finally:
            await asyncio.to_thread(stack.stop)
        return self._report(stack, pids, restarted, load_s, time.monotonic() - started)

    def _start(self) -> Stack:
        workdir = self.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        settings = {**SETTINGS, "MEMEFORGE_RENDER_PROCESSES": str(self.config.render_processes)}
        stack = start_stack(
            workdir,
            emulator=start_moto(workdir, aws_iam=True),
            prepare=self.vended,
            settings=settings,
        )
        try:
            for i in range(1, self.config.renderers):
                stack.start_service(f"renderer-{i}")
        except BaseException:
            stack.stop()
            raise
        return stack

    def _retired_enough(self) -> bool:
        deleted = Counter(
            e["identity"]
            for e in vendor_events(self.vendor_log)
            if e["event"] == "deleted" and not e.get("revoked")
        )
        return all(deleted[s] >= self.config.rotations for s in SERVICES)

    async def _load(self, api: httpx.AsyncClient) -> None:
        """Submit at ``rate`` and poll/download what settles, until enough keys retired."""
        deadline = time.monotonic() + self.config.deadline_s
        submitters: set[asyncio.Task[None]] = set()
        poller = asyncio.create_task(self._poll_forever(api))
        interval = 1.0 / self.config.rate
        n = 0
        revoke_at = None
        if self.config.revoke_after_s is not None:
            revoke_at = time.monotonic() + self.config.revoke_after_s
        try:
            while not self._retired_enough() or revoke_at is not None:
                if time.monotonic() > deadline:
                    raise TimeoutError("the vendor did not retire enough keys in time")
                if revoke_at is not None and time.monotonic() >= revoke_at:
                    os.kill(self.vendor_pid, signal.SIGUSR1)
                    revoke_at = None
                task = asyncio.create_task(self._submit(api, n))
                submitters.add(task)
                task.add_done_callback(submitters.discard)
                n += 1
                await asyncio.sleep(interval)
            await asyncio.gather(*submitters)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)

    async def _submit(self, api: httpx.AsyncClient, i: int) -> None:
        key = f"rotation-{uuid.uuid4().hex}"
        body = {"template_id": TEMPLATE_ID, "top": f"key rotation {i}", "bottom": "no restart"}
        for attempt in range(20):
            try:
                response = await api.post("/memes", json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError as err:
                self.errors[f"POST /memes {type(err).__name__}"] += 1
            else:
                if response.status_code == 202:
                    meme_id = str(response.json()["id"])
                    self.ids.append(meme_id)
                    self.states[meme_id] = "PENDING"
                    return
                self.errors[f"POST /memes {response.status_code}"] += 1
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))  # a careful client retries
        raise RuntimeError(f"could not submit meme {i}")

    async def _poll_forever(self, api: httpx.AsyncClient) -> None:
        while True:
            await self._poll_once(api)
            await asyncio.sleep(0.2)

    async def _poll_once(self, api: httpx.AsyncClient) -> None:
        gate = asyncio.Semaphore(8)

        async def check(meme_id: str) -> None:
            async with gate:
                response = await api.get(f"/memes/{meme_id}")
                if response.status_code != 200:
                    self.errors[f"GET /memes/{{id}} {response.status_code}"] += 1
                    return
                state = str(response.json()["state"])
                if state == "DONE" and self.states[meme_id] != "DONE":
                    await self._download(api, meme_id)
                self.states[meme_id] = state

        pending = [i for i, s in self.states.items() if s not in ("DONE", "FAILED")]
        await asyncio.gather(*(check(i) for i in pending))

    async def _download(self, api: httpx.AsyncClient, meme_id: str) -> None:
        """The api presigns with the key it holds now; S3 (moto) verifies that key.

        A presigned URL is good only while the key that signed it is active, whatever its
        ``ExpiresIn`` (as on AWS). Keys here retire seconds after the api last signs with
        them, so a URL followed late may meet a deactivated key: a careful client (the web
        UI does, each time it loads the image) then asks the api for a new one. That is
        counted apart; a second refusal is an error."""
        for attempt in range(2):
            redirect = await api.get(f"/memes/{meme_id}/image", follow_redirects=False)
            if redirect.status_code != 307:
                self.errors[f"GET /memes/{{id}}/image {redirect.status_code}"] += 1
                return
            # Followed as a browser would: the presigned URL is the credential, so the API
            # key (the api client's default header) must not go to S3.
            async with httpx.AsyncClient(timeout=30) as s3:
                image = await s3.get(redirect.headers["location"])
            if image.status_code == 403 and attempt == 0:
                self.stale_presigned += 1
                continue
            if image.status_code != 200 or not image.content.startswith(b"\xff\xd8"):
                self.errors[f"GET presigned image {image.status_code}"] += 1
                return
            self.downloads += 1
            return

    async def _settle(self, api: httpx.AsyncClient, *, deadline: float) -> None:
        while time.monotonic() < deadline:
            await self._poll_once(api)
            if all(s in ("DONE", "FAILED") for s in self.states.values()):
                return
            await asyncio.sleep(0.2)

    def _report(
        self,
        stack: Stack,
        pids: dict[str, int],
        restarted: list[str],
        load_s: float,
        total_s: float,
    ) -> RotationReport:
        events = vendor_events(self.vendor_log)
        scheduled = [e for e in events if e["event"] == "rotated" and not e.get("emergency")]
        rotations = len({e["rotation"] for e in scheduled})
        retired = Counter(
            e["identity"] for e in events if e["event"] == "deleted" and not e.get("revoked")
        )
        verified = [e for e in events if e["event"] == "verified"]
        summary: dict[str, Any] = next((e for e in reversed(events) if e["event"] == "summary"), {})
        generations: dict[str, list[int]] = {s: [] for s in SERVICES}
        for e in events:
            if e["event"] == "fetched":
                generations[e["identity"]].append(int(e["generation"]))
        # Every key retired on schedule must have been fetched by its service (a key revoked
        # in an emergency may have been current for too short a time to be).
        retired_generations: dict[str, set[int]] = {s: set() for s in SERVICES}
        for e in events:
            if e["event"] == "deleted" and not e.get("revoked"):
                retired_generations[e["identity"]].add(int(e["generation"]))
        missed = {s: sorted(retired_generations[s] - set(generations[s])) for s in SERVICES}
        credential_errors: dict[str, int] = {}
        for name in pids:
            log = stack.log_path(name)
            hits = len(CREDENTIAL_ERRORS.findall(log.read_text())) if log.exists() else 0
            if hits:
                credential_errors[name] = hits
        states = Counter(self.states.values())
        return RotationReport(
            rotations=rotations,
            revocations=sum(1 for e in events if e["event"] == "revoking"),
            retired=dict(retired),
            refused_after_deactivation=sum(1 for e in verified if e["refused"]),
            accepted_after_deactivation=sum(1 for e in verified if not e["refused"]),
            submitted=len(self.ids),
            done=states["DONE"],
            failed=states["FAILED"],
            unsettled=sum(v for k, v in states.items() if k not in ("DONE", "FAILED")),
            request_errors=dict(self.errors),
            downloads=self.downloads,
            stale_presigned=self.stale_presigned,
            fetches={k: int(v) for k, v in summary.get("fetches", {}).items()},
            generations=generations,
            missed_generations=missed,
            restarted=restarted,
            credential_errors=credential_errors,
            load_s=load_s,
            total_s=total_s,
            pids=pids,
        )


async def run_rotation(config: RotationConfig, workdir: Path) -> RotationReport:
    return await RotationRun(config, workdir).run()
