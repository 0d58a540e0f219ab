"""The console's routes: public page shells and assets, and the authenticated fragments and
data the shells fetch with the API key the browser keeps in its session.

A page's address, ``/console/<name>``, answers a shell with no data in it: the key lives only
in the browser's ``sessionStorage``, so the shell's script fetches ``/console/fragment/<name>``
(the page's template rendered with its data, for the ``read`` role) with the key as
``Authorization: Bearer``, as every call of the API. Commands go to the API's command routes.
"""

from __future__ import annotations

from collections import defaultdict
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

import chargeledger.schemas
from chargeledger.core.api import Caller
from chargeledger.core.console.pages import PAGES, PageNotFound, PageRequest
from chargeledger.core.errors import OutboundValidationError
from chargeledger.core.frames import to_wire
from chargeledger.core.http.app import OPENAPI_PATH
from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import bad_request, not_found
from chargeledger.core.times import rfc3339
from chargeledger.projections import StationState, Views
from chargeledger.schemas import OCPP16

__all__ = ["CONSOLE", "ROUTES", "station_row"]

CONSOLE = "/console"
_PUBLIC = {"public": True}
_HERE = Path(str(files("chargeledger.core.console")))
_SCHEMAS = Path(chargeledger.schemas.__file__).parent / "json"


def _time(at: float | None) -> str:
    return "" if at is None else rfc3339(at)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["time"] = _time
    environment.filters["pretty"] = lambda value: msgspec.json.format(
        msgspec.json.encode(value), indent=2
    ).decode()
    return environment


_TEMPLATES = _environment()


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        text, media_type="text/html; charset=utf-8", status_code=status, headers=headers
    )


@get("/", opt=_PUBLIC, include_in_schema=False)
async def root() -> Redirect:
    """The server's address leads to the console."""
    return Redirect(f"{CONSOLE}/stations")


@get([CONSOLE, f"{CONSOLE}/"], opt=_PUBLIC, include_in_schema=False)
async def console_root() -> Redirect:
    return Redirect(f"{CONSOLE}/stations")


@get(f"{CONSOLE}/{{page:str}}", opt=_PUBLIC, include_in_schema=False)
async def shell(page: FromPath[str]) -> Response[str]:
    """The page's shell: the frame (navigation, sign-in) with no data; console.js fills it."""
    found = PAGES.get(page)
    if found is None:
        raise not_found(f"the console has no page {page!r}")
    return _html(
        _TEMPLATES.get_template("shell.html.j2").render(
            page=found, pages=[p for p in PAGES.values() if p.nav], docs=OPENAPI_PATH
        )
    )


@get(f"{CONSOLE}/fragment/{{page:str}}", guards=[requires("read")], include_in_schema=False)
async def fragment(
    ctx: NamedDependency[ApiContext], page: FromPath[str], request: Request[Caller, Any, Any]
) -> Response[str]:
    """The page's content for the caller (``read`` role): its template with its data. The
    ``X-Caller`` header names the key and its role, for the frame."""
    found = PAGES.get(page)
    if found is None:
        raise not_found(f"the console has no page {page!r}")
    query = defaultdict(str, {k: v for k, v in request.query_params.items() if v})
    caller = request.user
    try:
        data = await found.load(PageRequest(ctx, caller, query))
    except PageNotFound as exc:
        raise not_found(str(exc)) from None
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    text = _TEMPLATES.get_template(found.template).render(
        **data, caller=caller, query=query, page=found
    )
    return _html(text, headers={"X-Caller": f"{caller.name} ({caller.role})"})


def station_row(views: Views, state: StationState) -> dict[str, Any]:
    """A row of the live station table: what it shows of ``state``, compactly."""
    boot = state.boot
    problems = views.problems.get(state.station)
    if state.protocol == OCPP16:  # by connector id, 0 is the station
        connectors = {
            str(connector) if connector else "station": c.status
            for connector, c in sorted(state.connectors.items())
        }
    else:  # by EVSE/connector, EVSE 0 is the station
        connectors = {
            f"{evse}/{connector}" if evse else "station": c.status
            for evse, by_connector in sorted(state.evses.items())
            for connector, c in sorted(by_connector.items())
        }
    return {
        "id": state.station,
        "connected": state.connected,
        "protocol": state.protocol,
        "boot": None if boot is None else boot.status,
        "vendor": None if boot is None else boot.vendor,
        "model": None if boot is None else boot.model,
        "firmware": None if boot is None else boot.firmware_version,
        "connectors": connectors,
        "heartbeat": _time(state.last_heartbeat),
        "seen": _time(state.last_seen),
        "problems": 0 if problems is None else len(problems.active),
        "registered": views.registry.get(state.station) is not None,
    }


@get(f"{CONSOLE}/data/stations", guards=[requires("read")], include_in_schema=False)
async def station_rows(
    ctx: NamedDependency[ApiContext], id: FromQuery[list[str] | None] = None
) -> list[dict[str, Any]]:
    """The station table's rows: every station seen or registered, or those of ``id``
    (repeatable; what the table asks for again when the event stream says they changed)."""
    views = ctx.csms.views
    ids = (
        set(id)
        if id
        else {s.station for s in views.stations.all()} | {r.station for r in views.registry.all()}
    )
    rows = []
    for station in sorted(ids):
        state = views.stations.get(station)
        if state is None and views.registry.get(station) is None:
            continue
        rows.append(station_row(views, state or StationState(station=station)))
    return rows


class Verdict(msgspec.Struct, kw_only=True):
    """Whether a message-mode payload would be sent: ``code`` and ``message`` say why not."""

    valid: bool
    code: str | None = None
    message: str | None = None


@post(
    f"{CONSOLE}/validate/{{protocol:str}}/{{action:str}}",
    guards=[requires("read")],
    include_in_schema=False,
    status_code=200,
)
async def validate(
    protocol: FromPath[str], action: FromPath[str], data: JSONBody[dict[str, Any]]
) -> Verdict:
    """The JSON editor's check: the payload against the action's schema of ``protocol``, by
    the same check message mode makes before sending (nothing is recorded or sent)."""
    try:
        to_wire(protocol, action, data, "request")
    except OutboundValidationError as exc:
        return Verdict(valid=False, code=exc.code, message=exc.description)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return Verdict(valid=True)


ROUTES: list[ControllerRouterHandler] = [
    root,
    console_root,
    shell,
    fragment,
    station_rows,
    validate,
    create_static_files_router(
        f"{CONSOLE}/static", [_HERE / "static"], name="console-static", opt=_PUBLIC
    ),
    create_static_files_router(
        f"{CONSOLE}/schemas", [_SCHEMAS], name="console-schemas", opt=_PUBLIC
    ),
]
"""The console's route handlers, served beside the API (``run_server(settings, web=...)``)."""
