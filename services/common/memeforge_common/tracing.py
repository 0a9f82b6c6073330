"""W3C trace context across the queues: one trace id from the API request to the render.

The api takes the caller's ``traceparent`` header (or starts a trace), the id travels as
the ``traceparent`` SQS message attribute through the consumer to the renderer, and every
service binds it to its log records, so one id finds a meme's whole journey in the logs.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

TRACE_ATTRIBUTE = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def valid_traceparent(value: str | None) -> str | None:
    """The value if it is a well-formed, non-zero W3C traceparent (version 00, lowercase
    hex, as the spec requires), else None: a caller cannot pick a malformed trace id."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(0)


def child_of(parent: str | None) -> str:
    """A traceparent for the next hop: the same trace, a new span (or a new trace)."""
    valid = valid_traceparent(parent)
    if valid is None:
        return new_traceparent()
    return f"00-{valid[3:35]}-{secrets.token_hex(8)}-{valid[-2:]}"


def trace_id(traceparent: str | None) -> str | None:
    valid = valid_traceparent(traceparent)
    return valid[3:35] if valid else None


def trace_attributes(traceparent: str) -> dict[str, Any]:
    """SQS MessageAttributes carrying the trace context."""
    return {TRACE_ATTRIBUTE: {"DataType": "String", "StringValue": traceparent}}


def from_attributes(attributes: Mapping[str, str]) -> str | None:
    return valid_traceparent(attributes.get(TRACE_ATTRIBUTE))
