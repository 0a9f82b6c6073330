"""Settings for tests that share one emulator."""

from __future__ import annotations

import uuid

from memeforge_common.settings import Settings


def unique_settings(**overrides: object) -> Settings:
    """Settings with resource names of their own, so tests never share state."""
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "bucket": f"mf-test-{suffix}",
        "table": f"mf-test-{suffix}",
        "request_queue": f"mf-test-{suffix}-requests",
        "render_queue": f"mf-test-{suffix}-renders",
        "notification_queue": f"mf-test-{suffix}-notifications",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def on_resources(resources: Settings, **overrides: object) -> Settings:
    """Settings that use ``resources``' bucket, table and queues, with ``overrides``."""
    names = resources.model_dump(include={"bucket", "table", "request_queue", "render_queue"})
    return unique_settings(**names, **overrides)
