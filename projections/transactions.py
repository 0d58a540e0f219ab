"""The transactions projection: charging transactions and every anomaly seen around them."""

from __future__ import annotations

import contextlib
import math
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, get_args

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.projections._frames import Correlator, Exchange, as_int, as_str, is_v16

__all__ = [
    "ANOMALY_KINDS",
    "Anomaly",
    "AnomalyKind",
    "TransactionState",
    "TransactionsProjection",
    "energy_register_wh",
    "is_sentinel_id",
]

AnomalyKind = Literal[
    "start_retransmitted",
    "transaction_id_reused",
    "duplicate_start",
    "meter_stop_below_start",
    "duplicate_stop",
    "meter_values_after_stop",
    "stop_from_other_station",
    "sentinel_transaction_id",
    "stop_for_unknown_transaction",
    "meter_values_for_unknown_transaction",
]
ANOMALY_KINDS: tuple[str, ...] = get_args(AnomalyKind)
"""Every anomaly kind, in the order ``docs/projections.md`` describes them."""

_REGISTER = "Energy.Active.Import.Register"
_WH_PER_UNIT = {"Wh": 1.0, "kWh": 1000.0}
_MAX_INT32 = 2**31 - 1


class Anomaly(msgspec.Struct, frozen=True, kw_only=True):
    """Something in the log that a correct station and CSMS would not produce."""

    kind: AnomalyKind
    position: int
    """Log position of the CALLRESULT that completed the offending exchange (its CALL is in
    the same session, with the same message id)."""
    detail: str
    station: str
    """The station that sent the offending CALL."""
    transaction_id: int | str | None
    """The transaction id the offending CALL or our answer named."""


class TransactionState(msgspec.Struct, kw_only=True):
    """One transaction. Read-only for everyone but the projection."""

    transaction_id: int | str
    """1.6: the integer we issued; 2.0.1 (later): the station's string."""
    station: str
    protocol: str
    connector_id: int | None
    evse_id: int | None = None
    """2.0.1 only."""
    id_tag: str | None
    id_tag_status: str | None
    """The ``idTagInfo.status`` we answered the start with (``Accepted``, ``Invalid``, ...)."""
    start_timestamp: str | None
    """The station's time of the start, as sent."""
    stop_timestamp: str | None = None
    meter_start: int | None
    """Wh, as sent."""
    meter_stop: int | None = None
    meter_last_wh: float | None = None
    """Latest energy register reading of MeterValues for this transaction (see
    :func:`energy_register_wh`)."""
    energy_wh: float | None = None
    """``meter_stop - meter_start`` once ended, else ``meter_last_wh - meter_start``; ``None``
    when unknown or negative."""
    stop_reason: str | None = None
    """As sent; 1.6 means ``Local`` when the station sent none."""
    status: Literal["active", "ended"] = "active"
    started_at: float
    """When we answered the start."""
    ended_at: float | None = None
    """When we answered the stop."""
    started_position: int
    """Log position of the CALLRESULT that issued the id."""
    positions: list[int] = []
    """Log positions of the evidence, ascending: the CALL and CALLRESULT of the start, the
    stop and each MeterValues applied."""
    anomalies: list[Anomaly] = []


_StartKey = tuple[str, int | None, str | None, datetime | str | None, int | None]


def _start_key(
    station: str,
    connector_id: int | None,
    id_tag: str | None,
    timestamp: datetime | str | None,
    meter_start: int | None,
) -> _StartKey:
    # The timestamp is compared as an instant: the transactions plugin passes it re-encoded
    # from the typed payload, which need not be the text the station sent.
    if type(timestamp) is str:
        with contextlib.suppress(ValueError):
            timestamp = datetime.fromisoformat(timestamp)
    return station, connector_id, id_tag, timestamp, meter_start


def _key_of(transaction: TransactionState) -> _StartKey:
    return _start_key(
        transaction.station,
        transaction.connector_id,
        transaction.id_tag,
        transaction.start_timestamp,
        transaction.meter_start,
    )


def is_sentinel_id(transaction_id: int) -> bool:
    """Whether a 1.6 id can only be a station's placeholder: we never issue ids outside
    1..2**31-1, and stations in the field send -1, 0 and 2**63-1."""
    return transaction_id <= 0 or transaction_id > _MAX_INT32


def energy_register_wh(meter_values: Any) -> float | None:
    """The energy register reading (Wh) of a MeterValues ``meterValue`` list, ``None`` when it
    holds none.

    The last ``meterValue`` with a reading wins. Within one, only raw
    ``Energy.Active.Import.Register`` samples (the 1.6 default measurand) at the outlet (the
    default location) with unit Wh or kWh count; the reading without ``phase`` is used, or the
    sum of the per-phase readings (neutral excluded) when there is none. Unparsable values,
    signed data and other units are skipped.
    """
    reading = None
    for meter_value in meter_values if type(meter_values) is list else ():
        samples = meter_value.get("sampledValue") if type(meter_value) is dict else None
        total = None
        phases: dict[str, float] = {}
        for sample in samples if type(samples) is list else ():
            if (
                type(sample) is not dict
                or sample.get("measurand", _REGISTER) != _REGISTER
                or sample.get("format", "Raw") != "Raw"
                or sample.get("location", "Outlet") != "Outlet"
            ):
                continue
            wh = _wh(sample.get("value"), sample.get("unit", "Wh"))
            phase = sample.get("phase")
            if wh is None:
                continue
            if phase is None:
                total = wh
            elif type(phase) is str and phase != "N":
                phases[phase] = wh
        if total is None and phases:
            total = sum(phases.values())
        if total is not None:
            reading = total
    return reading


def _wh(value: Any, unit: Any) -> float | None:
    factor = _WH_PER_UNIT.get(unit) if type(unit) is str else None
    if factor is None or type(value) not in (str, int, float):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # JSON integers have no size limit
        return None
    return number * factor if math.isfinite(number) else None


def _energy(start: int | None, end: float | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    try:
        return float(end - start)
    except OverflowError:  # JSON integers have no size limit
        return None


class TransactionsProjection:
    """Transactions folded from the log (see ``docs/projections.md``).

    ``anomalies`` holds the anomalies that belong to no known transaction of the station that
    caused them; the others are on their transaction.
    """

    def __init__(self) -> None:
        self.anomalies: list[Anomaly] = []
        self._by_id: dict[int | str, TransactionState] = {}
        self._by_start: dict[_StartKey, TransactionState] = {}
        """The first transaction issued for each start, for retransmissions."""
        self._active: dict[tuple[str, int | None], TransactionState] = {}
        """The latest transaction started on each (station, connector), while active."""
        self._flagged: set[tuple[str, str, int | str]] = set()
        """(kind, station, id) of the meter-values anomalies already recorded."""
        self._correlator = Correlator()

    def apply(self, recorded: Recorded) -> None:
        """Fold the next event of the log."""
        self.fold(recorded, self._correlator.feed(recorded))

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes (what ``Views`` calls so that
        a frame is decoded once for every projection)."""
        if (
            exchange is None
            or exchange.origin != "in"
            or not is_v16(exchange.protocol)
            or type(exchange.request) is not dict
            or type(exchange.response) is not dict
        ):
            return
        if exchange.action == "StartTransaction":
            self._start(exchange)
        elif exchange.action == "StopTransaction":
            self._stop(exchange)
        elif exchange.action == "MeterValues":
            self._meter_values(exchange)

    def get(self, transaction_id: int | str) -> TransactionState | None:
        """The transaction with that id, ``None`` when none was issued."""
        return self._by_id.get(transaction_id)

    def all(self) -> list[TransactionState]:
        """Every transaction, by start position."""
        return sorted(self._by_id.values(), key=attrgetter("started_position"))

    def find_start(
        self,
        station: str,
        connector_id: int | None,
        id_tag: str | None,
        timestamp: datetime | str | None,
        meter_start: int | None,
    ) -> TransactionState | None:
        """The first transaction (active or ended) started with exactly these values, so a
        retransmitted StartTransaction can be answered with its id. ``timestamp`` may be the
        text or a ``datetime``; it is compared as an instant."""
        return self._by_start.get(_start_key(station, connector_id, id_tag, timestamp, meter_start))

    def active_on(self, station: str, connector_id: int | None) -> TransactionState | None:
        """The latest transaction started on the connector, while it is active."""
        return self._active.get((station, connector_id))

    def _start(self, exchange: Exchange) -> None:
        transaction_id = as_int(exchange.response.get("transactionId"))
        if transaction_id is None:
            return
        request = exchange.request
        transaction = TransactionState(
            transaction_id=transaction_id,
            station=exchange.station,
            protocol=exchange.protocol,
            connector_id=as_int(request.get("connectorId")),
            id_tag=as_str(request.get("idTag")),
            id_tag_status=_id_tag_status(exchange.response),
            start_timestamp=as_str(request.get("timestamp")),
            meter_start=as_int(request.get("meterStart")),
            started_at=exchange.at,
            started_position=exchange.result_position,
            positions=[exchange.call_position, exchange.result_position],
        )
        key = _key_of(transaction)
        issued = self._by_id.get(transaction_id)
        if issued is not None:
            if _key_of(issued) == key:
                self._flag(issued, "start_retransmitted", exchange, "answered again with its id")
            else:
                self._flag(
                    issued,
                    "transaction_id_reused",
                    exchange,
                    f"id issued again to {exchange.station} connector {transaction.connector_id}"
                    f" idTag {transaction.id_tag!r}; that start is not recorded",
                )
            return
        self._by_id[transaction_id] = transaction
        self._active[(transaction.station, transaction.connector_id)] = transaction
        first = self._by_start.setdefault(key, transaction)
        if first is not transaction:
            self._flag(
                transaction,
                "duplicate_start",
                exchange,
                f"same start as transaction {first.transaction_id}"
                f" (position {first.started_position})",
            )

    def _stop(self, exchange: Exchange) -> None:
        request = exchange.request
        transaction_id = as_int(request.get("transactionId"))
        if transaction_id is None:
            return
        meter_stop = as_int(request.get("meterStop"))
        transaction = self._by_id.get(transaction_id)
        if transaction is None:
            kind: AnomalyKind = (
                "sentinel_transaction_id"
                if is_sentinel_id(transaction_id)
                else "stop_for_unknown_transaction"
            )
            self._flag(None, kind, exchange, f"StopTransaction meterStop {meter_stop}")
        elif transaction.station != exchange.station:
            self._flag(
                None,
                "stop_from_other_station",
                exchange,
                f"transaction belongs to {transaction.station}; meterStop {meter_stop}",
            )
        elif transaction.status == "ended":
            self._flag(
                transaction,
                "duplicate_stop",
                exchange,
                f"already ended; this stop's meterStop {meter_stop} is not applied",
            )
        else:
            transaction.status = "ended"
            transaction.meter_stop = meter_stop
            transaction.stop_timestamp = as_str(request.get("timestamp"))
            transaction.stop_reason = as_str(request.get("reason"))
            transaction.ended_at = exchange.at
            transaction.energy_wh = _energy(transaction.meter_start, meter_stop)
            transaction.positions += (exchange.call_position, exchange.result_position)
            key = (transaction.station, transaction.connector_id)
            if self._active.get(key) is transaction:
                del self._active[key]
            if (
                meter_stop is not None
                and transaction.meter_start is not None
                and meter_stop < transaction.meter_start
            ):
                self._flag(
                    transaction,
                    "meter_stop_below_start",
                    exchange,
                    f"meterStop {meter_stop} < meterStart {transaction.meter_start}",
                )

    def _meter_values(self, exchange: Exchange) -> None:
        transaction_id = as_int(exchange.request.get("transactionId"))
        if transaction_id is None:
            return
        transaction = self._by_id.get(transaction_id)
        if transaction is None or transaction.station != exchange.station:
            self._flag_once(None, "meter_values_for_unknown_transaction", exchange, transaction_id)
        elif transaction.status == "ended":
            self._flag_once(transaction, "meter_values_after_stop", exchange, transaction_id)
        else:
            reading = energy_register_wh(exchange.request.get("meterValue"))
            if reading is not None:
                transaction.meter_last_wh = reading
                transaction.energy_wh = _energy(transaction.meter_start, reading)
            transaction.positions += (exchange.call_position, exchange.result_position)

    def _flag_once(
        self,
        transaction: TransactionState | None,
        kind: AnomalyKind,
        exchange: Exchange,
        transaction_id: int,
    ) -> None:
        # A chatty station repeats these every few seconds; the first one tells the story.
        flag = (kind, exchange.station, transaction_id)
        if flag not in self._flagged:
            self._flagged.add(flag)
            self._flag(transaction, kind, exchange, "MeterValues not applied (reported once)")

    def _flag(
        self,
        transaction: TransactionState | None,
        kind: AnomalyKind,
        exchange: Exchange,
        detail: str,
    ) -> None:
        anomaly = Anomaly(
            kind=kind,
            position=exchange.result_position,
            detail=detail,
            station=exchange.station,
            transaction_id=_named_id(exchange),
        )
        (self.anomalies if transaction is None else transaction.anomalies).append(anomaly)


def _named_id(exchange: Exchange) -> int | None:
    source = exchange.response if exchange.action == "StartTransaction" else exchange.request
    return as_int(source.get("transactionId"))


def _id_tag_status(response: dict[str, Any]) -> str | None:
    info = response.get("idTagInfo")
    return as_str(info.get("status")) if type(info) is dict else None
