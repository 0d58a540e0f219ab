"""What each transaction used, for its cost (docs/tariffs.md): every energy register reading
with its own timestamp (the transactions projection keeps only the first and the last),
when the EV was charging or not, and the tariff the transaction got when it started.

Folded after the transactions projection, from the same exchanges, and only from those
that projection applied to a transaction (a retransmitted start, a stop of an unknown
transaction, meter values after the stop add nothing here either).

* Readings: 1.6 ``meterStart`` (at the start's ``timestamp``), each ``meterValue`` of
  MeterValues and of StopTransaction's ``transactionData``, ``meterStop``; 2.0.1 each
  ``meterValue`` of the transaction's events. Each reading is read like
  :func:`~chargeledger.projections.transactions.energy_register_wh` reads one, at its own
  ``timestamp``, to the milliwatt-hour.
* Charging or not: 2.0.1 ``chargingState`` (``Charging``; the others are not charging) at
  the event's ``timestamp``; 1.6 the StatusNotification of the transaction's connector while
  it runs (``Charging``; ``SuspendedEV``, ``SuspendedEVSE``, ``Finishing`` are not).
* The tariff: :meth:`TariffsProjection.resolve` for the station, the token's group in the
  registry and the transaction's start, as the log stands when the transaction is first
  folded (again when its token first shows, for a 2.0.1 transaction started without one);
  kept thereafter, so a tariff redefined later does not change what a transaction costs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from chargeledger.core.tariff import Tariff, parse_instant
from chargeledger.projections.cost import Cost, Reading, StateChange, Usage, cost
from chargeledger.projections.exchanges import (
    Exchange,
    Kind,
    as_dict,
    as_int,
    as_str,
    is_v16,
)
from chargeledger.projections.meters import read_meter_values
from chargeledger.projections.tariffs import TariffsProjection
from chargeledger.projections.tokens import Tokens
from chargeledger.projections.transactions import (
    TransactionsProjection,
    TransactionState,
    register_wh,
)

__all__ = [
    "Metered",
    "MeteringProjection",
    "instant",
    "preview_201",
    "readings_of",
    "tariff_for",
]

_CHARGING_16 = {"Charging": True, "SuspendedEV": False, "SuspendedEVSE": False, "Finishing": False}
_MILLI = Decimal("0.001")

_Key = int | tuple[str, str]


class Metered(msgspec.Struct, kw_only=True):
    """One transaction's readings, charging-state changes and tariff."""

    readings: list[Reading] = []
    states: list[StateChange] = []
    tariff: Tariff | None = None
    with_token: bool = False
    """Whether the tariff was resolved knowing the transaction's token."""


def instant(text: Any, fallback: float) -> datetime:
    """A station's RFC 3339 timestamp, or ``fallback`` (UNIX seconds, our clock) when it is
    missing or unreadable."""
    if type(text) is str:
        try:
            return parse_instant(text)
        except ValueError:
            pass
    return datetime.fromtimestamp(fallback, UTC)


def readings_of(meter_values: Any, fallback: datetime) -> list[Reading]:
    """The energy register readings of a ``meterValue`` list, each at its ``timestamp``."""
    found = []
    for meter_value, samples in read_meter_values(meter_values):
        wh = register_wh(samples)
        if wh is not None:
            at = as_dict(meter_value).get("timestamp")
            moment = fallback if type(at) is not str else instant(at, fallback.timestamp())
            found.append(Reading(moment, Decimal(repr(wh)).quantize(_MILLI)))
    return found


def _state_201(request: dict[str, Any], moment: datetime) -> list[StateChange]:
    state = as_str(as_dict(request.get("transactionInfo")).get("chargingState"))
    return [] if state is None else [StateChange(moment, state == "Charging")]


def _transaction_of(
    exchange: Exchange, transactions: TransactionsProjection
) -> TransactionState | None:
    """The transaction the exchange was applied to, ``None`` when it was not applied."""
    if exchange.action == "TransactionEvent":
        info = as_dict(exchange.request.get("transactionInfo"))
        transaction_id: int | str | None = as_str(info.get("transactionId"))
    else:
        source = exchange.response if exchange.action == "StartTransaction" else exchange.request
        transaction_id = as_int(source.get("transactionId"))
    if transaction_id is None:
        return None
    found = transactions.get(transaction_id, exchange.station)
    if found is None or not found.positions or found.positions[-1] != exchange.result_position:
        return None
    return found


def _key(transaction: TransactionState) -> _Key:
    if type(transaction.transaction_id) is int:
        return transaction.transaction_id
    return transaction.station, str(transaction.transaction_id)


class MeteringProjection:
    """Per transaction, its :class:`Metered`; :meth:`usage` and :meth:`cost` read them."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            "StatusNotification",
            "StartTransaction",
            "MeterValues",
            "StopTransaction",
            "TransactionEvent",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._metered: dict[_Key, Metered] = {}

    def get(self, transaction: TransactionState) -> Metered | None:
        return self._metered.get(_key(transaction))

    def fold(
        self,
        exchange: Exchange | None,
        transactions: TransactionsProjection,
        tokens: Tokens,
        tariffs: TariffsProjection,
    ) -> None:
        """Fold the exchange the next event completed (``None``: it completed none), after
        ``transactions`` folded it."""
        if (
            exchange is None
            or exchange.origin != "in"
            or type(exchange.request) is not dict
            or type(exchange.response) is not dict
        ):
            return
        request = exchange.request
        if exchange.action == "StatusNotification" and is_v16(exchange.protocol):
            charging = _CHARGING_16.get(as_str(request.get("status")) or "")
            running = transactions.active_on(exchange.station, as_int(request.get("connectorId")))
            if charging is not None and running is not None:
                moment = instant(request.get("timestamp"), exchange.at)
                self._entry(running).states.append(StateChange(moment, charging))
            return
        if exchange.action not in ("StartTransaction", "MeterValues", "StopTransaction") and (
            exchange.action != "TransactionEvent"
        ):
            return
        transaction = _transaction_of(exchange, transactions)
        if transaction is None:
            return
        entry = self._entry(transaction)
        moment = instant(request.get("timestamp"), exchange.at)
        if exchange.action == "TransactionEvent":
            entry.readings += readings_of(request.get("meterValue"), moment)
            entry.states += _state_201(request, moment)
        elif exchange.action == "MeterValues":
            entry.readings += readings_of(request.get("meterValue"), moment)
        else:
            entry.readings += readings_of(request.get("transactionData"), moment)
            field = "meterStart" if exchange.action == "StartTransaction" else "meterStop"
            wh = as_int(request.get(field))
            if wh is not None:
                entry.readings.append(Reading(moment, Decimal(wh)))
        if entry.tariff is None or not entry.with_token:
            entry.tariff = tariff_for(transaction, tokens, tariffs) or entry.tariff
            entry.with_token = transaction.id_tag is not None

    def _entry(self, transaction: TransactionState) -> Metered:
        return self._metered.setdefault(_key(transaction), Metered())

    def usage(self, transaction: TransactionState, until: datetime | None = None) -> Usage:
        """What ``transaction`` used: to its stop once ended, else to ``until`` (default:
        its newest reading or charging-state change, or its start)."""
        entry = self._metered.get(_key(transaction)) or Metered()
        start = instant(transaction.start_timestamp, transaction.started_at)
        if transaction.status == "ended":
            end = instant(transaction.stop_timestamp, transaction.ended_at or 0.0)
        elif until is not None:
            end = until
        else:
            moments = [r.at for r in entry.readings] + [s.at for s in entry.states]
            end = max([start, *moments])
        return Usage(
            start=start, end=end, readings=tuple(entry.readings), states=tuple(entry.states)
        )

    def cost(
        self,
        transaction: TransactionState,
        tariff: Tariff | None = None,
        until: datetime | None = None,
    ) -> Cost | None:
        """What ``transaction`` costs under ``tariff`` (default: the one it got; ``None``
        when it got none) up to :meth:`usage`'s end."""
        if tariff is None:
            entry = self._metered.get(_key(transaction))
            tariff = None if entry is None else entry.tariff
        if tariff is None:
            return None
        return cost(tariff, self.usage(transaction, until))


def tariff_for(
    transaction: TransactionState, tokens: Tokens, tariffs: TariffsProjection
) -> Tariff | None:
    """The tariff ``transaction`` gets as the registries stand (see the module docstring)."""
    start = instant(transaction.start_timestamp, transaction.started_at)
    return _resolve(
        transaction.station, transaction.id_tag, transaction.id_token_type, start, tokens, tariffs
    )


def _resolve(
    station: str,
    id_tag: str | None,
    token_type: str | None,
    start: datetime,
    tokens: Tokens,
    tariffs: TariffsProjection,
) -> Tariff | None:
    token = None if id_tag is None else tokens.get(id_tag, token_type)
    return tariffs.resolve(station, None if token is None else token.group, start)


def preview_201(
    station: str,
    request: dict[str, Any],
    at: float,
    transactions: TransactionsProjection,
    metering: MeteringProjection,
    tokens: Tokens,
    tariffs: TariffsProjection,
) -> Cost | None:
    """What the transaction of a 2.0.1 TransactionEvent ``request`` (wire field names) that
    arrived at ``at`` costs once that event is applied, to the event's ``timestamp``: the
    answer's ``totalCost``, decided before the event is folded, from the same rules the fold
    then applies. ``None`` when no tariff applies or the transaction has ended."""
    info = as_dict(request.get("transactionInfo"))
    transaction_id = as_str(info.get("transactionId"))
    if transaction_id is None:
        return None
    transaction = transactions.get(transaction_id, station)
    if transaction is not None and transaction.status == "ended":
        return None
    moment = instant(request.get("timestamp"), at)
    started = request.get("eventType") == "Started"
    if transaction is not None and not (started and transaction.start_timestamp is None):
        start = instant(transaction.start_timestamp, transaction.started_at)
    else:
        start = moment if started else datetime.fromtimestamp(at, UTC)
    entry = metering.get(transaction) if transaction is not None else None
    entry = entry or Metered()
    tariff = entry.tariff if entry.with_token else None
    if tariff is None:
        token = as_dict(request.get("idToken"))
        id_tag = transaction.id_tag if transaction is not None else None
        token_type = transaction.id_token_type if transaction is not None else None
        if id_tag is None:
            id_tag, token_type = as_str(token.get("idToken")), as_str(token.get("type"))
        tariff = _resolve(station, id_tag, token_type, start, tokens, tariffs) or entry.tariff
    if tariff is None:
        return None
    usage = Usage(
        start=start,
        end=moment,
        readings=(*entry.readings, *readings_of(request.get("meterValue"), moment)),
        states=(*entry.states, *_state_201(request, moment)),
    )
    return cost(tariff, usage)
