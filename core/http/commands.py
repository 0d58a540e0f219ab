"""Command routes: use-case mode and message mode, each recorded with its author first."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from chargeledger.core.events import CommandRequested, command_stream
from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.models import UseCase
from chargeledger.core.http.problems import COMMAND_ERRORS, COMMAND_RESPONSES, command_problem
from chargeledger.core.usecases import UseCaseResult

__all__ = ["REQUEST_ID_HEADER", "ROUTES"]

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-Id"
"""Response header naming the command's ``CommandRequested.request_id``."""


async def _command(
    ctx: ApiContext,
    caller: Caller,
    station: str,
    mode: Literal["use_case", "message"],
    command: str,
    payload: dict[str, Any],
    send: Callable[[], Awaitable[T]],
) -> Response[T]:
    """Record who asked for what (``CommandRequested``), then ``send()``.

    Every failure of the command becomes its problem (see ``problems.command_problem``);
    ``StoreUnavailable`` while recording means nothing was sent (503)."""
    event = CommandRequested(
        request_id=str(uuid.uuid4()),
        station=station,
        at=time.time(),
        key=caller.name,
        role=caller.role,
        mode=mode,
        command=command,
        payload=payload,
        node=ctx.csms.gateway.node,
    )
    await ctx.csms.gateway.writer.append([(command_stream(event.request_id), event)])
    try:
        result = await send()
    except COMMAND_ERRORS as exc:
        raise command_problem(exc, event.request_id, station) from exc
    return Response(result, headers={REQUEST_ID_HEADER: event.request_id})


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

    The body names the use case in ``use_case`` (``remote_start``, ``remote_stop``,
    ``reset``, ``change_availability``, ``unlock_connector``, ``read_configuration``,
    ``change_configuration``, ``trigger_message``, ``clear_cache``, ``data_transfer``) with
    its arguments. 200 carries the station's answer, also when it refused (``accepted``
    false); the ``X-Request-Id`` header names the recorded ``CommandRequested``."""
    name = type(data).__struct_config__.tag
    assert isinstance(name, str)
    return await _command(
        ctx,
        request.user,
        station_id,
        "use_case",
        name,
        msgspec.to_builtins(data),
        lambda: data.invoke(ctx.csms, station_id),
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
        ctx,
        request.user,
        station_id,
        "message",
        action,
        data,
        lambda: ctx.csms.call(station_id, action, data),
    )


ROUTES = [use_case, message]
