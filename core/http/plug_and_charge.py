"""The Plug & Charge route: what the CSMS answered a station about ISO 15118 certificates."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath

from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import not_found, responses
from chargeledger.projections import StationPlugAndCharge, plug_and_charge_json

__all__ = ["ROUTES"]


@get(
    "/api/stations/{station_id:str}/plug-and-charge",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["security"],
)
async def station_plug_and_charge(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The station's Plug & Charge projection (docs/plug-and-charge.md): what we answered its
    GetCertificateStatus and certificate Authorize requests (`answers`), the contract
    certificates it asked for with Get15118EVCertificate (`contracts`) and the OCSP checks
    made for its requests (`ocsp_checks`), whether it speaks 2.0.1 or 1.6 over DataTransfer.
    404 when the station was never seen nor registered."""
    views = ctx.csms.views
    if views.stations.get(station_id) is None and views.registry.get(station_id) is None:
        raise not_found(f"station {station_id!r} was never seen nor registered")
    state = views.plug_and_charge.get(station_id) or StationPlugAndCharge(station=station_id)
    return plug_and_charge_json(state)


ROUTES = [station_plug_and_charge]
