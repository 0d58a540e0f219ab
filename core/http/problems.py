"""Errors as RFC 9457 problem details: one problem type and HTTP status per failure."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, NamedTuple

import msgspec
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.problem_details import ProblemDetailsException

from chargeledger.core.errors import (
    CallError,
    CallTimeout,
    CallTooLarge,
    InvalidUseCaseArguments,
    OutboundCallFailed,
    OutboundValidationError,
    StationBusy,
    StationOffline,
    StoreUnavailable,
    UnsupportedUseCase,
)

__all__ = [
    "COMMAND_ERRORS",
    "COMMAND_RESPONSES",
    "PROBLEM_TYPE",
    "Problem",
    "bad_request",
    "command_problem",
    "http_problem",
    "internal_problem",
    "not_found",
    "not_ready_problem",
    "problem",
    "responses",
    "store_problem",
]

log = logging.getLogger("chargeledger.http")

PROBLEM_TYPE = "urn:chargeledger:problem:"
"""Prefix of every problem ``type`` (``urn:chargeledger:problem:station-offline``, ...)."""


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem (``application/problem+json``). Besides the standard members,
    command problems carry ``request_id`` and ``station``, a failed CALL its ``action`` (when
    one was chosen), a CALLERROR the station's ``code``, ``description`` and ``details``, an
    invalid payload the broken ``code``, the ``protocol`` and ``action``, a malformed request
    the ``extra`` validation messages."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None
    station: str | None = None
    code: str | None = None
    description: str | None = None
    details: dict[str, Any] | None = None
    protocol: str | None = None
    action: str | None = None
    extra: list[Any] | None = None


class _Kind(NamedTuple):
    status: int
    slug: str
    title: str


_UNKNOWN_ACTION = _Kind(404, "unknown-action", "The station's protocol version has no such action")
_COMMAND_KINDS: dict[type[BaseException], _Kind] = {
    StationOffline: _Kind(409, "station-offline", "The station is not connected to this node"),
    OutboundValidationError: _Kind(
        422, "invalid-payload", "The payload violates the OCPP schema; nothing was sent"
    ),
    InvalidUseCaseArguments: _Kind(
        422, "invalid-arguments", "The use case's arguments are wrong as things stand"
    ),
    UnsupportedUseCase: _Kind(
        501, "unsupported-use-case", "The station's protocol version cannot express this"
    ),
    CallError: _Kind(502, "call-error", "The station answered with a CALLERROR"),
    CallTooLarge: _Kind(
        413, "call-too-large", "The CALL would exceed the frame size limit; nothing was sent"
    ),
    StationBusy: _Kind(503, "station-busy", "Too many calls are queued for the station"),
    CallTimeout: _Kind(504, "call-timeout", "The station did not answer in time"),
}
_STORE = _Kind(503, "store-unavailable", "The event store cannot be reached")
_NOT_READY = _Kind(503, "not-ready", "This node takes no stations now")
_INTERNAL = _Kind(500, "internal-error", "The server failed")
_HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
}

COMMAND_ERRORS = tuple(_COMMAND_KINDS)
"""The exceptions a command to a station can end with, each a problem of its own."""


def problem(
    kind: _Kind, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> ProblemDetailsException:
    """The exception that makes Litestar answer with this problem."""
    return ProblemDetailsException(
        status_code=kind.status,
        type_=PROBLEM_TYPE + kind.slug,
        title=kind.title,
        detail=detail,
        headers=headers,
        extra={key: value for key, value in extra.items() if value is not None} or None,
    )


def _http_kind(status: int) -> _Kind:
    return _Kind(status, _HTTP_SLUGS.get(status, "http-error"), HTTPStatus(status).phrase)


def not_found(detail: str) -> ProblemDetailsException:
    """404: the station, registration or other resource does not exist."""
    return problem(_http_kind(404), detail)


def bad_request(detail: str) -> ProblemDetailsException:
    """400: a parameter is well-typed but not acceptable (an unknown event kind, ...)."""
    return problem(_http_kind(400), detail)


def command_problem(exc: BaseException, request_id: str, station: str) -> ProblemDetailsException:
    """The problem for a command that ended with ``exc`` (one of :data:`COMMAND_ERRORS`)."""
    kind = next(k for cls, k in _COMMAND_KINDS.items() if isinstance(exc, cls))
    extra: dict[str, Any] = {"request_id": request_id, "station": station}
    headers = None
    detail = str(exc) or kind.title
    if isinstance(exc, OutboundValidationError):
        if exc.code == "NotImplemented":
            kind = _UNKNOWN_ACTION
        extra.update(code=exc.code, protocol=exc.protocol, action=exc.action)
        detail = exc.description
    elif isinstance(exc, OutboundCallFailed):
        extra.update(action=exc.action)
        if isinstance(exc, CallError):
            extra.update(code=exc.code, description=exc.description, details=exc.details)
        elif isinstance(exc, StationBusy):
            headers = {"Retry-After": "1"}
    return problem(kind, detail, headers, **extra)


def store_problem(exc: StoreUnavailable) -> ProblemDetailsException:
    """503 for a read the store could not serve."""
    return problem(_STORE, str(exc))


def not_ready_problem(detail: str) -> ProblemDetailsException:
    """503 from the readiness probe: the node is draining or not listening."""
    return problem(_NOT_READY, detail)


def http_problem(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own errors (malformed request, no key, role too low, no route, ...)."""
    extra = exc.extra if isinstance(exc.extra, list) and exc.extra else None
    return problem(_http_kind(exc.status_code), exc.detail, exc.headers, extra=extra)


def internal_problem(exc: Exception) -> ProblemDetailsException:
    """500 for a bug; logged with its traceback, never shown to the client."""
    log.error("request failed", exc_info=exc)
    return problem(_INTERNAL, "see the server log")


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI response entries (problem bodies) for ``statuses``."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type="application/problem+json",
            description=_DESCRIPTIONS[status],
        )
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "The request is malformed (body, parameter types or values).",
    401: "No API key, or an unknown one.",
    403: "The API key's role does not allow this.",
    404: "No such station, registration, or (message mode) action in the station's version.",
    409: "The station is not connected to this node; nothing was sent.",
    413: "The CALL's frame would exceed max_frame_bytes; nothing was sent.",
    422: "The payload violates the OCPP schema of the station's version; nothing was sent.",
    501: "The use case has no equivalent in the station's protocol version; nothing was sent.",
    502: "The station answered with a CALLERROR (its code, description and details).",
    503: "The station's call queue is full (Retry-After), or the store is unreachable.",
    504: "The station did not answer within call_timeout (recorded as CallTimedOut).",
}

COMMAND_RESPONSES = responses(400, 401, 403, 404, 409, 413, 422, 501, 502, 503, 504)
"""The documented error responses of a command route."""
