"""The failure drill, short: kills, an AWS outage and poison; nothing lost or doubled,
every meme's webhook delivered at least once under one stable id, and a batch beside the
memes ends with counts that add up."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.drills.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.e2e


async def test_chaos_drill_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, e2e_backend: str
) -> None:
    """README: "Nothing is lost and nothing is done twice, whatever dies when"; `make chaos`
    "exits non-zero unless lost = 0 and duplicated = 0"."""
    config = ChaosConfig(
        memes=60,
        renderers=2,
        kill_every_s=2.0,
        min_kills=2,
        max_kills=2,
        outage_s=3.0,
        outage_after_s=1.0,
        deadline_s=240,
        backend=e2e_backend,
        seed=7,
        batch_items=20,
    )
    report = await run_chaos(config, tmp_path)
    print(report.line())
    assert report.failures() == [], report.json()
    assert report.kills == 2
    assert report.refused_during_outage > 0, "the outage never touched the services"
    assert report.lost == 0, report.json()
    assert report.duplicated == 0, report.json()
    # Every meme, poison meme (not parked_in_dlqs) and batch item, once.
    assert report.meme_items == 60 + len(report.poison) - 1 + 20, report.json()
    assert report.mismatched_outputs == 0, report.json()
    assert report.done == report.submitted == 60, report.json()
    assert report.poison_ok, report.poison
    # Every meme called back at least once, every copy under its event's one id, signed.
    assert report.webhooks_delivered == 60, report.json()
    assert report.webhook_deliveries >= 60 + 10, report.json()  # + the receiver's 500s
    assert report.webhook_ids_unstable == 0, report.json()
    assert report.webhook_bad_signatures == 0, report.json()
    # The batch: every item ended and counted once, its ZIP holds them all, batch.done sent.
    assert report.batch is not None
    assert report.batch.counted == {"DONE": 20, "FAILED": 0}, report.json()
    assert report.batch.item_states == {"DONE": 20}, report.json()
    assert report.batch.archive_files == 20, report.json()
    assert report.batch.announced, report.json()
