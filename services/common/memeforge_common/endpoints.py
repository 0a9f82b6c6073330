"""Tenants' webhook endpoints: a signing secret (``whsec_…``) and an optional default URL.

``python -m memeforge_common.endpoints set --tenant acme [--url https://…] [--rotate]``
registers them and prints the secret; like API keys, this is an admin act with AWS
credentials, never an API call, so a leaked API key can neither read the secret nor
redirect a tenant's webhooks. The notifier signs with the secret (Standard Webhooks: it
must be readable, not hashed); DynamoDB encrypts it at rest. Records live in the memes
table as ``webhook#<tenant>``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from memeforge_common.aws import AwsClients
from memeforge_common.limits import CallbackUrl
from memeforge_common.models import TENANT_ID_PATTERN, utcnow
from memeforge_common.settings import get_settings
from memeforge_common.sharedreads import SharedReads

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

ENDPOINT_PREFIX = "webhook#"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_CACHED_ENDPOINTS = 10_000
_URL = TypeAdapter(CallbackUrl)


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class Endpoint:
    tenant: str
    secret: str
    url: str | None = None


class EndpointStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    async def get(self, tenant: str) -> Endpoint | None:
        response = await self._ddb.get_item(
            TableName=self._table, Key={"id": {"S": ENDPOINT_PREFIX + tenant}}, ConsistentRead=True
        )
        record = response.get("Item")
        if record is None:
            return None
        url = record.get("url", {}).get("S")
        return Endpoint(tenant=tenant, secret=record["secret"]["S"], url=url)

    async def upsert(self, tenant: str, url: str | None, *, rotate: bool = False) -> Endpoint:
        """Register (or change) the default URL; keeps the secret unless ``rotate``."""
        current = await self.get(tenant)
        secret = new_secret() if rotate or current is None else current.secret
        record: dict[str, Any] = {
            "id": {"S": ENDPOINT_PREFIX + tenant},
            "tenant": {"S": tenant},
            "secret": {"S": secret},
            "updated_at": {"S": utcnow().isoformat(timespec="milliseconds")},
        }
        if url:
            record["url"] = {"S": url}
        await self._ddb.put_item(TableName=self._table, Item=record)
        return Endpoint(tenant=tenant, secret=secret, url=url)


class EndpointCache:
    """A tenant's endpoint as read at most every ``ttl_s`` per process: changing the URL
    or rotating the secret takes effect within that (like ``MEMEFORGE_KEY_CACHE_S``).
    Every POST of a tenant asks, so the requests past an expiry share one read."""

    def __init__(self, store: EndpointStore, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._found: dict[str, tuple[float, Endpoint | None]] = {}
        self._reads: SharedReads[str, Endpoint | None] = SharedReads()

    async def get(self, tenant: str) -> Endpoint | None:
        cached = self._found.get(tenant)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return await self._reads.read(tenant, lambda: self._read(tenant))

    async def _read(self, tenant: str) -> Endpoint | None:
        now = time.monotonic()
        found = await self._store.get(tenant)
        if len(self._found) >= MAX_CACHED_ENDPOINTS:
            self._found.clear()
        self._found[tenant] = (now + self._ttl_s, found)
        return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m memeforge_common.endpoints", description=__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("set", help="register the signing secret (printed) and default URL")
    put.add_argument("--tenant", required=True)
    put.add_argument("--url", help="default callback URL for memes that name none")
    put.add_argument("--rotate", action="store_true", help="make a new secret")
    show = commands.add_parser("show", help="the tenant's default URL (JSON, no secret)")
    show.add_argument("--tenant", required=True)
    return parser


async def _run(args: argparse.Namespace) -> int:
    if not re.match(TENANT_ID_PATTERN, args.tenant):
        print(f"error: invalid tenant {args.tenant!r}", file=sys.stderr)
        return 2
    settings = get_settings()
    async with AwsClients.open(settings) as aws:
        store = EndpointStore(aws.dynamodb, settings.table)
        if args.command == "show":
            found = await store.get(args.tenant)
            print(json.dumps({"tenant": args.tenant, "url": found.url if found else None}))
            return 0 if found else 1
        try:
            url = _URL.validate_python(args.url) if args.url else None
        except ValidationError:
            print(f"error: not an http(s) URL: {args.url!r}", file=sys.stderr)
            return 2
        endpoint = await store.upsert(args.tenant, url, rotate=args.rotate)
        print(
            f"webhook endpoint for tenant {args.tenant}: {url or '(no default URL)'}",
            file=sys.stderr,
        )
        print(endpoint.secret)
        return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
