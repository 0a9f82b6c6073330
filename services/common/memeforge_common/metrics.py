"""Prometheus metrics: one registry per process, served on MEMEFORGE_METRICS_PORT.

The api serves them at ``/metrics``; the queue workers start a small HTTP server when
``metrics_port`` is set (off by default, so several workers on one host don't collide).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

MESSAGES = Counter(
    "memeforge_messages_total",
    "Queue messages settled, by worker and outcome (done, poison, retry, abandoned).",
    ["worker", "outcome"],
)
BATCH_SECONDS = Histogram(
    "memeforge_batch_seconds", "Time to handle one received batch.", ["worker"]
)
IN_FLIGHT = Gauge("memeforge_in_flight_messages", "Messages being handled now.", ["worker"])
RECEIVE_ERRORS = Counter(
    "memeforge_receive_errors_total", "Failed ReceiveMessage calls (backed off).", ["worker"]
)
TRANSITION_RESULTS = Counter(
    "memeforge_transitions_total",
    "Conditional state transitions, by target state and result (won, lost).",
    ["target", "result"],
)
RENDER_STAGE_SECONDS = Histogram(
    "memeforge_render_stage_seconds",
    "Render engine time per stage (decode, layout, draw, encode).",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
NOTIFICATION_ATTEMPTS = Counter(
    "memeforge_notification_attempts_total",
    "Notifier delivery attempts, by channel (webhook, email) and outcome.",
    ["channel", "outcome"],
)
HTTP_REQUESTS = Histogram(
    "memeforge_http_request_seconds", "API request latency.", ["method", "route", "status"]
)

AWS_REQUESTS = Counter(
    "memeforge_aws_requests_total",
    "HTTP requests sent to AWS (each SDK retry counts: AWS bills it), by AWS service and "
    "operation.",
    ["service", "operation"],
)
AWS_EMPTY_RECEIVES = Counter(
    "memeforge_aws_empty_receives_total",
    "ReceiveMessage calls that brought no message (also counted in "
    "memeforge_aws_requests_total): the idle cost of long polling, apart from the per-meme cost.",
)

WATCHED_MEMES = Gauge("memeforge_watched_memes", "Memes the api's watcher watches.")
WAITERS = Gauge("memeforge_waiters", "Long-polls and event streams subscribed to the watcher.")
WATCHER_CALLS = Counter("memeforge_watcher_calls_total", "DynamoDB calls by the watcher.")
WATCHER_ITEMS = Counter("memeforge_watcher_items_total", "Items the watcher read.")


def serve_metrics(host: str, port: int | None) -> None:
    if port is None:
        return
    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
