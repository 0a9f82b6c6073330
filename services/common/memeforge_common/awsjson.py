"""The AWS JSON 1.0 protocol (DynamoDB, SQS) for the lean transport: the request body
and the parsed response botocore would produce, at a fraction of its CPU.

botocore walks every request and every response along the operation's shape, and on
that walk does three things a plain ``json.dumps`` / ``json.loads`` would not: blobs go
out base64-encoded and come back as bytes, timestamps are converted, members renamed on
the wire are renamed (and a response keeps only modeled, non-null members). Everything
else passes through as it is. So ``json`` gives the same bytes and the same dict as long
as none of those is in play, and botocore itself does the rest:

- an operation whose shapes hold a timestamp or a renamed member always goes through
  botocore's serializer and parser (none of the hot operations has one);
- a body that names a blob member (DynamoDB's ``"B"`` / ``"BS"``, SQS's
  ``"BinaryValue"`` / ``"BinaryListValues"``: a byte search) goes through botocore's, as
  do params holding bytes or datetimes (``json.dumps`` refuses them); a string value
  that happens to read ``"B"`` only costs the slow path;
- error responses (rare) are parsed by botocore's parser, modeled fields included.

tests/unit/test_awsjson.py compares both ways on many request and response shapes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

JSON_PROTOCOL = "json"


def _walk(shape: Shape, named: bool, seen: frozenset[str], blobs: set[str], odd: list[str]) -> None:
    """Collect the wire names of blob members (a blob, or a list of blobs, as a structure
    member); note timestamps, renamed members and blobs found elsewhere. ``named``: the
    shape is a structure member (or the element of a list that is one)."""
    if shape.type_name == "timestamp":
        odd.append(f"timestamp {shape.name}")
    elif shape.type_name == "blob" and not named:
        odd.append(f"unnamed blob {shape.name}")
    if shape.name in seen:
        return
    seen = seen | {shape.name}
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            wire_name = member.serialization.get("name", name)
            if wire_name != name:
                odd.append(f"renamed {name}")
            element = member.member if isinstance(member, ListShape) else member
            if element.type_name == "blob":
                blobs.add(wire_name)
            _walk(member, True, seen, blobs, odd)
    elif isinstance(shape, ListShape):
        _walk(shape.member, named, seen, blobs, odd)
    elif isinstance(shape, MapShape):
        _walk(shape.value, False, seen, blobs, odd)


def blob_members(shape: Shape | None) -> tuple[frozenset[str], bool]:
    """The wire names of the blob members ``shape`` can hold, and whether it is plain
    otherwise (no timestamp, no renamed member, no blob but as a named member)."""
    if shape is None:
        return frozenset(), True
    blobs: set[str] = set()
    odd: list[str] = []
    _walk(shape, True, frozenset(), blobs, odd)
    return frozenset(blobs), not odd


def _markers(names: frozenset[str]) -> tuple[bytes, ...]:
    return tuple(json.dumps(name).encode() for name in sorted(names))


class WireOperation:
    """One operation's request encoding and response decoding (built once per operation)."""

    def __init__(self, model: OperationModel) -> None:
        if model.metadata["protocol"] != JSON_PROTOCOL:
            raise ValueError(f"{model.name} does not speak AWS JSON")
        self.model = model
        self.name: str = model.name
        self._serializer = create_serializer(JSON_PROTOCOL, include_validation=False)
        self._parser = create_parser(JSON_PROTOCOL)
        # botocore's own static part of every request of this operation (target, content
        # type, the query-compatibility header SQS wants), from its serializer.
        empty = self._serializer.serialize_to_request({}, model)
        if empty["method"] != "POST" or empty["url_path"] != "/" or empty["query_string"]:
            raise ValueError(f"{model.name} is not a POST to /")
        self.headers: dict[str, str] = dict(empty["headers"])
        input_shape = model.input_shape
        # Members botocore fills in with a fresh UUID when absent (ClientRequestToken).
        self._tokens = tuple(
            name
            for name, member in (input_shape.members.items() if input_shape else ())
            if member.metadata.get("idempotencyToken")
        )
        in_blobs, self._plain_request = blob_members(input_shape)
        self._request_markers = _markers(in_blobs)
        output_shape = model.output_shape
        out_blobs, self._plain_response = blob_members(output_shape)
        self._response_markers = _markers(out_blobs)
        self._output_members = frozenset(
            output_shape.members if isinstance(output_shape, StructureShape) else ()
        )

    def with_tokens(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The params with botocore's idempotency tokens filled in (once per call, so that
        every retry carries the same token)."""
        filled = dict(params)
        for name in self._tokens:
            if name not in filled:
                filled[name] = str(uuid.uuid4())
        return filled

    def encode(self, params: dict[str, Any]) -> bytes:
        """The request body botocore sends for ``params`` (tokens already filled in)."""
        if self._plain_request:
            try:
                body = json.dumps(params).encode()
            except TypeError:  # bytes or datetimes: botocore's conversions apply
                pass
            else:
                if not any(marker in body for marker in self._request_markers):
                    return body
        serialized: bytes = self._serializer.serialize_to_request(params, self.model)["body"]
        return serialized

    def decode(self, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The parsed response botocore returns (before its RetryAttempts is set).
        ``headers``: lowercase names, as aiobotocore reads them."""
        if status >= 300 or not self._plain_response:
            return self._botocore_parse(status, headers, body)
        if any(marker in body for marker in self._response_markers):
            return self._botocore_parse(status, headers, body)
        data = json.loads(body) if body else {}
        parsed: dict[str, Any] = {
            name: value
            for name, value in data.items()
            if value is not None and name in self._output_members
        }
        metadata: dict[str, Any] = {}
        if "x-amzn-requestid" in headers:
            metadata["RequestId"] = headers["x-amzn-requestid"]
        metadata["HTTPStatusCode"] = status
        metadata["HTTPHeaders"] = dict(headers)
        parsed["ResponseMetadata"] = metadata
        return parsed

    def _botocore_parse(self, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """botocore's parse, and for errors the modeled error fields its endpoint adds
        (CancellationReasons of a TransactionCanceledException, say)."""
        response = {"status_code": status, "headers": headers, "body": body, "context": {}}
        output_shape: Any = self.model.output_shape  # None is fine (botocore's stubs say not)
        parsed: dict[str, Any] = self._parser.parse(response, output_shape)
        if status < 300:
            return parsed
        code = parsed.get("Error", {}).get("Code")
        if code is None:
            return parsed
        error_shape = self.model.service_model.shape_for_error_code(code)
        if error_shape is not None:
            parsed.update(self._parser.parse(response, error_shape))
        return parsed
