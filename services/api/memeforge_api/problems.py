"""RFC 9457 problem+json for every error the API returns."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
AWS_RETRY_AFTER_S = 5
_THROTTLING_CODES = ("ThrottlingException", "ProvisionedThroughputExceededException", "SlowDown")
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


def problem_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a route's problem+json answers: status → the codes it
    carries."""
    return {
        status: {"description": codes, "content": {PROBLEM_JSON: {}}}
        for status, codes in described.items()
    }


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


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
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
