"""The console's pages: one :class:`ConsolePage` entry each, in :data:`PAGES`.

A page is a name (its address, ``/console/<name>``), a title, a Jinja2 template in
``core/console/templates/`` and an async ``load`` that gathers what the template shows. Every
read goes through the HTTP API's own route functions or the views and the store they read, so
a page shows exactly what the API answers. A later capability adds its page with one
:func:`register` call and one template (docs/console.md shows how).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from chargeledger.core.api import Caller, CentralSystem
from chargeledger.core.audit.findings import fetch
from chargeledger.core.console.audit import published_audit, run_audit, verify_chains
from chargeledger.core.console.views import (
    event_row,
    instant,
    meter_curve,
    recent_frames,
    use_case_forms,
)
from chargeledger.core.events import EVENT_TYPES
from chargeledger.core.http import (
    billing,
    device,
    diagnostics,
    firmware,
    local_lists,
    plug_and_charge,
    reservations,
    security,
    sites,
    smart_charging,
    tariffs,
    tokens,
)
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.stations import station_links
from chargeledger.core.times import rfc3339
from chargeledger.projections import problems_json, station_json, transaction_json
from chargeledger.projections.cost import price_text
from chargeledger.projections.device_model import device_model_json
from chargeledger.projections.transactions import TransactionState
from chargeledger.schemas import actions

__all__ = ["PAGES", "ConsolePage", "PageRequest", "register"]


@dataclass(frozen=True)
class PageRequest:
    """What a page's ``load`` gets: the API's context, who asks, and the query parameters
    (each name's first value)."""

    ctx: ApiContext
    caller: Caller
    query: Mapping[str, str]

    @property
    def csms(self) -> CentralSystem:
        return self.ctx.csms

    def arg(self, name: str) -> str | None:
        """The query parameter ``name``; ``None`` when absent or empty."""
        return self.query.get(name) or None


Loader = Callable[[PageRequest], Awaitable[dict[str, Any]]]


class ConsolePage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of the console."""

    name: str
    """Its address: ``/console/<name>``; its content: ``/console/fragment/<name>``."""
    title: str
    template: str
    """A template of ``core/console/templates/``; it gets ``load``'s dict, ``caller`` and
    ``query``."""
    load: Loader
    nav: bool = True
    """Listed in the navigation bar (a detail page, reached through links, is not)."""
    live: str = ""
    """``stations``, ``events`` or ``refresh``: what ``console.js`` does with the event stream
    on this page (``refresh``: reload the page's ``data-live`` parts when an event of its
    ``data-station``, or any event, arrives); empty: nothing."""


PAGES: dict[str, ConsolePage] = {}
"""Every page, by name, in navigation order."""


def register(page: ConsolePage) -> ConsolePage:
    """Add ``page`` to the console (a name may be registered once)."""
    if page.name in PAGES:
        raise ValueError(f"a console page {page.name!r} is already registered")
    PAGES[page.name] = page
    return page


class PageNotFound(Exception):
    """The page's subject (a station, a transaction) does not exist."""


# -- the pages of what exists ---------------------------------------------------------------


async def _nothing(request: PageRequest) -> dict[str, Any]:
    return {}


async def _station(request: PageRequest) -> dict[str, Any]:
    station = request.arg("id") or ""
    views = request.csms.views
    state = views.stations.get(station)
    registration = views.registry.get(station)
    if state is None and registration is None:
        raise PageNotFound(f"station {station!r} was never seen nor registered")
    problems = views.problems.get(station)
    device_model = views.device_model.get(station)
    frames = await request.ctx.read_store(recent_frames, request.csms.store, station)
    protocol = state.protocol if state is not None else ""
    return {
        **await _station_blocks(request, station),
        "station": station,
        "state": None if state is None else station_json(state),
        "registration": None if registration is None else msgspec.to_builtins(registration),
        "problems": None if problems is None else problems_json(problems),
        "device_model": None if device_model is None else device_model_json(device_model),
        "frames": frames,
        "transactions": [
            transaction_json(t) for t in views.transactions.all() if t.station == station
        ][-20:],
        "forms": use_case_forms(request.caller),
        "protocol": protocol,
        "actions": sorted(actions(protocol)) if protocol else [],
    }


async def _station_blocks(request: PageRequest, station: str) -> dict[str, Any]:
    """The station's views of the device-management (firmware too), diagnostics, security,
    Plug & Charge and smart-charging blocks, each read through its API route (customer
    information only for the operator role, as the API asks), and the ``links`` of the
    station view."""
    ctx = request.ctx
    customers = None
    if request.caller.may("operator"):
        customers = await diagnostics.station_customer_information.fn(ctx, station_id=station)
    return {
        "meter": await device.station_meter.fn(ctx, station_id=station, connector=None),
        "display": await device.station_display_messages.fn(ctx, station_id=station),
        "logs": await diagnostics.station_logs.fn(ctx, station_id=station),
        "monitors": await diagnostics.station_monitors.fn(ctx, station_id=station),
        "customer_information": customers,
        "certificates": await security.station_certificates.fn(ctx, station_id=station),
        "security_events": await security.station_security_events.fn(
            ctx, station_id=station, critical=None
        ),
        "plug_and_charge": await plug_and_charge.station_plug_and_charge.fn(
            ctx, station_id=station
        ),
        "firmware": await firmware.station_firmware.fn(ctx, station_id=station),
        "links": station_links(station),
        **await _smart_charging(ctx, station),
    }


async def _smart_charging(ctx: ApiContext, station: str) -> dict[str, Any]:
    """The station's charging profiles and, for the station (0) and each connector/EVSE with
    a profile, the composite schedule the CSMS computes for the next 24 hours in W, with its
    plot (the route's SVG, as a ``data:`` address for an ``img``)."""
    found = await smart_charging.station_charging_profiles.fn(ctx, station_id=station)
    start = rfc3339(time.time())
    composites = []
    for place in sorted({0, *(profile["place"] for profile in found["profiles"])}):
        args = {"station_id": station, "connector": place, "start": start, "duration": 86400}
        schedule = await smart_charging.composite_schedule.fn(ctx, **args, unit="W", format="json")
        plot = await smart_charging.composite_schedule.fn(ctx, **args, unit="W", format="svg")
        svg = base64.b64encode(str(plot.content).encode()).decode()
        composites.append({**schedule.content, "plot": f"data:image/svg+xml;base64,{svg}"})
    return {"charging_profiles": found, "composites": composites}


def _list_filters(request: PageRequest) -> dict[str, Any]:
    """The filters and cursor the transaction and CDR routes share, from the query."""
    complete = request.arg("complete")
    return {
        "station": request.arg("station"),
        "complete": None if complete is None else complete == "true",
        "since": instant(request.arg("since")),
        "until": instant(request.arg("until")),
        "after": int(request.arg("after") or 0),
        "limit": int(request.arg("limit") or 100),
    }


async def _transactions(request: PageRequest) -> dict[str, Any]:
    page = await billing.transactions.fn(
        request.ctx, status=request.arg("status"), **_list_filters(request)
    )
    return {"items": [transaction_json(t) for t in page.items], "next": page.next}


def _find_transaction(request: PageRequest) -> TransactionState:
    station, wanted = request.arg("station"), request.arg("id")
    for transaction in request.csms.views.transactions.all():
        if transaction.station == station and str(transaction.transaction_id) == wanted:
            return transaction
    raise PageNotFound(f"station {station!r} has no transaction {wanted!r}")


async def _transaction(request: PageRequest) -> dict[str, Any]:
    transaction = _find_transaction(request)
    frames = await request.ctx.read_store(fetch, request.csms.store, transaction.positions)
    views = request.csms.views
    metered = views.metering.get(transaction)
    tariff = None if metered is None else metered.tariff
    cost = views.metering.cost(transaction)
    return {
        "transaction": transaction_json(transaction),
        "station": transaction.station,
        "tariff": None if tariff is None else {"id": tariff.id, "prices": price_text(tariff)},
        "cost": None if cost is None else msgspec.to_builtins(cost),
        "chart": meter_curve(transaction, list(frames.values())),
        "frames": [event_row(recorded) for recorded in frames.values()],
    }


async def _events(request: PageRequest) -> dict[str, Any]:
    return {"kinds": sorted(EVENT_TYPES)}


async def _audit(request: PageRequest) -> dict[str, Any]:
    store = request.csms.store
    if not request.arg("run"):
        worker = await request.ctx.read_store(published_audit, store)
        return {"ran": False, "worker": worker, "here": request.csms.views.position}
    since, until = instant(request.arg("since")), instant(request.arg("until"))
    summary, findings, report = await request.ctx.read_store(
        run_audit,
        store,
        request.arg("station"),
        None if since is None else since.timestamp(),
        None if until is None else until.timestamp(),
    )
    chains = await request.ctx.read_store(verify_chains, store)
    return {
        "ran": True,
        "summary": msgspec.to_builtins(summary),
        "findings": len(findings),
        "report": report,
        "chains": chains,
    }


async def _tokens(request: PageRequest) -> dict[str, Any]:
    found = await tokens.list_tokens.fn(request.ctx, group=request.arg("group"))
    return {"tokens": msgspec.to_builtins(found)}


async def _local_lists(request: PageRequest) -> dict[str, Any]:
    return {
        "lists": await local_lists.list_local_lists.fn(request.ctx),
        "sync": await local_lists.local_list_sync.fn(request.ctx, behind=None),
    }


async def _reservations(request: PageRequest) -> dict[str, Any]:
    found: dict[str, Any] = await reservations.list_reservations.fn(
        request.ctx, status=request.arg("status")
    )
    return found


async def _tariffs(request: PageRequest) -> dict[str, Any]:
    return {
        "tariffs": msgspec.to_builtins(
            [
                {**msgspec.structs.asdict(state), "prices": price_text(state.tariff)}
                for state in await tariffs.list_tariffs.fn(request.ctx)
            ]
        ),
        "assignments": msgspec.to_builtins(
            await tariffs.list_assignments.fn(request.ctx, tariff_id=request.arg("tariff"))
        ),
    }


async def _sites(request: PageRequest) -> dict[str, Any]:
    return {"sites": await sites.list_sites.fn(request.ctx)}


async def _campaigns(request: PageRequest) -> dict[str, Any]:
    status = request.arg("status")
    return {"campaigns": await firmware.list_campaigns.fn(request.ctx, status=status)}


async def _cdrs(request: PageRequest) -> dict[str, Any]:
    page = await billing.cdrs.fn(request.ctx, **_list_filters(request))
    return {"items": msgspec.to_builtins(page.items), "next": page.next}


for _page in (
    ConsolePage(
        name="stations",
        title="Stations",
        template="stations.html.j2",
        load=_nothing,
        live="stations",
    ),
    ConsolePage(
        name="station",
        title="Station",
        template="station.html.j2",
        load=_station,
        nav=False,
        live="refresh",
    ),
    ConsolePage(
        name="transactions",
        title="Transactions",
        template="transactions.html.j2",
        load=_transactions,
        live="refresh",
    ),
    ConsolePage(
        name="transaction",
        title="Transaction",
        template="transaction.html.j2",
        load=_transaction,
        nav=False,
        live="refresh",
    ),
    ConsolePage(
        name="events", title="Event log", template="events.html.j2", load=_events, live="events"
    ),
    ConsolePage(name="audit", title="Audit", template="audit.html.j2", load=_audit),
    ConsolePage(name="tokens", title="Tokens", template="tokens.html.j2", load=_tokens),
    ConsolePage(
        name="local-lists",
        title="Local lists",
        template="local_lists.html.j2",
        load=_local_lists,
    ),
    ConsolePage(
        name="reservations",
        title="Reservations",
        template="reservations.html.j2",
        load=_reservations,
        live="refresh",
    ),
    ConsolePage(
        name="tariffs", title="Tariffs", template="tariffs.html.j2", load=_tariffs, live="refresh"
    ),
    ConsolePage(name="cdrs", title="Billing", template="cdrs.html.j2", load=_cdrs, live="refresh"),
    ConsolePage(name="sites", title="Sites", template="sites.html.j2", load=_sites, live="refresh"),
    ConsolePage(
        name="firmware-campaigns",
        title="Campaigns",
        template="firmware_campaigns.html.j2",
        load=_campaigns,
        live="refresh",
    ),
):
    register(_page)
