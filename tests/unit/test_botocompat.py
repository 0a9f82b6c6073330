"""The private botocore attributes memeforge relies on (memeforge_common.botocompat), checked
against the installed botocore: this fails loudly when an upgrade changes any of them."""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version
from pathlib import Path

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioDeferredRefreshableCredentials,
    AioRefreshableCredentials,
)
from botocore.credentials import RefreshableCredentials
from memeforge_common import botocompat
from memeforge_common.aws import client_config
from packaging.requirements import Requirement

from tests.support.credentials import Vendor, refreshable

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_private_attributes_are_still_there() -> None:
    # Class-level refresh windows (seconds before expiry), as botocore defines them.
    assert isinstance(RefreshableCredentials._advisory_refresh_timeout, int | float)
    assert isinstance(RefreshableCredentials._mandatory_refresh_timeout, int | float)
    assert botocompat.DEFAULT_ADVISORY_S > botocompat.DEFAULT_MANDATORY_S > 0
    assert inspect.iscoroutinefunction(AioRefreshableCredentials._protected_refresh)
    assert list(inspect.signature(AioRefreshableCredentials._protected_refresh).parameters) == [
        "self",
        "is_mandatory",
    ]
    assert callable(RefreshableCredentials._seconds_remaining)


async def test_refresh_now_fetches_new_keys_under_botocores_lock() -> None:
    vendor = Vendor()
    creds = await refreshable(vendor)
    assert isinstance(creds._refresh_lock, asyncio.Lock)
    before = botocompat.current_keys(creds)
    assert before == ("AKIA0000000000000001", "secret-1", "token-1")

    async with creds._refresh_lock:  # botocore's own refresh holds the lock: we wait
        waiting = asyncio.ensure_future(botocompat.refresh_now(creds))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert vendor.fetches == 1
    await waiting
    assert vendor.fetches == 2
    assert botocompat.current_keys(creds) == ("AKIA0000000000000002", "secret-2", "token-2")
    frozen = await creds.get_frozen_credentials()  # what clients sign with
    assert frozen.access_key == "AKIA0000000000000002"


async def test_windows_are_read_and_set_per_instance() -> None:
    """docs/credentials.md: refresh windows are set per credentials object."""
    creds = await refreshable(Vendor(lifetime_s=600))
    assert botocompat.refresh_windows(creds) == (
        botocompat.DEFAULT_ADVISORY_S,
        botocompat.DEFAULT_MANDATORY_S,
    )
    remaining = botocompat.seconds_remaining(creds)
    assert remaining is not None
    assert 590 < remaining <= 600
    botocompat.set_refresh_windows(creds, 40.0, 20.0)
    assert botocompat.refresh_windows(creds) == (40.0, 20.0)
    assert not creds.refresh_needed(creds._advisory_refresh_timeout)
    botocompat.set_refresh_windows(creds, 700.0, 20.0)  # botocore reads the instance's
    assert creds.refresh_needed(creds._advisory_refresh_timeout)


async def test_a_deferred_credential_has_no_lifetime_until_fetched() -> None:
    vendor = Vendor()
    creds = AioDeferredRefreshableCredentials(refresh_using=vendor, method="test")
    assert botocompat.is_refreshable(creds)
    assert botocompat.seconds_remaining(creds) is None
    seen: list[object] = []
    botocompat.after_each_refresh(creds, seen.append)
    await creds.get_frozen_credentials()  # botocore's own first fetch
    assert seen == [creds]
    assert botocompat.seconds_remaining(creds) is not None


async def test_the_hook_runs_after_botocores_own_refresh_and_refresh_now() -> None:
    creds = await refreshable(Vendor())
    seen: list[object] = []
    botocompat.after_each_refresh(creds, seen.append)
    botocompat.set_refresh_windows(creds, 7200.0, 7200.0)  # everything is "near expiry"
    await creds.get_frozen_credentials()
    assert len(seen) == 1
    await botocompat.refresh_now(creds)
    assert len(seen) == 2


def test_pyproject_pins_the_botocore_range_these_tests_pass_on() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    pins = [line.strip().strip('",') for line in text.splitlines() if '"botocore' in line]
    assert len(pins) == 1, pins
    requirement = Requirement(pins[0])
    assert requirement.specifier.contains(version("botocore")), (pins[0], version("botocore"))
    assert any(s.operator == "<" for s in requirement.specifier), "pin an upper bound"


async def test_a_clients_endpoint_resolver_is_still_there() -> None:
    """callpath.py's hooks: the resolver fills in the ruleset's parameters (the Expect
    handler's removal is checked on requests in test_callpath.py)."""
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    async with session.client("s3", config=client_config(s3=True)) as s3:
        ruleset = botocompat.endpoint_ruleset(s3)
        assert ruleset is not None
        assert set(ruleset["parameters"]) == set(botocompat.endpoint_params(s3))
        botocompat.set_endpoint_params(s3, {})
        assert botocompat.endpoint_params(s3) == {}


async def test_a_clients_aiohttp_session_and_user_agent_are_still_there() -> None:
    """leancalls sends over them (tests/unit/test_leancalls.py: the same requests)."""
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    url = "http://127.0.0.1:9"
    async with session.client("sqs", endpoint_url=url, config=client_config()) as sqs:
        http = await botocompat.aiohttp_session(sqs)
        assert isinstance(http, aiohttp.ClientSession)
        assert await botocompat.aiohttp_session(sqs) is http  # aiobotocore's one session
        assert botocompat.user_agent(sqs).startswith(client_config().user_agent)
    proxied = client_config().merge(AioConfig(proxies={"http": "http://127.0.0.1:3128"}))
    async with session.client("sqs", endpoint_url=url, config=proxied) as sqs:
        assert await botocompat.aiohttp_session(sqs) is None


async def test_a_buckets_endpoint_and_proxy_are_botocores(aws_endpoints: None) -> None:
    """leanclients.LeanS3 asks them once per bucket (test_s3put.py: the same requests)."""
    session = aioboto3.Session(
        region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    async with session.client("s3", config=client_config(s3=True)) as s3:
        model = s3.meta.service_model.operation_model("PutObject")
        url, headers, auth_type, signing = await botocompat.resolve_endpoint(
            s3, model, {"Bucket": "memes"}
        )
        assert url == "https://memes.s3.eu-west-1.amazonaws.com"
        assert headers == {}
        assert auth_type in ("v4", "s3v4")
        assert (signing["signing_name"], signing["region"]) == ("s3", "eu-west-1")
        assert not botocompat.is_proxied(s3, url)
    proxied = client_config(s3=True).merge(AioConfig(proxies={"https": "http://127.0.0.1:3128"}))
    async with session.client("s3", config=proxied) as s3:
        assert botocompat.is_proxied(s3, "https://memes.s3.eu-west-1.amazonaws.com")
