"""RFC 9457 problem+json for every error the API returns."""

from __future__ import annotations

import logging
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
AWS_RETRY_AFTER_S = 5
# Contention, not the client's input: throttling, and writes that lost to a concurrent
# transaction on the same item (after the store's own retries).
_THROTTLING_CODES = (
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "TransactionConflictException",
    "TransactionCanceledException",
)
_STATUS_CODES = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    500: "internal-error",
    503: "service-unavailable",
}


class ProblemDetails(BaseModel):
    """The body of every error: RFC 9457 problem details plus a machine-readable ``code``;
    some problems add members of their own (``errors``, ``required_scope``, ``state``...)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="/problems/<code>")
    title: str
    status: int
    code: str = Field(description="machine-readable, stable: e.g. meme-not-found")
    instance: str = Field(description="the request path")
    detail: str = ""


PROBLEM_SCHEMA = "Problem"
_DESCRIPTIONS = {
    400: "Bad request (e.g. invalid-cursor, a body that cannot be parsed)",
    401: "No, or an unknown or revoked, API key (unauthorized)",
    403: "The API key lacks a scope the route needs (insufficient-scope)",
    404: "No such resource, or another tenant's",
    409: "Conflict with the resource's current state",
    413: "Request body too large",
    415: "Unsupported image format",
    422: "The request is invalid (validation-failed, or a more specific code)",
    429: "Over a quota (rate-limited, too-many-in-flight); see Retry-After",
    503: "Temporarily unavailable (aws-unavailable, overloaded, ...); see Retry-After",
}
# What every authenticated route can answer: no key, no scope, the rate limit, an outage.
AUTHENTICATED = (401, 403, 429, 503)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these statuses: problem+json, the shared Problem schema
    (added to the components by install_problem_schema)."""
    ref = {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}
    return {
        status: {"description": _DESCRIPTIONS[status], "content": {PROBLEM_JSON: {"schema": ref}}}
        for status in sorted(set(statuses))
    }


def install_problem_schema(app: FastAPI) -> None:
    """Add the Problem schema to the app's OpenAPI components, once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components[PROBLEM_SCHEMA] = ProblemDetails.model_json_schema()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class Problem(Exception):
    """Raise anywhere in a route to answer with a typed problem+json body."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_body(
    status: int, code: str, title: str, detail: str = "", *, instance: str, **extra: Any
) -> dict[str, Any]:
    """The one shape of every error body (RFC 9457, plus a machine-readable ``code``)."""
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "instance": instance,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = problem_body(
        problem.status,
        problem.code,
        problem.title,
        problem.detail,
        instance=request.url.path,
        **problem.extra,
    )
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


_INTERNAL = Problem(500, "internal-error", "Internal error")
_AWS_UNAVAILABLE = Problem(
    503,
    "aws-unavailable",
    "Storage is temporarily unavailable",
    "Try again shortly.",
    headers={"Retry-After": str(AWS_RETRY_AFTER_S)},
)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method served at this path (Starlette names only the first matching route's,
    e.g. GET where GET and DELETE share a path), as the OpenAPI document states it: a
    fixed path (/templates/uploads) is its own resource, though a pattern
    (/templates/{template_id}) matches it too. Paths outside the document (the web UI,
    probes) fall back to every route that matches."""
    path = request.scope["path"]
    documented = [
        (template, operations)
        for template, operations in request.app.openapi()["paths"].items()
        if _template_matches(template, path)
    ]
    fixed = [(t, ops) for t, ops in documented if "{" not in t]
    if documented:
        methods = {m.upper() for _, ops in (fixed or documented) for m in ops}
        return ", ".join(m for m in _METHODS if m in methods)
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def _template_matches(template: str, path: str) -> bool:
    pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
    return re.fullmatch(pattern, path) is not None


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return problem_response(
            request, Problem(exc.status_code, code, str(exc.detail), headers=headers)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        invalid = Problem(422, "validation-failed", "Request is invalid", errors=errors)
        return problem_response(request, invalid)

    @app.exception_handler(EndpointConnectionError)
    @app.exception_handler(BotoCoreError)
    async def _aws_unreachable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("AWS unreachable: %s", exc)
        return problem_response(request, _AWS_UNAVAILABLE)

    @app.exception_handler(ClientError)
    async def _aws_error(request: Request, exc: ClientError) -> JSONResponse:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
        code = exc.response.get("Error", {}).get("Code", "")
        if status >= 500 or code in _THROTTLING_CODES:
            log.warning("AWS error %s", code)
            return problem_response(request, _AWS_UNAVAILABLE)
        if status == 400:
            # AWS refused what the request carried (a value over one of its limits, a
            # malformed argument): the client's input, not an outage. The AWS message
            # may name internal resources, so only its code is passed on.
            log.info("AWS refused the request's input: %s", code)
            refused = Problem(400, "invalid-request", "Request refused by storage", code)
            return problem_response(request, refused)
        log.exception("unexpected AWS error %s", code)
        return problem_response(request, _INTERNAL)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(request, _INTERNAL)
