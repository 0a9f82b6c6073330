"""botocore refreshable credentials fed by an in-process provider (unit tests of refresh)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

from aiobotocore.credentials import AioRefreshableCredentials


class Vendor:
    """A credentials provider handing out new keys of ``lifetime_s`` on every fetch."""

    def __init__(self, lifetime_s: float = 3600) -> None:
        self.lifetime_s = lifetime_s
        self.fetches = 0
        self._n = count(1)

    async def __call__(self) -> dict[str, str]:
        self.fetches += 1
        n = next(self._n)
        expiry = datetime.now(UTC) + timedelta(seconds=self.lifetime_s)
        return {
            "access_key": f"AKIA{n:016d}",
            "secret_key": f"secret-{n}",
            "token": f"token-{n}",
            "expiry_time": expiry.isoformat(),
        }


async def refreshable(vendor: Vendor) -> AioRefreshableCredentials:
    metadata = await vendor()
    creds: AioRefreshableCredentials = AioRefreshableCredentials.create_from_metadata(
        metadata, refresh_using=vendor, method="test"
    )
    return creds
