"""A credentials vendor of our own: the container credentials protocol, with key rotation.

    python -m devenv.iam.credentials_vendor --config credentials-vendor.json --port N

Dev and test only (``devenv.iam.users.VendedCredentials`` starts it). It plays the part of
the ECS agent or the EKS Pod Identity agent: a service finds it through the SDK's default
credential chain, with ``AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:N/v1/credentials``
(botocore accepts plain HTTP only on loopback and the ECS/EKS link-local addresses) and
``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``: the token names the identity, so each service
gets its own IAM user's keys and no other's. The answer is the protocol's JSON::

    {"AccessKeyId": ..., "SecretAccessKey": ..., "Token": null, "Expiration": "...Z"}

``Token`` is null: these are an IAM user's long-term keys, which have no session token (an
empty string would still put an empty ``X-Amz-Security-Token`` into presigned URLs).

Rotation, every ``rotate_every_s``, per identity, the way AWS recommends rotating keys:
create a new key and serve it from now on; ``overlap_s`` later deactivate the old key,
verify it is refused (``sts:GetCallerIdentity`` with it must fail), then delete it.
``Expiration`` is ``expiration_s`` ahead but never after the served key's retirement, so a
client that honours it never signs with a retired key; ``overlap_s < rotate_every_s`` keeps
each user within IAM's two access keys. The vendor's own identity (the environment's keys)
may only manage those keys (``devenv.iam.users.rotator_policy``).

Emergency revocation (a leaked key): ``kill -USR1 <pid>`` rotates every identity now and
retires the old keys at once, with no overlap and whatever Expiration was promised; clients
holding them get ``InvalidClientTokenId`` and must refresh (memeforge_common.aws does).

Log: one JSON object per line on stdout. ``fetched`` is logged the first time an identity
fetches each key (with its running fetch count); key secrets are never logged.
"""

from __future__ import annotations

import argparse
import datetime
import hmac
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

CREDENTIALS_PATH = "/v1/credentials"
# What a retired key must be refused with (AWS and devenv.iam.moto_iam).
REFUSED_CODES = frozenset({"InvalidClientTokenId", "UnrecognizedClientException"})


_log_lock = threading.Lock()


def log(event: str, **fields: Any) -> None:
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    with _log_lock:  # the HTTP threads and the rotation loop both log
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Key:
    access_key_id: str
    secret_access_key: str
    generation: int
    created: float  # time.time()


@dataclass
class Identity:
    name: str
    user: str
    token: str
    current: Key | None = None
    retiring: list[tuple[Key, float]] = field(default_factory=list)  # (key, retire at)
    fetches: int = 0
    last_fetched_generation: int = 0


class Vendor:
    def __init__(
        self,
        identities: list[Identity],
        *,
        rotate_every_s: float,
        overlap_s: float,
        expiration_s: float,
    ) -> None:
        if not 0 < overlap_s < rotate_every_s:
            raise ValueError("need 0 < overlap_s < rotate_every_s (two keys per IAM user)")
        self.identities = {i.name: i for i in identities}
        self.rotate_every_s = rotate_every_s
        self.overlap_s = overlap_s
        self.expiration_s = expiration_s
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.revoke = threading.Event()  # emergency: rotate now, retire old keys at once
        self.wake = threading.Event()
        self.ready = threading.Event()
        self.next_rotation = 0.0
        self.rotations = 0
        self.refused_ok = 0
        self.still_accepted = 0
        session = botocore.session.Session()  # the vendor's own identity: default chain
        self._region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        config = Config(retries={"mode": "standard", "max_attempts": 5})
        self.iam: Any = session.create_client("iam", region_name=self._region, config=config)
        self._session = session

    # --- serving ------------------------------------------------------------------------------
    def identity_for(self, token: str) -> Identity | None:
        found = None
        for identity in self.identities.values():
            if hmac.compare_digest(identity.token.encode(), token.encode()):
                found = identity
        return found

    def credentials(self, identity: Identity) -> dict[str, Any]:
        with self.lock:
            key = identity.current
            assert key is not None
            identity.fetches += 1
            now = time.time()
            # The current key retires overlap_s after the next rotation, or later if that
            # rotation runs late: never promise it past that.
            retires = max(self.next_rotation, now) + self.overlap_s
            expires = min(now + self.expiration_s, retires)
            first = key.generation > identity.last_fetched_generation
            if first:
                identity.last_fetched_generation = key.generation
            fetches = identity.fetches
        if first:
            log(
                "fetched",
                identity=identity.name,
                key=key.access_key_id,
                generation=key.generation,
                fetches=fetches,
            )
        return {
            "AccessKeyId": key.access_key_id,
            "SecretAccessKey": key.secret_access_key,
            "Token": None,
            "Expiration": _iso(expires),
        }

    # --- rotating -----------------------------------------------------------------------------
    def issue_initial_keys(self) -> None:
        for identity in self.identities.values():
            for stale in self.iam.list_access_keys(UserName=identity.user)["AccessKeyMetadata"]:
                self.iam.delete_access_key(UserName=identity.user, AccessKeyId=stale["AccessKeyId"])
            key = self._create_key(identity, generation=1)
            with self.lock:
                identity.current = key
            log("issued", identity=identity.name, key=key.access_key_id, generation=1)
        self.next_rotation = time.time() + self.rotate_every_s
        self.ready.set()

    def _create_key(self, identity: Identity, generation: int) -> Key:
        raw = self.iam.create_access_key(UserName=identity.user)["AccessKey"]
        return Key(raw["AccessKeyId"], raw["SecretAccessKey"], generation, time.time())

    def run(self) -> None:
        """Rotate on schedule and retire old keys when due, until stopped."""
        while not self.stopping.is_set():
            due = [self.next_rotation] + [
                at for i in self.identities.values() for _, at in i.retiring
            ]
            self.wake.wait(max(0.0, min(due) - time.time()))
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                if self.revoke.is_set():
                    self.revoke.clear()
                    self.revoke_all()
                if time.time() >= self.next_rotation:
                    self.rotate_all()
                self.retire_due()
            except (BotoCoreError, ClientError) as err:
                log("error", error=repr(err))
                self.stopping.wait(1.0)  # IAM unreachable or refusing: try again shortly

    def rotate_all(self, *, emergency: bool = False) -> None:
        self.rotations += 1
        for identity in self.identities.values():
            # IAM allows two keys per user: a key still retiring must go first. (Only after
            # failed IAM calls, since overlap_s < rotate_every_s; its holders get refused
            # and refresh.)
            for old, _ in list(identity.retiring):
                self.retire(identity, old, early=not emergency, revoked=emergency)
            current = identity.current
            assert current is not None
            key = self._create_key(identity, generation=current.generation + 1)
            retire_at = time.time() + self.overlap_s
            with self.lock:
                identity.current = key
                identity.retiring.append((current, retire_at))
                fetches = identity.fetches
            log(
                "rotated",
                identity=identity.name,
                key=key.access_key_id,
                generation=key.generation,
                old_key=current.access_key_id,
                rotation=self.rotations,
                emergency=emergency,
                fetches=fetches,
            )
        with self.lock:
            self.next_rotation = max(self.next_rotation + self.rotate_every_s, time.time())

    def revoke_all(self) -> None:
        """Emergency: a new key for everyone, the old ones retired now (no overlap)."""
        log("revoking", reason="emergency rotation requested (SIGUSR1)")
        self.rotate_all(emergency=True)
        for identity in self.identities.values():
            for old, _ in list(identity.retiring):
                self.retire(identity, old, revoked=True)

    def retire_due(self) -> None:
        now = time.time()
        for identity in self.identities.values():
            for old, at in list(identity.retiring):
                if at <= now:
                    self.retire(identity, old)

    def retire(
        self, identity: Identity, key: Key, *, early: bool = False, revoked: bool = False
    ) -> None:
        """Deactivate, verify refused, delete (the last steps of a key rotation)."""
        self.iam.update_access_key(
            UserName=identity.user, AccessKeyId=key.access_key_id, Status="Inactive"
        )
        log(
            "deactivated",
            identity=identity.name,
            key=key.access_key_id,
            early=early,
            revoked=revoked,
        )
        refused = self._refused(key)
        if refused:
            self.refused_ok += 1
        else:
            self.still_accepted += 1
        log("verified", identity=identity.name, key=key.access_key_id, refused=refused)
        self.iam.delete_access_key(UserName=identity.user, AccessKeyId=key.access_key_id)
        identity.retiring = [(k, at) for k, at in identity.retiring if k is not key]
        log(
            "deleted",
            identity=identity.name,
            key=key.access_key_id,
            generation=key.generation,
            revoked=revoked,
        )

    def _refused(self, key: Key) -> bool:
        sts: Any = self._session.create_client(
            "sts",
            region_name=self._region,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )
        try:
            sts.get_caller_identity()
        except ClientError as err:
            return err.response.get("Error", {}).get("Code") in REFUSED_CODES
        return False

    def summary(self) -> None:
        log(
            "summary",
            rotations=self.rotations,
            refused_ok=self.refused_ok,
            still_accepted=self.still_accepted,
            fetches={name: i.fetches for name, i in self.identities.items()},
        )


def make_handler(vendor: Vendor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(200 if vendor.ready.is_set() else 503, {"ready": vendor.ready.is_set()})
                return
            if self.path != CREDENTIALS_PATH:
                self._reply(404, {"message": "not found"})
                return
            identity = vendor.identity_for(self.headers.get("Authorization", ""))
            if identity is None:
                log("refused", reason="unknown authorization token")
                self._reply(401, {"message": "unknown authorization token"})
                return
            if not vendor.ready.is_set():
                self._reply(503, {"message": "not ready"})
                return
            self._reply(200, vendor.credentials(identity))

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one JSON line per event instead (log())

    return Handler


def load_identities(config: dict[str, Any]) -> list[Identity]:
    return [
        Identity(name=name, user=spec["user"], token=Path(spec["token_file"]).read_text().strip())
        for name, spec in config["identities"].items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = json.loads(args.config.read_text())
    vendor = Vendor(
        load_identities(config),
        rotate_every_s=float(config["rotate_every_s"]),
        overlap_s=float(config["overlap_s"]),
        expiration_s=float(config["expiration_s"]),
    )
    server = ThreadingHTTPServer((args.host, args.port), make_handler(vendor))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()

    def stop(*_: object) -> None:
        vendor.stopping.set()
        vendor.wake.set()

    def revoke(*_: object) -> None:
        vendor.revoke.set()
        vendor.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, revoke)
    log(
        "started",
        pid=os.getpid(),
        url=f"http://{args.host}:{args.port}{CREDENTIALS_PATH}",
        identities=sorted(vendor.identities),
        rotate_every_s=vendor.rotate_every_s,
        overlap_s=vendor.overlap_s,
        expiration_s=vendor.expiration_s,
    )
    vendor.issue_initial_keys()
    try:
        vendor.run()
    finally:
        server.shutdown()
        vendor.summary()


if __name__ == "__main__":
    main()
