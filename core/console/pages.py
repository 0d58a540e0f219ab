"""The console's pages: one :class:`ConsolePage` entry each, in :data:`PAGES`.

A page is a name (its address, ``/console/<name>``), a title, a Jinja2 template in
``core/console/templates/`` and an async ``load`` that gathers what the template shows. Every
read goes through the HTTP API's own route functions or the views and the store they read, so
a page shows exactly what the API answers. A later capability adds its page with one
:func:`register` call and one template (docs/console.md shows how).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from chargeledger.core.api import Caller, CentralSystem
from chargeledger.core.audit.findings import fetch
from chargeledger.core.console.audit import run_audit, verify_chains
from chargeledger.core.console.views import (
    event_row,
    instant,
    meter_curve,
    recent_frames,
    use_case_forms,
)
from chargeledger.core.events import EVENT_TYPES
from chargeledger.core.http import billing, local_lists, reservations, tokens
from chargeledger.core.http.context import ApiContext
from chargeledger.projections import problems_json, station_json, transaction_json
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


async def _transactions(request: PageRequest) -> dict[str, Any]:
    complete = request.arg("complete")
    page = await billing.transactions.fn(
        request.ctx,
        station=request.arg("station"),
        status=request.arg("status"),
        complete=None if complete is None else complete == "true",
        since=instant(request.arg("since")),
        until=instant(request.arg("until")),
        after=int(request.arg("after") or 0),
        limit=int(request.arg("limit") or 100),
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
    return {
        "transaction": transaction_json(transaction),
        "station": transaction.station,
        "chart": meter_curve(transaction, list(frames.values())),
        "frames": [event_row(recorded) for recorded in frames.values()],
    }


async def _events(request: PageRequest) -> dict[str, Any]:
    return {"kinds": sorted(EVENT_TYPES)}


async def _audit(request: PageRequest) -> dict[str, Any]:
    if not request.arg("run"):
        return {"ran": False}
    store = request.csms.store
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
):
    register(_page)
