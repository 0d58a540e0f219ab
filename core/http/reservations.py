"""Reservation routes: the reservations projection (making and cancelling a reservation are
the use cases ``reserve_now`` and ``cancel_reservation`` of the commands route)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import not_found, responses
from chargeledger.projections import Views, reservation_json
from chargeledger.projections.reservations import ReservationStatus

__all__ = ["ROUTES"]


def _reservations(views: Views, station: str | None, status: str | None) -> dict[str, Any]:
    return {
        "reservations": [
            reservation_json(state)
            for state in views.reservations.all(station)
            if status is None or state.status == status
        ],
        "anomalies": [
            {
                "kind": anomaly.kind,
                "station": anomaly.station,
                "position": anomaly.position,
                "reservation_id": anomaly.reservation_id,
                "transaction_id": anomaly.transaction_id,
                "detail": anomaly.detail,
            }
            for anomaly in views.reservations.anomalies
            if station is None or anomaly.station == station
        ],
    }


@get(
    "/api/reservations",
    guards=[requires("read")],
    responses=responses(401, 403),
    tags=["reservations"],
)
async def list_reservations(
    ctx: NamedDependency[ApiContext], status: FromQuery[ReservationStatus | None] = None
) -> dict[str, Any]:
    """Every reservation (oldest first; ``status`` keeps one status: ``pending``,
    ``accepted``, ``rejected``, ``used``, ``cancelled``, ``expired``) and the anomalies of the
    starts the reservations do not explain (fields in docs/projections.md)."""
    return _reservations(ctx.csms.views, None, status)


@get(
    "/api/stations/{station_id:str}/reservations",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["reservations"],
)
async def station_reservations(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    status: FromQuery[ReservationStatus | None] = None,
) -> dict[str, Any]:
    """The station's reservations and reservation anomalies, as ``/api/reservations``; 404
    when the station was never seen nor registered."""
    views = ctx.csms.views
    if views.stations.get(station_id) is None and views.registry.get(station_id) is None:
        raise not_found(f"station {station_id!r} was never seen nor registered")
    return _reservations(views, station_id, status)


ROUTES = [list_reservations, station_reservations]
