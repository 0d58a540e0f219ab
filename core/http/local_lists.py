"""Local authorization list routes: the list definitions, each station's sync state (which
stations are behind), defining and deleting lists, and pushing them (docs/authorization.md)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import bad_request, not_found, responses
from chargeledger.core.usecases import local_list_too_large
from chargeledger.projections import Views
from chargeledger.projections.local_lists import (
    StationListState,
    list_definition_json,
    station_list_json,
)

__all__ = ["ROUTES", "LocalListRequest", "PushRequest", "sync_rows"]


class LocalListRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A local list's definition: the registry's tokens it selects (``all``, those of
    ``group``, or the explicit ``tokens``) and the ``stations`` it goes to (absent: every
    station)."""

    selection: Literal["all", "group", "tokens"] = "all"
    group: str | None = None
    tokens: list[str] | None = None
    stations: list[str] | None = None
    description: str = ""


class PushRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which stations to bring up to date now (absent: every connected one), and whether with
    a full update."""

    stations: list[str] | None = None
    full: bool = False


def sync_rows(views: Views) -> list[dict[str, Any]]:
    """Each station a list is assigned to or was sent to: its sync state, whether it is
    ``behind`` its lists, ``too_large`` for them, and the lists assigned to it."""
    rows = []
    known = {state.station for state in views.stations.all()}
    for station in sorted(known | {state.station for state in views.local_lists.all()}):
        held = views.local_lists.get(station)
        if held is None and not views.local_lists.managed(station):
            continue
        held = held or StationListState(station=station)
        station_state = views.stations.get(station)
        protocol = held.protocol if station_state is None else station_state.protocol
        behind = views.local_lists.behind(station, protocol, views.tokens.all())
        row = station_list_json(held, behind=behind)
        row["too_large"] = local_list_too_large(views, station)
        row["lists"] = [definition.name for definition in views.local_lists.assigned(station)]
        rows.append(row)
    return rows


@get("/api/local-lists", guards=[requires("read")], responses=responses(401, 403), tags=["lists"])
async def list_local_lists(ctx: NamedDependency[ApiContext]) -> list[dict[str, Any]]:
    """Every local list definition, sorted by name."""
    return [list_definition_json(d) for d in ctx.csms.views.local_lists.definitions()]


@get(
    "/api/local-lists/sync",
    guards=[requires("read")],
    responses=responses(401, 403),
    tags=["lists"],
)
async def local_list_sync(
    ctx: NamedDependency[ApiContext], behind: FromQuery[bool | None] = None
) -> list[dict[str, Any]]:
    """Per station: the list version sent, acknowledged and reported, the last answer, the
    update counts, and whether it is ``behind`` its lists (filter: ``behind``)."""
    rows = sync_rows(ctx.csms.views)
    return [row for row in rows if behind is None or row["behind"] == behind]


@put(
    "/api/local-lists/{name:str}",
    guards=[requires("operator")],
    responses=responses(400, 401, 403, 503),
    tags=["lists"],
    status_code=200,
)
async def define_local_list(
    ctx: NamedDependency[ApiContext],
    name: FromPath[str],
    data: JSONBody[LocalListRequest],
    request: Request[Caller, Any, Any],
) -> dict[str, Any]:
    """Define (or redefine) the list ``name``; recorded as ``LocalListDefined``, then the
    local_list plugin brings the connected stations up to date. 400 for a ``group``
    selection without a group or a ``tokens`` selection without tokens."""
    try:
        definition = await ctx.csms.define_local_list(
            name,
            selection=data.selection,
            group=data.group,
            tokens=data.tokens,
            stations=data.stations,
            description=data.description,
            caller=request.user,
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return list_definition_json(definition)


@delete(
    "/api/local-lists/{name:str}",
    guards=[requires("operator")],
    responses=responses(401, 403, 404, 503),
    tags=["lists"],
)
async def delete_local_list(
    ctx: NamedDependency[ApiContext], name: FromPath[str], request: Request[Caller, Any, Any]
) -> None:
    """Delete the list ``name`` (recorded as ``LocalListDeleted``); its stations lose its
    entries at their next update. 404 when no such list exists."""
    if not await ctx.csms.delete_local_list(name, caller=request.user):
        raise not_found(f"no local list {name!r}")


@post(
    "/api/local-lists/push",
    guards=[requires("operator")],
    responses=responses(400, 401, 403, 503),
    tags=["lists"],
    status_code=202,
)
async def push_local_lists(
    ctx: NamedDependency[ApiContext],
    data: JSONBody[PushRequest],
    request: Request[Caller, Any, Any],
) -> dict[str, Any]:
    """Bring stations up to date now (recorded as ``LocalListPushRequested``); 202: the
    updates and the stations' answers follow in the log and in ``/api/local-lists/sync``."""
    stations = await ctx.csms.push_local_lists(data.stations, full=data.full, caller=request.user)
    return {"stations": stations, "full": data.full}


ROUTES = [list_local_lists, local_list_sync, define_local_list, delete_local_list, push_local_lists]
