"""Tariff and cost (2.0.1 I; 1.6 California Pricing): the price before charging, the running
cost while charging and the final cost after (docs/tariffs.md).

* **Before.** A 2.0.1 ``Authorize`` / ``TransactionEvent`` answer whose ``idTokenInfo`` says
  ``Accepted`` carries ``personalMessage``: the price text of the tariff the token gets on
  this station (:func:`~chargeledger.projections.cost.price_text`). With
  ``[plugins.tariffs] display_message_id`` set (off by default), a 2.0.1 station also shows
  the price text of its tariff for every token while idle: ``SetDisplayMessage`` of that
  message id (state ``Idle``) once its BootNotification is accepted, and again, to every
  2.0.1 station connected here, after each tariff change (``ClearDisplayMessage`` when no
  tariff applies to it any more).
* **During.** Every 2.0.1 ``TransactionEvent`` answer of a priced transaction carries
  ``totalCost``: its cost once this event is applied, to the event's timestamp; the
  ``Ended`` event's is the final cost. And while it runs, every
  ``[plugins.tariffs] cost_updated_interval`` seconds (default 300; 0: never) a timer
  (``cost:<station>:<transaction id>``) sends ``CostUpdated`` with the cost to the timer's
  due time. A 1.6 station named in ``costmsg_stations`` (``["*"]``: every 1.6 station; empty
  by default: off) gets the same as California Pricing's ``DataTransfer``
  ``org.openchargealliance.costmsg`` ``RunningCost``.
* **After.** The 2.0.1 ``Ended`` answer's ``totalCost``; for 1.6 costmsg stations a
  ``FinalCost`` once the stop is committed.

The answers are decided from the views only (the transaction's folded readings, the
tariff it got, the CALL), so ``replay --what-if`` answers the same. The TransactionEvent
and Authorize answers are the ``transactions`` and ``authorization`` blocks' own answers,
completed with the cost (``tryfirst``): disabling ``tariffs`` leaves them as they were.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from chargeledger.core.events import TariffAssigned, TariffDefined, TariffRemoved, TariffUnassigned
from chargeledger.core.plugin import (
    OCPP16,
    OCPP201,
    Command,
    Exchange,
    InboundCall,
    Recorded,
    Reply,
    SendCall,
    Settings,
    StartTimer,
    TimerFired,
    TransactionState,
    Views,
    answers,
    hookimpl,
    is_v16,
    plugin_options,
    reacts_to,
    rfc3339,
)
from chargeledger.core.usecases_display import clear_display_message, set_display_message
from chargeledger.core.usecases_tariffs import CostUpdatedArgs, cost_updated, final_cost
from chargeledger.plugins import authorization, transactions
from chargeledger.projections.cost import Cost, price_text, prices_at
from chargeledger.projections.metering import preview_201

__all__ = [
    "answer_authorize",
    "answer_transaction_event",
    "chargeledger_react",
    "cost_timer",
]

_TIMER = "cost:"
_DEFAULT_INTERVAL = 300.0


def cost_timer(transaction: TransactionState) -> str:
    """The name of the timer that sends the transaction's running cost."""
    return f"{_TIMER}{transaction.station}:{transaction.transaction_id}"


def _interval(settings: Settings) -> float:
    return float(
        plugin_options(settings, "tariffs").get("cost_updated_interval", _DEFAULT_INTERVAL)
    )


def _display_id(settings: Settings) -> int | None:
    value = plugin_options(settings, "tariffs").get("display_message_id")
    return None if value is None else int(value)


def _show_tariff(
    views: Views, station: str, at: float, message_id: int, *, clear: bool
) -> list[Command]:
    """The station's tariff for every token at ``at`` on its display while idle; when none
    applies, ``ClearDisplayMessage`` if ``clear`` (a tariff change), else nothing."""
    tariff = views.tariffs.resolve(station, None, datetime.fromtimestamp(at, UTC))
    if tariff is None:
        if not clear:
            return []
        request = clear_display_message(OCPP201, message_id)
    else:
        text = price_text(tariff)[:512]
        request = set_display_message(OCPP201, message_id, text, state="Idle", end=tariff.valid_to)
    return [SendCall(station, request.action, request.payload)]


def _costmsg(settings: Settings, station: str) -> bool:
    stations = plugin_options(settings, "tariffs").get("costmsg_stations", [])
    return "*" in stations or station in stations


def _message(text: str) -> dict[str, Any]:
    return {"format": "UTF8", "content": text[:512]}


def _with_personal_message(
    answer: dict[str, Any], station: str, token: Any, at: float, views: Views
) -> dict[str, Any]:
    """``answer`` with ``idTokenInfo.personalMessage`` when the token is Accepted and a
    tariff applies to it here at ``at``."""
    info = answer.get("idTokenInfo")
    if token is None or type(info) is not dict or info.get("status") != "Accepted":
        return answer
    state = views.tokens.get(token.id_token, token.type)
    group = None if state is None else state.group
    tariff = views.tariffs.resolve(station, group, datetime.fromtimestamp(at, UTC))
    if tariff is None or "personalMessage" in info:
        return answer
    return {**answer, "idTokenInfo": {**info, "personalMessage": _message(price_text(tariff))}}


@hookimpl(specname="chargeledger_answer_call", tryfirst=True)
@answers("Authorize")
def answer_authorize(call: InboundCall, views: Views, settings: Settings) -> list[Command] | None:
    """2.0.1: the authorization block's answer, with the tariff's price text."""
    if call.protocol == OCPP16 or views.tariffs.position == 0:
        return None
    commands = authorization.chargeledger_answer_call(call, views, settings)
    return _completed(commands, lambda answer: _personal(call, views, answer))


def _personal(call: InboundCall, views: Views, answer: dict[str, Any]) -> dict[str, Any]:
    return _with_personal_message(answer, call.station, call.payload.id_token, call.at, views)


@hookimpl(specname="chargeledger_answer_call", tryfirst=True)
@answers("TransactionEvent")
def answer_transaction_event(
    call: InboundCall, views: Views, settings: Settings
) -> list[Command] | None:
    """The transactions block's answer, with ``totalCost`` and the price text."""
    commands = transactions.answer_with_token(call, views, settings)
    if views.tariffs.position == 0:
        return commands  # no tariff was ever defined: nothing to price

    def complete(answer: dict[str, Any]) -> dict[str, Any]:
        answer = _personal(call, views, answer)
        request = msgspec.to_builtins(call.payload)
        found = preview_201(
            call.station,
            request,
            call.at,
            views.transactions,
            views.metering,
            views.tokens,
            views.tariffs,
        )
        return answer if found is None else {**answer, "totalCost": float(found.total)}

    return _completed(commands, complete)


def _completed(commands: list[Command], complete: Any) -> list[Command]:
    return [
        Reply(complete(command.payload))
        if isinstance(command, Reply) and type(command.payload) is dict
        else command
        for command in commands
    ]


def _connected_here(views: Views, station: str, settings: Settings) -> bool:
    state = views.stations.get(station)
    return state is not None and state.connected and state.node == settings.node


def _priced(views: Views, transaction: TransactionState | None) -> bool:
    if transaction is None:
        return False
    entry = views.metering.get(transaction)
    return entry is not None and entry.tariff is not None


def _transaction(exchange: Exchange, views: Views) -> TransactionState | None:
    if exchange.action == "TransactionEvent":
        info = exchange.request.get("transactionInfo")
        transaction_id = info.get("transactionId") if type(info) is dict else None
    else:
        source = exchange.response if exchange.action == "StartTransaction" else exchange.request
        transaction_id = source.get("transactionId")
    if not isinstance(transaction_id, int | str):
        return None
    return views.transactions.get(transaction_id, exchange.station)


def _running_cost(
    views: Views, transaction: TransactionState, cost: Cost, due: float
) -> CostUpdatedArgs:
    entry = views.metering.get(transaction)
    assert entry is not None and entry.tariff is not None
    moment = datetime.fromtimestamp(due, UTC)
    energy, time, parking = prices_at(entry.tariff, moment)
    states = sorted(entry.states, key=lambda change: change.at)
    charging = next((s.charging for s in reversed(states) if s.at <= moment), True)
    readings = sorted(entry.readings, key=lambda reading: reading.at)
    return CostUpdatedArgs(
        transaction_id=transaction.transaction_id,
        total_cost=cost.total,
        timestamp=rfc3339(due),
        meter_wh=int(readings[-1].wh) if readings else 0,
        state="Charging" if charging else "Idle",
        kwh_price=energy,
        hour_price=time,
        flat_fee=entry.tariff.session_fee,
        idle_hour_price=parking,
    )


def _send_running_cost(views: Views, settings: Settings, name: str, due: float) -> list[Command]:
    every = views.transactions.all()
    found = [t for t in every if t.status == "active" and cost_timer(t) == name]
    if not found or not _priced(views, found[0]) or _overtaken(found[0], every):
        return []
    transaction = found[0]
    if not _connected_here(views, transaction.station, settings):
        return []
    if is_v16(transaction.protocol) and not _costmsg(settings, transaction.station):
        return []
    cost = views.metering.cost(transaction, until=datetime.fromtimestamp(due, UTC))
    assert cost is not None
    request = cost_updated(transaction.protocol, _running_cost(views, transaction, cost, due))
    commands: list[Command] = [SendCall(transaction.station, request.action, request.payload)]
    interval = _interval(settings)
    return [*commands, StartTimer(name, due + interval)]


def _overtaken(transaction: TransactionState, every: list[TransactionState]) -> bool:
    """Whether a later transaction started on the same EVSE and connector (the station lost
    this one without ending it: no more running cost for it)."""
    place = (transaction.station, transaction.evse_id, transaction.connector_id)
    return any(
        (other.station, other.evse_id, other.connector_id) == place
        and other.started_position > transaction.started_position
        for other in every
    )


def _final_cost(views: Views, transaction: TransactionState) -> list[Command]:
    cost = views.metering.cost(transaction)
    entry = views.metering.get(transaction)
    if cost is None or entry is None or entry.tariff is None:
        return []
    assert type(transaction.transaction_id) is int
    text = f"{cost.total} {cost.currency} ({cost.energy_wh / 1000} kWh); {price_text(entry.tariff)}"
    request = final_cost(transaction.transaction_id, cost.total, text)
    return [SendCall(transaction.station, request.action, request.payload)]


@hookimpl
@reacts_to(
    TariffDefined,
    TariffRemoved,
    TariffAssigned,
    TariffUnassigned,
    TimerFired,
    "BootNotification",
    "TransactionEvent",
    "StartTransaction",
    "MeterValues",
    "StopTransaction",
)
def chargeledger_react(
    recorded: Recorded, exchange: Exchange | None, views: Views, settings: Settings
) -> list[Command]:
    """Arm the running-cost timer of a priced transaction, send the running cost when it
    fires, and the 1.6 final cost when a costmsg station's transaction ends; show the tariff
    on 2.0.1 displays (``display_message_id``) after a boot or a tariff change."""
    event = recorded.event
    interval = _interval(settings)
    display = _display_id(settings)
    if display is not None and isinstance(
        event, TariffDefined | TariffRemoved | TariffAssigned | TariffUnassigned
    ):
        return [
            command
            for state in views.stations.all()
            if state.protocol == OCPP201 and _connected_here(views, state.station, settings)
            for command in _show_tariff(views, state.station, event.at, display, clear=True)
        ]
    if (
        display is not None
        and exchange is not None
        and exchange.action == "BootNotification"
        and exchange.origin == "in"
        and exchange.protocol == OCPP201
        and type(exchange.response) is dict
        and exchange.response.get("status") == "Accepted"
    ):
        return _show_tariff(views, exchange.station, exchange.at, display, clear=False)
    if isinstance(event, TimerFired):
        if not event.name.startswith(_TIMER) or interval <= 0:
            return []
        return _send_running_cost(views, settings, event.name, event.due)
    if (
        exchange is None
        or exchange.origin != "in"
        or exchange.response is None
        or exchange.action
        not in ("TransactionEvent", "StartTransaction", "MeterValues", "StopTransaction")
    ):
        return []
    transaction = _transaction(exchange, views)
    if transaction is None or not _priced(views, transaction):
        return []
    v16 = is_v16(transaction.protocol)
    if v16 and not _costmsg(settings, transaction.station):
        return []
    if transaction.status == "ended":
        ended_now = transaction.positions[-1] == exchange.result_position
        if v16 and ended_now and _connected_here(views, transaction.station, settings):
            return _final_cost(views, transaction)
        return []
    name = cost_timer(transaction)
    if interval <= 0 or name in views.timers.pending():
        return []
    return [StartTimer(name, exchange.at + interval)]
