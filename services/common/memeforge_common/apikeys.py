"""API keys: ``mf_<key id>_<secret>``, stored as the key id and a SHA-256 of the secret.

The secret is 32 random bytes, so a slow password hash (bcrypt, argon2) would add
nothing: it protects guessable secrets, and nobody can guess 256 random bits. A plain
SHA-256 keeps verification to microseconds on every request. The ``mf_`` prefix lets
secret scanners recognise a leaked key. Records live in the memes table under their own
key space (``apikey#<key id>``), listed per tenant through the tenant index (which
projects every attribute, so a list is one Query).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from memeforge_common.models import TENANT_ID_PATTERN, utcnow
from memeforge_common.tenancy import PUBLIC_TENANT, TENANT_INDEX, tenant_kind

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

KEY_PREFIX = "apikey#"
KEY_KIND = "apikey"
# last_used_at is bookkeeping, not an audit log: at most one write per key per minute.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_KEY_RE = re.compile(r"mf_([0-9a-f]{16})_([0-9a-f]{64})")


class Scope(StrEnum):
    TEMPLATES_READ = "templates:read"
    TEMPLATES_WRITE = "templates:write"
    MEMES_READ = "memes:read"
    MEMES_WRITE = "memes:write"


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True)
class NewKey:
    """A key as handed out once: the only moment the secret exists outside the caller."""

    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"mf_{self.key_id}_{self.secret}"

    @classmethod
    def parse(cls, token: str) -> NewKey | None:
        parsed = parse_token(token)
        return cls(key_id=parsed[0], secret=parsed[1]) if parsed else None


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    name: str
    scopes: frozenset[Scope]
    secret_sha256: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def accepts(self, secret: str) -> bool:
        return self.active and hmac.compare_digest(hash_secret(secret), self.secret_sha256)

    def public_view(self) -> dict[str, Any]:
        """What an admin may see: everything but the hash."""
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


def generate_key() -> NewKey:
    return NewKey(key_id=secrets.token_hex(8), secret=secrets.token_hex(32))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _KEY_RE.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


class InvalidTenant(ValueError):
    pass


class KeyExists(Exception):
    """The key id is taken by another key."""


def check_tenant(tenant: str) -> str:
    if not re.fullmatch(TENANT_ID_PATTERN, tenant):
        raise InvalidTenant(f"tenant must match {TENANT_ID_PATTERN}")
    if tenant == PUBLIC_TENANT:
        raise InvalidTenant(f"{PUBLIC_TENANT!r} holds the seed templates and takes no keys")
    return tenant


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def _from_dynamo(record: dict[str, Any]) -> ApiKey:
    def when(name: str) -> datetime | None:
        value = record.get(name)
        return datetime.fromisoformat(value["S"]) if value else None

    created = when("created_at")
    assert created is not None
    return ApiKey(
        key_id=record["id"]["S"][len(KEY_PREFIX) :],
        tenant=record["tenant"]["S"],
        name=record["name"]["S"],
        scopes=frozenset(Scope(s) for s in record["scopes"]["SS"]),
        secret_sha256=record["secret_sha256"]["S"],
        created_at=created,
        revoked_at=when("revoked_at"),
        last_used_at=when("last_used_at"),
    )


class KeyStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    async def create(
        self, tenant: str, name: str, scopes: frozenset[Scope], *, key: NewKey | None = None
    ) -> NewKey:
        """Store a new key (``key``: one made elsewhere, e.g. a token from a k8s Secret).

        KeyExists when the key id is taken, unless by this very key for this tenant (so a
        bootstrap Job that imports the same token twice succeeds).
        """
        if not scopes:
            raise ValueError("a key needs at least one scope")
        new = key or generate_key()
        now = _ts(utcnow())
        try:
            await self._put(new, tenant, name, scopes, now)
        except self._ddb.exceptions.ConditionalCheckFailedException as err:
            existing = await self.get(new.key_id)
            if existing is None or existing.tenant != tenant or not existing.accepts(new.secret):
                raise KeyExists(new.key_id) from err
        return new

    async def _put(
        self, new: NewKey, tenant: str, name: str, scopes: frozenset[Scope], now: str
    ) -> None:
        await self._ddb.put_item(
            TableName=self._table,
            Item={
                "id": {"S": KEY_PREFIX + new.key_id},
                "tenant": {"S": check_tenant(tenant)},
                "tenant_kind": {"S": tenant_kind(tenant, KEY_KIND)},
                "name": {"S": name},
                "scopes": {"SS": sorted(scopes)},
                "secret_sha256": {"S": hash_secret(new.secret)},
                "created_at": {"S": now},
            },
            ConditionExpression="attribute_not_exists(id)",
        )

    async def get(self, key_id: str) -> ApiKey | None:
        response = await self._ddb.get_item(
            TableName=self._table, Key={"id": {"S": KEY_PREFIX + key_id}}, ConsistentRead=True
        )
        record = response.get("Item")
        return _from_dynamo(record) if record else None

    async def list(self, tenant: str) -> list[ApiKey]:
        keys: list[ApiKey] = []
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": TENANT_INDEX,
            "KeyConditionExpression": "tenant_kind = :kind",
            "ExpressionAttributeValues": {":kind": {"S": tenant_kind(tenant, KEY_KIND)}},
        }
        while True:
            page = await self._ddb.query(**params)
            keys += [_from_dynamo(record) for record in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return keys
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key. Revoking twice keeps the first time."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": KEY_PREFIX + key_id}},
                UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeValues={":now": {"S": _ts(utcnow())}},
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def touch(self, key_id: str, now: datetime) -> bool:
        """Record a use, unless one was recorded within the last minute (by any process)."""
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": KEY_PREFIX + key_id}},
                UpdateExpression="SET last_used_at = :now",
                ConditionExpression=(
                    "attribute_exists(id) AND "
                    "(attribute_not_exists(last_used_at) OR last_used_at < :stale)"
                ),
                ExpressionAttributeValues={
                    ":now": {"S": _ts(now)},
                    ":stale": {"S": _ts(now - LAST_USED_RESOLUTION)},
                },
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True
