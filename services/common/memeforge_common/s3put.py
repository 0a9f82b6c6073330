"""S3 PutObject (rest-xml) for the lean transport: the request botocore sends for our
uploads and the response it parses, from botocore's own parts.

aiobotocore spends about 2.8 ms of CPU on one upload, little of it on what goes on the
wire. Per call the request here is botocore's serializer's (the URL path, the headers of
the params: Content-Type, Cache-Control, Metadata as ``x-amz-meta-*``, If-None-Match...,
about 25 us) joined to the bucket's endpoint (botocore's ruleset, resolved once per
bucket: path style on emulators, virtual-hosted on AWS), with botocore's default flexible
checksum (``resolve_request_checksum_algorithm`` / ``apply_request_checksum``: a CRC32
header over http; over https an ``aws-chunked`` body with the CRC32 as its trailer,
payload unsigned), then signed as ``S3SigV4Auth`` signs it (signing.signed_s3_headers:
the body's SHA-256 over http, ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` with the trailer).
The response is botocore's rest-xml parse (about 80 us on a header-only 200), errors
included, with the modeled error fields its endpoint adds.

Only the params whose handling is that alone take this path (``LEAN_PARAMS``, a bytes
body, ASCII metadata); a call with any other (SSE-C keys, an explicit checksum, a file
body) goes to aiobotocore's ``put_object`` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from botocore import handlers
from botocore.auth import STREAMING_UNSIGNED_PAYLOAD_TRAILER, UNSIGNED_PAYLOAD
from botocore.awsrequest import HeadersDict, prepare_request_dict
from botocore.httpchecksum import apply_request_checksum, resolve_request_checksum_algorithm
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from yarl import URL

from memeforge_common.leancalls import Request
from memeforge_common.signing import signed_s3_headers

OPERATION = "PutObject"
REST_XML = "rest-xml"

LEAN_PARAMS = frozenset(
    {
        "Bucket",
        "Key",
        "Body",
        "ContentType",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "Metadata",
        "IfNoneMatch",
        "IfMatch",
    }
)
"""The params botocore turns into headers (or the body) and nothing else."""


@dataclass(frozen=True)
class BucketEndpoint:
    """Where a bucket's objects go and how they are signed (botocore's ruleset's answer)."""

    url: str  # the endpoint with the bucket: http://127.0.0.1:4566/b or https://b.s3....
    headers: Mapping[str, str]  # headers the ruleset adds (none for S3 today)
    signing_name: str
    region: str


class PutObject:
    """S3 PutObject's requests and responses for one client (built once per client)."""

    name = OPERATION

    def __init__(self, client: Any, user_agent: str) -> None:
        self.model = client.meta.service_model.operation_model(OPERATION)
        # What the client does before its first call (on this same, shared model): the
        # ruleset's URL holds the bucket, so the path must not hold it again.
        handlers.remove_bucket_from_url_paths_from_model(params={}, model=self.model, context={})
        self._config = client.meta.config
        self._user_agent = user_agent
        self._serializer = create_serializer(REST_XML, include_validation=False)
        self._parser = create_parser(REST_XML)

    @staticmethod
    def handles(params: Mapping[str, Any]) -> bool:
        """Whether botocore would do to ``params`` only what ``request`` does."""
        if not LEAN_PARAMS.issuperset(params) or not isinstance(params.get("Body"), bytes):
            return False
        metadata = params.get("Metadata", {})
        return all(key.isascii() and value.isascii() for key, value in metadata.items())

    def request(self, endpoint: BucketEndpoint, params: dict[str, Any]) -> Request:
        """The request botocore sends for ``params`` (``handles(params)``) to ``endpoint``."""
        serialized = self._serializer.serialize_to_request(params, self.model)
        serialized["headers"].update(endpoint.headers)
        context: dict[str, Any] = {"client_config": self._config}
        prepare_request_dict(serialized, endpoint.url, context, self._user_agent)
        resolve_request_checksum_algorithm(serialized, self.model, params)
        apply_request_checksum(serialized)
        headers: dict[str, str] = serialized["headers"]
        url: str = serialized["url"]
        algorithm = context.get("checksum", {}).get("request_algorithm", {})
        body = serialized["body"]
        chunked = algorithm.get("in") == "trailer"
        if chunked:
            body = body.read()  # botocore's aws-chunked wrapper of the bytes
            payload = STREAMING_UNSIGNED_PAYLOAD_TRAILER
            del headers["Transfer-Encoding"]  # aiohttp frames the chunks and says so
        elif not url.startswith("https") or algorithm.get("name") not in headers:
            payload = sha256(body).hexdigest()
        else:
            payload = UNSIGNED_PAYLOAD

        def sign(keys: Any) -> dict[str, str]:
            return signed_s3_headers(
                keys, endpoint.signing_name, endpoint.region, "PUT", url, headers, payload
            )

        return Request("PUT", url, URL(url, encoded=True), body, sign, chunked=chunked)

    def decode(self, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """botocore's parse, and for errors the modeled error fields its endpoint adds."""
        response = {
            "status_code": status,
            "headers": HeadersDict(headers),
            "body": body,
            "context": {"operation_name": OPERATION},
        }
        parsed: dict[str, Any] = self._parser.parse(response, self.model.output_shape)
        if status < 300:
            return parsed
        code = parsed.get("Error", {}).get("Code")
        error_shape = code and self.model.service_model.shape_for_error_code(code)
        if error_shape:
            parsed.update(self._parser.parse(response, error_shape))
        return parsed
