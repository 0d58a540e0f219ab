"""Smart-charging routes: the charging-profile projection of a station and the CSMS's own
composite schedule (setting and clearing profiles, and asking the station for its composite
schedule, are use cases of the commands route; docs/smart-charging.md)."""

from __future__ import annotations

import time
from typing import Any, Literal

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import bad_request, not_found, responses
from chargeledger.core.plugin import plugin_options
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.projections.charging_profiles import charging_profiles_json
from chargeledger.projections.composite import schedule_svg
from chargeledger.projections.reservations import parse_time

__all__ = ["ROUTES"]


def _known(views: Views, station: str) -> None:
    if views.stations.get(station) is None and views.registry.get(station) is None:
        raise not_found(f"station {station!r} was never seen nor registered")


@get(
    "/api/stations/{station_id:str}/charging-profiles",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["smart charging"],
)
async def station_charging_profiles(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The station's charging profiles (installed by the CSMS, reported by the station,
    external limits), the transactions they follow, ISO 15118 needs and EV schedules, the
    last composite-schedule comparisons and the anomalies (docs/smart-charging.md); 404 when
    the station was never seen nor registered."""
    views = ctx.csms.views
    _known(views, station_id)
    return charging_profiles_json(views.charging_profiles, station_id)


@get(
    "/api/stations/{station_id:str}/composite-schedule",
    guards=[requires("read")],
    responses=responses(400, 401, 403, 404),
    tags=["smart charging"],
)
async def composite_schedule(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    connector: FromQuery[int] = 0,
    start: FromQuery[str | None] = None,
    duration: FromQuery[int] = 86400,
    unit: FromQuery[Literal["A", "W"]] = "W",
    format: FromQuery[Literal["json", "svg"]] = "json",
) -> Response[Any]:
    """The composite schedule the CSMS computes for the connector (EVSE; 0: the station)
    from ``start`` (RFC 3339, default now) for ``duration`` seconds (1 to 31 days' worth) in
    ``unit``, from the profiles it knows (``limit`` ``null``: no profile applies); A and W
    are converted with ``[plugins.smart_charging] voltage`` and ``phases`` (230 V, 3).
    ``format=svg``: a small plot of the limit over time instead (``image/svg+xml``)."""
    views = ctx.csms.views
    _known(views, station_id)
    at = time.time() if start is None else parse_time(start)
    if at is None:
        raise bad_request(f"start {start!r} is not an RFC 3339 time")
    if not 1 <= duration <= 31 * 86400:
        raise bad_request(f"duration {duration} is not between 1 s and 31 days")
    options = plugin_options(ctx.csms.settings, "smart_charging")
    schedule = views.charging_profiles.composite(
        station_id,
        connector,
        at,
        duration,
        unit,
        voltage=float(options.get("voltage", 230)),
        phases=int(options.get("phases", 3)),
    )
    if format == "svg":
        return Response(schedule_svg(schedule), media_type="image/svg+xml")
    body = {
        "station": station_id,
        "connector": connector,
        "start": rfc3339(at),
        "duration": duration,
        "unit": unit,
        "periods": [{"start": p.start, "limit": p.limit} for p in schedule.periods],
    }
    return Response(body)


ROUTES = [station_charging_profiles, composite_schedule]
