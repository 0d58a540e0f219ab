"""Station security routes: the certificate and security-events projections of a station."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import not_found, responses
from chargeledger.projections import (
    StationCertificates,
    StationSecurityEvents,
    Views,
    certificates_json,
    security_events_json,
)

__all__ = ["ROUTES"]


def _known(views: Views, station: str) -> None:
    """Raise 404 when ``station`` was never seen nor registered."""
    if views.stations.get(station) is None and views.registry.get(station) is None:
        raise not_found(f"station {station!r} was never seen nor registered")


@get(
    "/api/stations/{station_id:str}/certificates",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["security"],
)
async def station_certificates(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The station's certificate projection: the certificates it holds (by OCPP hash data,
    from InstallCertificate and GetInstalledCertificateIds), the CSRs it sent with our answer
    and why a rejected one was rejected, the certificates we signed (serial, expiry) and the
    deletions it confirmed (fields in docs/projections.md). 404 when the station was never
    seen nor registered."""
    views = ctx.csms.views
    _known(views, station_id)
    state = views.certificates.get(station_id) or StationCertificates(station=station_id)
    return certificates_json(state)


@get(
    "/api/stations/{station_id:str}/security-events",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["security"],
)
async def station_security_events(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    critical: FromQuery[bool | None] = None,
) -> dict[str, Any]:
    """The SecurityEventNotifications the station sent: the latest ones (oldest first), the
    count by type and of critical ones (the Security events list's critical flag, see
    docs/security.md). ``critical=true`` keeps only critical events in ``recent``. 404 when
    the station was never seen nor registered."""
    views = ctx.csms.views
    _known(views, station_id)
    state = views.security_events.get(station_id) or StationSecurityEvents(station=station_id)
    found = security_events_json(state)
    if critical is not None:
        found["recent"] = [event for event in found["recent"] if event["critical"] == critical]
    return found


ROUTES = [station_certificates, station_security_events]
