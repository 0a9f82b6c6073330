"""The key format and hash: what a scanner recognises, what the store keeps."""

from __future__ import annotations

import hashlib

import pytest
from memeforge_common.apikeys import (
    InvalidTenant,
    check_tenant,
    generate_key,
    hash_secret,
    parse_token,
)

pytestmark = pytest.mark.unit


def test_a_token_carries_a_prefix_the_key_id_and_the_secret() -> None:
    key = generate_key()
    assert key.token.startswith("mf_")
    assert parse_token(key.token) == (key.key_id, key.secret)
    assert len(key.secret) == 64  # 256 random bits


def test_two_keys_never_share_an_id_or_a_secret() -> None:
    keys = [generate_key() for _ in range(100)]
    assert len({k.key_id for k in keys}) == len({k.secret for k in keys}) == 100


@pytest.mark.parametrize(
    "token",
    [
        "",
        "mf_",
        "mf_0123456789abcdef",
        "xx_0123456789abcdef_" + "a" * 64,
        "mf_0123456789abcdef_" + "a" * 63,
        "mf_0123456789ABCDEF_" + "a" * 64,
        "mf_0123456789abcdef_" + "a" * 64 + "\n",
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert parse_token(token) is None


def test_only_the_sha256_of_the_secret_is_kept() -> None:
    key = generate_key()
    assert hash_secret(key.secret) == hashlib.sha256(key.secret.encode()).hexdigest()
    assert key.secret not in hash_secret(key.secret)


@pytest.mark.parametrize("tenant", ["public", "", "UPPER", "a/b", "-x"])
def test_keys_cannot_belong_to_the_public_or_a_malformed_tenant(tenant: str) -> None:
    with pytest.raises(InvalidTenant):
        check_tenant(tenant)
