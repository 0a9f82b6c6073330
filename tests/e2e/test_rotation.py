"""Key rotation without restarts: short-lived keys from our credentials vendor, rotated under load.

moto enforces IAM (``devenv.iam.moto_iam``); each service gets its own IAM user's keys through the
container credentials provider from ``devenv.iam.credentials_vendor``, which rotates them (new key
served; old key deactivated, verified refused, deleted). The default credential chain and
botocore's refreshing credentials must carry every service through it with nothing failed
and nothing restarted. moto backend only (LocalStack community does not enforce IAM).
``make rotation-soak`` runs the same drill for longer.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from devenv.drills.rotation import SETTINGS, RotationConfig, run_rotation, vendor_events
from devenv.iam.users import SERVICES, Rotation, VendedCredentials
from devenv.run.backends.moto import start_moto
from devenv.run.proc import wait_until
from devenv.run.stack import start_stack
from tests.support.memes import wait_until_settled

pytestmark = pytest.mark.e2e


async def test_keys_rotate_under_load_with_nothing_failed_and_nothing_restarted(
    tmp_path: Path,
) -> None:
    """README "rotates their keys under load with no failures and no restarts"."""
    config = RotationConfig(
        rotations=3,  # the load lasts until 3 keys per service were retired on schedule
        rotate_every_s=5,
        overlap_s=2.5,
        expiration_s=12,
        rate=3,
    )
    report = await run_rotation(config, tmp_path)
    print(report.line())

    assert report.rotations >= 3, report.json()
    assert all(report.retired.get(s, 0) >= 3 for s in SERVICES), report.json()
    # Every retired key was refused once deactivated, before it was deleted.
    assert report.accepted_after_deactivation == 0, report.json()
    assert report.refused_after_deactivation >= 3 * 3, report.json()
    # The pipeline never noticed.
    assert report.submitted > 0
    assert report.done == report.submitted, report.json()
    assert report.failed == 0, report.json()
    assert report.request_errors == {}, report.json()
    assert report.downloads == report.done, report.json()
    assert report.restarted == [], report.json()
    # Keys rotate with an overlap: each service refreshes before its old key is
    # deactivated, so no service ever has a call refused for its credentials.
    assert report.credential_errors == {}, report.json()
    # The vendor's log: every service fetched fresh keys, every key it retired on schedule.
    fetched: dict[str, set[int]] = defaultdict(set)
    for event in vendor_events(tmp_path / "credentials-vendor.log"):
        if event["event"] == "fetched":
            fetched[event["identity"]].add(event["generation"])
    for service in SERVICES:
        # The generations retired: each fetched before its retirement. The newest key is
        # only due by the end of its overlap, which may come after the load stopped.
        assert len(fetched[service]) >= config.rotations, (service, sorted(fetched[service]))
        assert report.missed_generations[service] == [], report.json()
        assert report.fetches[service] > 0


async def test_a_revoked_key_is_refreshed_on_its_first_refusal(tmp_path: Path) -> None:
    """README "a call refused for expired or revoked credentials refreshes them".
    Credentials cached for an hour (as IRSA or Pod Identity hand out) and revoked early:
    each service refreshes on the first refusal and retries, instead of failing every call
    until botocore's own refresh window, 50 minutes later."""
    vended = VendedCredentials(Rotation(rotate_every_s=7200, overlap_s=3600, expiration_s=3600))
    stack = await asyncio.to_thread(
        start_stack,
        tmp_path,
        emulator=start_moto(tmp_path, aws_iam=True),
        prepare=vended,
        settings={**SETTINGS, "MEMEFORGE_RENDER_PROCESSES": "1"},
    )
    try:
        pids = {name: proc.pid for name, proc in stack.services.items()}
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers=stack.auth_headers, timeout=30
        ) as api:

            async def memes(n: int) -> list[str]:
                created = await asyncio.gather(
                    *(
                        api.post("/memes", json={"template_id": "sunset-hills", "top": f"r{i}"})
                        for i in range(n)
                    )
                )
                assert [r.status_code for r in created] == [202] * n, [r.text for r in created]
                settled = await asyncio.gather(
                    *(wait_until_settled(api, r.json()["id"]) for r in created)
                )
                return [m["state"] for m in settled]

            assert await memes(2) == ["DONE"] * 2
            assert vended.log_path is not None
            log = vended.log_path
            os.kill(stack.helpers[0].pid, signal.SIGUSR1)
            await asyncio.to_thread(
                wait_until,
                lambda: (
                    sum(e["event"] == "deleted" and e.get("revoked") for e in vendor_events(log))
                    == len(SERVICES)
                ),
                timeout=30,
                what="revocation",
                proc=stack.helpers[0],
            )
            # The keys every service holds (good for another hour, it was told) are gone.
            assert await memes(4) == ["DONE"] * 4
        for name in SERVICES:
            # A service with no work (the notifier: nothing asked to be notified) meets the
            # revoked key on its next long-poll, which may come after the memes are done.
            path = stack.log_path(name)
            await asyncio.to_thread(
                wait_until,
                lambda path=path: "AWS refused our credentials" in path.read_text(),
                timeout=60,
                what=f"{name} meeting the revoked key",
                proc=stack.services[name],
            )
            assert stack.services[name].pid == pids[name]
            assert stack.services[name].poll() is None, f"{name} died"

        def fetched_new_keys() -> set[str]:
            return {
                e["identity"]
                for e in vendor_events(log)
                if e["event"] == "fetched" and e["generation"] == 2
            }

        await asyncio.to_thread(
            wait_until,
            lambda: fetched_new_keys() == set(SERVICES),
            timeout=30,
            what="every service fetching its new keys",
            proc=stack.helpers[0],
        )
    finally:
        await asyncio.to_thread(stack.stop)
