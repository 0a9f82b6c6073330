"""One typed settings object, read from the environment only.

AWS endpoints and credentials are deliberately *not* settings: botocore reads
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` and walks the default
credential chain itself, so the same code runs against an emulator or real AWS.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from memeforge_common import limits
from memeforge_common.timing import LIVENESS_SLACK_S


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMEFORGE_", extra="ignore", frozen=True)

    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
    )

    # The hot DynamoDB and SQS calls go out through memeforge_common.leancalls (the same
    # requests at a third of aiobotocore's CPU per call); 0 sends everything through
    # aiobotocore, e.g. to A/B the two in a benchmark or to rule the lean path out.
    lean_calls: bool = True

    # Resource names. DLQs are named "<queue>-dlq".
    bucket: str = "memeforge"
    table: str = "memeforge-memes"
    request_queue: str = "memeforge-requests"
    render_queue: str = "memeforge-renders"
    notification_queue: str = "memeforge-notifications"
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    visibility_timeout_s: int = Field(default=60, ge=1, le=43200)

    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")

    # Queue workers (consumer and renderer).
    worker_concurrency: int = Field(default=16, ge=1, le=1024)
    receive_wait_s: int = Field(default=20, ge=0, le=20)
    # Under load, the next receive of a worker (after one that carried several messages,
    # fewer than asked) waits this long for more, and the api's request publisher waits
    # up to this long after a message's publish for POSTs on their way (gathering.py):
    # fewer SQS calls per message, each at most this much later.
    gather_s: float = Field(default=0.05, ge=0, le=1.0)
    # Counted from SIGTERM: a long poll under way finishes, in-flight work finishes or is
    # released (visibility 0), all within this; then the process exits. Keep it at least
    # receive_wait_s + a few seconds so a poll under way can end and hand its messages back.
    shutdown_grace_s: float = Field(default=25.0, gt=0)
    # Per-job deadline: a batch still running after this is abandoned (its task is
    # cancelled) and its messages are retried with backoff; the visibility heartbeat stops
    # extending them. Keep it below rendering_timeout_s, or the sweeper re-sends a job that
    # still holds a slot.
    job_deadline_s: float = Field(default=180.0, gt=0)
    # How long a service waits at start-up for AWS and its queues (an outage, or the
    # bootstrap Job not done yet) before it gives up and exits.
    startup_wait_s: float = Field(default=300.0, ge=0)
    # Retries: a failed message becomes visible again after base·2^(n-1) s (capped).
    retry_base_s: float = Field(default=2.0, ge=0)
    retry_max_s: float = Field(default=300.0, ge=0, le=43200)
    # Sweeper: re-enqueue items stuck PENDING, QUEUED or RENDERING past
    # rendering_timeout_s (a PENDING item may be waiting in the render queue: the consumer
    # does not write QUEUED), a bounded number of times, then fail them.
    sweep_interval_s: float = Field(default=15.0, gt=0)
    pending_timeout_s: float = Field(default=60.0, gt=0)
    rendering_timeout_s: float = Field(default=300.0, gt=0)
    # Renderer: a render still running after this long is marked RENDERING; a faster one
    # goes PENDING → DONE | FAILED in one write. Keep it below rendering_timeout_s.
    rendering_mark_after_s: float = Field(default=1.0, ge=0)
    max_sweeps: int = Field(default=3, ge=0)
    # Batch sweeper: how often it looks for finished batches to archive (and batches an
    # api left half fanned out, past pending_timeout_s; archives whose builder went quiet
    # for rendering_timeout_s).
    batch_sweep_interval_s: float = Field(default=2.0, gt=0)
    # How long an Idempotency-Key is remembered.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Prometheus /metrics of any service, on a port of its own (never the api's public
    # one); off when unset, so several processes on one host do not collide.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Each receive loop records its last turn here (healthcheck.py); the liveness probe
    # and the in-process watchdog fail when any loop is older than liveness_max_age_s.
    heartbeat_file: str | None = None
    liveness_max_age_s: float | None = Field(default=None, gt=0)

    # Operational limits (the request limits are fixed, in limits.py).
    max_upload_bytes: int = Field(default=limits.MAX_UPLOAD_BYTES, ge=1024)
    max_source_pixels: int = Field(default=limits.MAX_SOURCE_PIXELS, ge=1)
    # Animated templates (memeforge_common/animation.py), checked at upload and render.
    max_frames: int = Field(default=limits.MAX_FRAMES, ge=1)
    max_animation_ms: int = Field(default=limits.MAX_ANIMATION_MS, ge=1)
    max_animation_pixels: int = Field(default=limits.MAX_ANIMATION_PIXELS, ge=1)
    max_output_bytes: int = Field(default=limits.MAX_OUTPUT_BYTES, ge=1024)
    max_long_poll_s: float = Field(default=20.0, ge=0, le=limits.MAX_WAIT_S)
    # Long-polls and event streams one api process serves at once; past it, 503.
    max_waiters: int = Field(default=10_000, ge=1)
    # The api's watcher reads every waited-on meme with at most this many calls a second
    # (its tick slows down as the set grows past 100 ids a call).
    watcher_max_calls_per_s: float = Field(default=20.0, gt=0)
    presign_ttl_s: int = Field(default=900, ge=1, le=604800)
    upload_policy_ttl_s: int = Field(default=limits.UPLOAD_POLICY_TTL_S, ge=1, le=3600)

    # Consumer: how long it trusts a template's metadata (its ETag, its folder) once read.
    template_info_cache_s: float = Field(default=5.0, ge=0, le=300)

    # Renderer.
    render_processes: int = Field(default=0, ge=0, description="0 = one per available core")
    # Template bytes fetched from S3, in the renderer's parent process.
    template_cache_bytes: int = Field(default=limits.TEMPLATE_CACHE_BYTES, ge=0)
    # Per pool process (so multiply by render_processes for the pod's memory budget):
    # decoded, scaled templates and glyph masks.
    decoded_template_cache_bytes: int = Field(default=limits.DECODED_TEMPLATE_CACHE_BYTES, ge=0)
    animation_cache_bytes: int = Field(default=limits.ANIMATION_CACHE_BYTES, ge=0)
    glyph_cache_bytes: int = Field(default=limits.GLYPH_CACHE_BYTES, ge=0)
    # ... and the text caches: loaded fonts, measured words, kerning pairs (per face),
    # fitter geometry.
    font_cache_bytes: int = Field(default=limits.FONT_CACHE_BYTES, ge=0)
    token_cache_bytes: int = Field(default=limits.TOKEN_CACHE_BYTES, ge=0)
    kern_cache_bytes: int = Field(default=limits.KERN_CACHE_BYTES, ge=0)
    fit_cache_bytes: int = Field(default=limits.FIT_CACHE_BYTES, ge=0)
    # CPU flags the renderer refuses to start without (memeforge_renderer/cpu.py):
    # "auto" = avx2 for pillow-simd on x86-64; "" for a build without AVX2.
    renderer_cpu_flags: str = "auto"

    # Retention: meme items (DynamoDB TTL) and their outputs (an S3 lifecycle rule on
    # memes/, set by the bootstrap) go this many days after the meme was created.
    retention_days: int = Field(default=30, ge=1, le=3650)

    # API keys: how long an api process trusts a key record it read (the revocation bound).
    key_cache_s: float = Field(default=10.0, ge=0, le=300)
    # Per-key request rate (shared by all api replicas): a sustained rate (0: no limit),
    # and how many requests an idle key may make at once.
    rate_limit_per_minute: int = Field(default=1200, ge=0, le=60_000)
    rate_limit_burst: int = Field(default=200, ge=1, le=100_000)
    # Memes a tenant may have in flight (submitted, not yet DONE or FAILED) across every
    # api replica (0: no cap); past it, POST /memes answers 429 (items.py: MemeStore).
    max_in_flight_per_tenant: int = Field(default=1000, ge=0)
    # Back-pressure: POST /memes answers 503 overloaded while the backlog (visible messages
    # on the request and render queues) is over this (0: never); each api process reads
    # the backlog at most once per queue_depth_refresh_s.
    overload_queue_depth: int = Field(default=5000, ge=0)
    queue_depth_refresh_s: float = Field(default=5.0, gt=0, le=60)
    # Bootstrap only: a first key (mf_<id>_<secret>, from a k8s Secret) to store, hashed,
    # for this tenant, so a fresh deployment has one key without anyone running the CLI.
    first_api_key: SecretStr | None = None
    first_api_key_tenant: str = "default"

    # Outbound HTTP to client-chosen URLs (memeforge_common.egress): networks allowed
    # although not public, comma-separated ("127.0.0.1/32,::1/128"). Local development and
    # tests only; empty in every real deployment.
    egress_allow: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = ()
    egress_connect_timeout_s: float = Field(default=limits.EGRESS_CONNECT_TIMEOUT_S, gt=0)
    egress_timeout_s: float = Field(default=limits.EGRESS_TIMEOUT_S, gt=0)

    # Notifications (webhooks, email). A notification is retried after
    # notify_retry_base_s·2^(n-1) s (capped at notify_retry_max_s: hours, by message
    # visibility, never by sleeping) and dead-lettered after notify_max_attempts receives.
    notify_max_attempts: int = Field(default=12, ge=1, le=1000)
    notify_retry_base_s: float = Field(default=30.0, ge=0)
    notify_retry_max_s: float = Field(default=4 * 3600.0, ge=0, le=43200)
    # The sweeper re-enqueues the notifications of a meme that ended this long ago when
    # their enqueue was never confirmed (the ending worker died in between).
    notify_enqueue_timeout_s: float = Field(default=60.0, gt=0)
    # Where SES mail comes from (the bootstrap verifies it on an emulator), and how long
    # the result link in it works.
    email_sender: str = "memeforge@example.com"
    email_link_ttl_s: int = Field(default=24 * 3600, ge=60, le=604800)

    # API server.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(v.strip()) for v in value.split(",") if v.strip())
        return value

    @property
    def liveness_max_age(self) -> float:
        """Above the longest legitimate wait of a loop: a job running to its deadline, or
        a long poll with retries."""
        if self.liveness_max_age_s is not None:
            return self.liveness_max_age_s
        return self.job_deadline_s + self.receive_wait_s + LIVENESS_SLACK_S

    @property
    def request_dlq(self) -> str:
        return f"{self.request_queue}-dlq"

    @property
    def render_dlq(self) -> str:
        return f"{self.render_queue}-dlq"

    @property
    def notification_dlq(self) -> str:
        return f"{self.notification_queue}-dlq"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
