"""Station routes: list and detail (state and registration), and admin registration."""

from __future__ import annotations

import base64
import bisect
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from litestar import Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.log import PAGE
from chargeledger.core.http.models import (
    PasswordAnswer,
    PasswordRequest,
    RegistrationRequest,
    StationView,
)
from chargeledger.core.http.problems import bad_request, not_found, responses
from chargeledger.projections import Registration, StationState, Views

__all__ = ["ROUTES", "STATION_LINKS", "require_known", "station_links"]

STATION_LINKS = {
    "self": "",
    "device_model": "/device-model",
    "problems": "/problems",
    "meter": "/meter",
    "display_messages": "/display-messages",
    "firmware": "/firmware",
    "logs": "/logs",
    "monitors": "/monitors",
    "customer_information": "/customer-information",
    "certificates": "/certificates",
    "security_events": "/security-events",
    "reservations": "/reservations",
}
"""Each view of one station, by name: its path below ``/api/stations/{id}``."""


def station_links(station: str) -> dict[str, str]:
    """The paths of every view of ``station`` (``STATION_LINKS``), and the firmware
    campaigns it may be part of."""
    base = f"/api/stations/{quote(station, safe='')}"
    links = {name: base + suffix for name, suffix in STATION_LINKS.items()}
    links["firmware_campaigns"] = "/api/firmware/campaigns"
    return links


def require_known(views: Views, station: str) -> None:
    """Raise 404 when ``station`` was never seen nor registered."""
    if views.stations.get(station) is None and views.registry.get(station) is None:
        raise not_found(f"station {station!r} was never seen nor registered")


def _view(views: Views, station: str) -> StationView | None:
    state = views.stations.get(station)
    registration = views.registry.get(station)
    if state is None and registration is None:
        return None
    return StationView(
        state=state or StationState(station=station),
        registration=registration,
        links=station_links(station),
    )


@get(
    "/api/stations",
    guards=[requires("read")],
    responses=responses(400, 401, 403),
    tags=["stations"],
)
async def list_stations(
    ctx: NamedDependency[ApiContext],
    request: Request[Any, Any, Any],
    connected: FromQuery[bool | None] = None,
    status: FromQuery[str | None] = None,
    boot_status: FromQuery[str | None] = None,
    protocol: FromQuery[str | None] = None,
    registered: FromQuery[bool | None] = None,
    limit: Annotated[int | None, QueryParameter(ge=1, le=PAGE)] = None,
    after: FromQuery[str | None] = None,
) -> Response[list[StationView]]:
    """Every station seen or registered, sorted by id.

    Filters: ``connected`` (a session is open), ``status`` (some connector has this status,
    e.g. ``Available``, ``Faulted``), ``boot_status`` (our answer to its last boot:
    ``Accepted``, ``Pending``, ``Rejected``), ``protocol`` (``ocpp1.6``, ``ocpp2.0.1``),
    ``registered``. Pages: ``limit`` (1 to 1000) stations at most; when more match, the
    ``Next-Cursor`` header holds the cursor to pass as ``after`` for the next page (and
    ``Link`` the next page's URL); on the last page it is absent. A cursor stays valid as
    stations come and go: the next page starts after the station it names, in id order."""
    views = ctx.csms.views
    first_after = None if after is None else _cursor_station(after)
    ids = sorted(
        {s.station for s in views.stations.all()} | {r.station for r in views.registry.all()}
    )
    if first_after is not None:
        ids = ids[bisect.bisect_right(ids, first_after) :]
    found: list[StationView] = []
    more = False
    for station in ids:
        view = _view(views, station)
        assert view is not None
        state = view.state
        if (
            (connected is None or state.connected == connected)
            and (status is None or any(c.status == status for c in state.connectors.values()))
            and (
                boot_status is None or (state.boot is not None and state.boot.status == boot_status)
            )
            and (protocol is None or state.protocol == protocol)
            and (registered is None or (view.registration is not None) == registered)
        ):
            if limit is not None and len(found) == limit:
                more = True
                break
            found.append(view)
    headers = {}
    if more:
        cursor = _cursor(found[-1].state.station)
        headers["Next-Cursor"] = cursor
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
        headers["Link"] = (
            f'<{request.url.path}?{urlencode([*query, ("after", cursor)])}>; rel="next"'
        )
    return Response(found, headers=headers)


def _cursor(station: str) -> str:
    """The opaque cursor of a page that ends with ``station``."""
    return base64.urlsafe_b64encode(station.encode()).decode().rstrip("=")


def _cursor_station(cursor: str) -> str:
    """The station a cursor of :func:`_cursor` names; 400 for any other text."""
    try:
        station = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        station = ""
    if not station or _cursor(station) != cursor:
        raise bad_request(
            f"after: {cursor!r} is not a cursor of this list (pass the Next-Cursor header of "
            "the previous page)"
        )
    return station


@get(
    "/api/stations/{station_id:str}",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["stations"],
)
async def station_detail(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> StationView:
    """One station: connection, boot info, connectors (EVSEs for 2.0.1), configuration,
    registration, and ``links`` to its other views (device model, problems, meter, display
    messages, firmware, logs, monitors, customer information, certificates, security events,
    reservations). 404 when it was never seen nor registered."""
    view = _view(ctx.csms.views, station_id)
    if view is None:
        raise not_found(f"station {station_id!r} was never seen nor registered")
    return view


@put(
    "/api/stations/{station_id:str}/registration",
    guards=[requires("admin")],
    responses=responses(400, 401, 403, 503),
    tags=["stations"],
    status_code=200,
)
async def register_station(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    data: JSONBody[RegistrationRequest],
    request: Request[Caller, Any, Any],
) -> Registration:
    """Register the station (again: description, profile and enabled are replaced; the
    password is kept). Recorded as ``StationRegistered`` with the admin's key name."""
    return await ctx.csms.register_station(
        station_id,
        data.description,
        profile=data.profile,
        enabled=data.enabled,
        caller=request.user,
    )


@post(
    "/api/stations/{station_id:str}/password",
    guards=[requires("admin")],
    responses=responses(400, 401, 403, 404, 503),
    tags=["stations"],
    status_code=200,
)
async def set_station_password(
    ctx: NamedDependency[ApiContext],
    station_id: FromPath[str],
    data: JSONBody[PasswordRequest],
    request: Request[Caller, Any, Any],
) -> PasswordAnswer:
    """Set the registered station's HTTP Basic password (16-40 characters), or generate one
    when none is given; the answer shows it this once. Recorded as ``StationPasswordSet``
    holding only its argon2id hash. It replaces the old password at once: to change a
    connected station's password without locking it out, run the use case
    ``change_station_password`` instead. 404 when the station is not registered."""
    password = await ctx.csms.set_station_password(station_id, data.password, caller=request.user)
    if password is None:
        raise not_found(f"station {station_id!r} is not registered")
    return PasswordAnswer(password=password)


@delete(
    "/api/stations/{station_id:str}/registration",
    guards=[requires("admin")],
    responses=responses(401, 403, 404, 503),
    tags=["stations"],
)
async def deregister_station(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str], request: Request[Caller, Any, Any]
) -> None:
    """Remove the station's registration (recorded as ``StationDeregistered``); 404 when it
    is not registered. The station's log and state stay."""
    if not await ctx.csms.deregister_station(station_id, caller=request.user):
        raise not_found(f"station {station_id!r} is not registered")


ROUTES = [
    list_stations,
    station_detail,
    register_station,
    set_station_password,
    deregister_station,
]
