"""Command routes: use-case mode and message mode, through the one door (recorded with the
caller first)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, JSONBody

from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.models import UseCase
from chargeledger.core.http.problems import COMMAND_ERRORS, COMMAND_RESPONSES, command_problem
from chargeledger.core.usecases import UseCaseResult

__all__ = ["REQUEST_ID_HEADER", "ROUTES"]

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-Id"
"""Response header naming the command's ``CommandRequested.request_id``."""


async def _command(station: str, send: Callable[[str], Awaitable[T]]) -> Response[T]:
    """``send(request_id)`` through the one door (which records who asked for what first).

    Every failure of the command becomes its problem (see ``problems.command_problem``);
    ``StoreUnavailable`` while recording means nothing was sent (503); a use case above the
    caller's role is 403."""
    request_id = str(uuid.uuid4())
    try:
        result = await send(request_id)
    except PermissionError as exc:
        raise PermissionDeniedException(detail=str(exc)) from exc
    except COMMAND_ERRORS as exc:
        raise command_problem(exc, request_id, station) from exc
    return Response(result, headers={REQUEST_ID_HEADER: request_id})


@post(
    "/api/stations/{station_id:str}/commands",
    guards=[requires("operator")],
    responses=COMMAND_RESPONSES,
    tags=["commands"],
    status_code=200,
)
async def use_case(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    data: JSONBody[UseCase],
    request: Request[Caller, Any, Any],
) -> Response[UseCaseResult]:
    """Use-case mode: the same request whatever the station's protocol version.

    The body names the use case in ``use_case`` (the table in docs/api.md lists them all)
    with its arguments. 200 carries the station's answer, also when it refused (``accepted``
    false); the ``X-Request-Id`` header names the recorded ``CommandRequested``."""
    return await _command(
        station_id,
        lambda request_id: ctx.csms.run(
            station_id, data, caller=request.user, request_id=request_id
        ),
    )


@post(
    "/api/stations/{station_id:str}/calls/{action:str}",
    guards=[requires("operator")],
    responses=COMMAND_RESPONSES,
    tags=["commands"],
    status_code=200,
)
async def message(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    action: FromPath[str],
    data: JSONBody[dict[str, Any]],
    request: Request[Caller, Any, Any],
) -> Response[dict[str, Any]]:
    """Message mode: send ``action`` with the body as its payload, checked against the
    station's protocol version, and return the station's CALLRESULT payload."""
    return await _command(
        station_id,
        lambda request_id: ctx.csms.call(
            station_id, action, data, caller=request.user, request_id=request_id
        ),
    )


ROUTES = [use_case, message]
