"""Count every request the process sends to AWS (``memeforge_aws_requests_total``).

A botocore event hook on each client, so nothing that calls AWS can be left out: the
``before-send`` event fires once per HTTP attempt, retries included, which is what AWS
bills. ReceiveMessage calls that bring nothing back are counted apart as well, since an
idle worker's long polls are a cost per hour, not per meme. The lean transport
(leancalls.py), which sends without botocore's events, counts through the same two
functions below.
"""

from __future__ import annotations

from typing import Any

from memeforge_common.metrics import AWS_EMPTY_RECEIVES, AWS_REQUESTS


def count_attempt(service: str, operation: str) -> None:
    """One HTTP request on its way to AWS (``service`` as botocore's event names spell it)."""
    AWS_REQUESTS.labels(service, operation).inc()


def count_request(event_name: str = "", **_: Any) -> None:
    """``before-send.<service>.<Operation>``: one request on its way. Returns None, so
    the request is sent (a value here would replace the response)."""
    _event, service, operation = event_name.split(".", 2)
    count_attempt(service, operation)


def count_empty_receive(parsed: Any = None, **_: Any) -> None:
    """``after-call.sqs.ReceiveMessage``: a poll that answered without messages."""
    if isinstance(parsed, dict) and "Error" not in parsed and not parsed.get("Messages"):
        AWS_EMPTY_RECEIVES.inc()


def count_aws_calls(events: Any) -> None:
    """Register the counting hooks on a client's event system (``client.meta.events``)."""
    events.register("before-send", count_request)
    events.register("after-call.sqs.ReceiveMessage", count_empty_receive)
