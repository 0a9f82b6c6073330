"""Refresh on refusal (memeforge_common.aws.RefreshOnCredentialError): single flight, a
cooldown, and windows recomputed from each new set of keys. The credentials are botocore's
real refreshable credentials; only the provider and the clock are ours."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from memeforge_common import botocompat
from memeforge_common.aws import RefreshOnCredentialError, fit_refresh_windows

from tests.support.credentials import Vendor, refreshable

pytestmark = pytest.mark.unit

REFUSED = (None, {"Error": {"Code": "InvalidClientTokenId"}})
THROTTLED = (None, {"Error": {"Code": "ThrottlingException"}})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Session:
    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    async def get_credentials(self) -> Any:
        return self.credentials


class RevokedVendor(Vendor):
    """Keeps handing out the same (revoked) keys, as a provider that lags behind does."""

    async def __call__(self) -> dict[str, str]:
        metadata = await super().__call__()
        return metadata | {"access_key": "AKIAREVOKED", "secret_key": "s", "token": "t"}


async def handler(
    vendor: Vendor, cooldown_s: float = 10.0
) -> tuple[RefreshOnCredentialError, Clock]:
    clock = Clock()
    session: Any = Session(await refreshable(vendor))
    return RefreshOnCredentialError(session, cooldown_s=cooldown_s, clock=clock), clock


async def test_n_refused_calls_refresh_at_most_once_per_cooldown() -> None:
    """docs/credentials.md "Refusal means refresh": concurrent refusals share one."""
    vendor = Vendor()
    refresh, clock = await handler(vendor)
    fetched = vendor.fetches
    verdicts = await asyncio.gather(*(refresh(REFUSED, attempts=1) for _ in range(50)))
    assert vendor.fetches - fetched == 1
    assert verdicts == [0.0] * 50  # new keys: every one of them is retried once
    # Retried and refused again: no second refresh, no second retry.
    assert [await refresh(REFUSED, attempts=2) for _ in range(20)] == [None] * 20
    assert vendor.fetches - fetched == 1
    clock.now += 9.9
    await refresh(REFUSED, attempts=1)
    assert vendor.fetches - fetched == 1
    clock.now += 0.2  # the cooldown is over: one more refresh for the next refusal
    await asyncio.gather(*(refresh(REFUSED, attempts=1) for _ in range(10)))
    assert vendor.fetches - fetched == 2
    assert refresh.refreshes == 2


async def test_revoked_keys_handed_out_again_are_not_retried() -> None:
    """docs/credentials.md "concurrent refusals share one refresh": one per cooldown."""
    vendor = RevokedVendor()
    refresh, clock = await handler(vendor)
    fetched = vendor.fetches
    assert await refresh(REFUSED, attempts=1) is None
    assert await refresh(REFUSED, attempts=1) is None
    assert vendor.fetches - fetched == 1
    clock.now += 60  # still one refresh per cooldown, for as long as it lasts
    assert [await refresh(REFUSED, attempts=1) for _ in range(5)] == [None] * 5
    assert vendor.fetches - fetched == 2


async def test_other_errors_and_exhausted_attempts_never_refresh() -> None:
    """docs/credentials.md "Refusal means refresh": "up to two times", refusals only."""
    vendor = Vendor()
    refresh, _ = await handler(vendor)
    fetched = vendor.fetches
    assert await refresh(THROTTLED, attempts=1) is None
    assert await refresh(None, attempts=1) is None
    assert await refresh(REFUSED, attempts=RefreshOnCredentialError.MAX_ATTEMPTS) is None
    assert vendor.fetches == fetched


async def test_refresh_windows_follow_each_new_lifetime() -> None:
    """docs/credentials.md: "fit_refresh_windows scales the two windows"."""
    vendor = Vendor(lifetime_s=60)
    creds = await refreshable(vendor)
    fit_refresh_windows(creds)
    botocompat.after_each_refresh(creds, fit_refresh_windows)
    advisory, mandatory = botocompat.refresh_windows(creds)
    assert advisory == pytest.approx(15, abs=0.5)
    assert mandatory == pytest.approx(10, abs=0.5)
    vendor.lifetime_s = 7200  # the provider now hands out two-hour keys
    await botocompat.refresh_now(creds)
    assert botocompat.refresh_windows(creds) == (
        botocompat.DEFAULT_ADVISORY_S,
        botocompat.DEFAULT_MANDATORY_S,
    )
    vendor.lifetime_s = 120
    await botocompat.refresh_now(creds)
    advisory, mandatory = botocompat.refresh_windows(creds)
    assert advisory == pytest.approx(30, abs=0.5)
    assert mandatory == pytest.approx(20, abs=0.5)
