"""Diagnostics routes: a station's log uploads, monitors and customer-information reports
(the requests are use cases of the commands route: ``get_diagnostics``, ``get_log``, the
monitoring use cases, ``customer_information``)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath

from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import not_found, responses
from chargeledger.projections import Views
from chargeledger.projections.customer_information import (
    StationCustomerInformation,
    customer_information_json,
    customer_request_json,
)
from chargeledger.projections.logs import StationLogs, logs_json
from chargeledger.projections.monitors import StationMonitors, monitors_json

__all__ = ["ROUTES"]


def _known(views: Views, station: str) -> None:
    if views.stations.get(station) is None and views.registry.get(station) is None:
        raise not_found(f"station {station!r} was never seen nor registered")


@get(
    "/api/stations/{station_id:str}/logs",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["diagnostics"],
)
async def station_logs(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The diagnostics and log uploads asked of the station, oldest first, each with the
    station's answer, the file it named and its upload status history (fields in
    docs/device-management.md); 404 when the station was never seen nor registered."""
    views = ctx.csms.views
    _known(views, station_id)
    return logs_json(views.logs.get(station_id) or StationLogs(station=station_id))


@get(
    "/api/stations/{station_id:str}/monitors",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["diagnostics"],
)
async def station_monitors(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The station's variable monitors (2.0.1) by id, with the events each fired, its
    monitoring base and level and its monitoring reports (fields in
    docs/device-management.md); 404 when the station was never seen nor registered."""
    views = ctx.csms.views
    _known(views, station_id)
    return monitors_json(views.monitors.get(station_id) or StationMonitors(station=station_id))


@get(
    "/api/stations/{station_id:str}/customer-information",
    guards=[requires("operator")],
    responses=responses(401, 403, 404),
    tags=["diagnostics"],
)
async def station_customer_information(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The CustomerInformation requests sent to the station (2.0.1), oldest first: who asked,
    report and/or clear, the station's answer and the assembled report (personal data: the
    operator role, as for asking); 404 when the station was never seen nor registered."""
    views = ctx.csms.views
    _known(views, station_id)
    state = views.customer_information.get(station_id)
    return customer_information_json(state or StationCustomerInformation(station=station_id))


@get(
    "/api/stations/{station_id:str}/customer-information/{request_id:int}",
    guards=[requires("operator")],
    responses=responses(401, 403, 404),
    tags=["diagnostics"],
)
async def customer_information_request(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str], request_id: FromPath[int]
) -> dict[str, Any]:
    """One CustomerInformation request (as `customer_information` returned its
    `values.request_id`) with its assembled report; 404 when the station has no such
    request."""
    request = ctx.csms.views.customer_information.request(station_id, request_id)
    if request is None:
        raise not_found(f"station {station_id!r} has no customer-information request {request_id}")
    return customer_request_json(request)


ROUTES = [
    station_logs,
    station_monitors,
    station_customer_information,
    customer_information_request,
]
