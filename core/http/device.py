"""Device-management routes of one station: its device model (paged), problems, meter readings
and display messages, each a projection (docs/device-management.md). Changing them goes
through the use cases of the commands route (``set_display_message``, ``get_base_report``,
...)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.log import PAGE
from chargeledger.core.http.problems import responses
from chargeledger.core.http.stations import require_known
from chargeledger.projections import (
    DeviceModelState,
    StationDisplay,
    StationMeters,
    StationProblems,
    device_model_json,
    display_messages_json,
    meters_json,
    problems_json,
)

__all__ = ["ROUTES"]


@get(
    "/api/stations/{station_id:str}/device-model",
    guards=[requires("read")],
    responses=responses(400, 401, 403, 404),
    tags=["device management"],
)
async def station_device_model(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    after: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE)] = 100,
    component: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """The station's 2.0.1 device model (docs/projections.md): ``variables``, a page of at
    most ``limit`` variables sorted by key, after the key ``after`` (the previous page's
    ``next``; ``null`` on the last page), only those of ``component`` when given; its
    ``reports`` and ``unknown_variables``. A 1.6 station's configuration keys are in the
    station view. 404 when the station was never seen nor registered."""
    views = ctx.csms.views
    require_known(views, station_id)
    state = views.device_model.get(station_id) or DeviceModelState(station=station_id)
    found = device_model_json(state)
    keys = [
        key
        for key, variable in found["variables"].items()
        if (after is None or key > after)
        and (component is None or variable["component"] == component)
    ]
    page = keys[:limit]
    found["variables"] = [{"key": key, **found["variables"][key]} for key in page]
    found["total"] = len(state.variables)
    found["next"] = page[-1] if len(keys) > limit else None
    return found


@get(
    "/api/stations/{station_id:str}/problems",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["device management"],
)
async def station_problems(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The station's problems (both versions; docs/projections.md): the ``active`` ones, by
    variable key, and the ``recent`` events (2.0.1 NotifyEvent, connector faults from
    StatusNotification), oldest first. 404 when the station was never seen nor
    registered."""
    views = ctx.csms.views
    require_known(views, station_id)
    return problems_json(views.problems.get(station_id) or StationProblems(station=station_id))


@get(
    "/api/stations/{station_id:str}/meter",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["device management"],
)
async def station_meter(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    connector: FromQuery[int | None] = None,
) -> dict[str, Any]:
    """The latest reading of each meter of the station, per connector (EVSE; 0: the main
    meter), measurand, phase and location, with its unit, context (``Sample.Clock`` for
    clock-aligned data), the station's timestamp and the transaction it was taken in
    (``null`` outside one); ``connector`` keeps one connector's. 404 when the station was
    never seen nor registered."""
    views = ctx.csms.views
    require_known(views, station_id)
    found = meters_json(views.meters.get(station_id) or StationMeters(station=station_id))
    if connector is not None:
        found["readings"] = [r for r in found["readings"] if r["connector_id"] == connector]
    return found


@get(
    "/api/stations/{station_id:str}/display-messages",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["device management"],
)
async def station_display_messages(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """What the station displays (2.0.1 display messages): each message by id with its
    priority, state, validity window (as sent, and ``window``: ``pending``, ``current`` or
    ``expired`` now), content and where it came from, and the GetDisplayMessages reports.
    404 when the station was never seen nor registered."""
    views = ctx.csms.views
    require_known(views, station_id)
    state = views.display_messages.get(station_id) or StationDisplay(station=station_id)
    return display_messages_json(state, time.time())


ROUTES = [station_device_model, station_problems, station_meter, station_display_messages]
