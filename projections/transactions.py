"""The transactions projection: charging transactions and every anomaly seen around them."""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime
from operator import attrgetter
from typing import Any, ClassVar, Literal, get_args

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.projections.billing import is_billable
from chargeledger.projections.exchanges import (
    Exchange,
    ExchangeFold,
    Kind,
    as_bool,
    as_dict,
    as_int,
    as_str,
    is_v16,
)
from chargeledger.projections.meters import (
    DEFAULT_LOCATION,
    DEFAULT_MEASURAND,
    SampledValue,
    read_meter_values,
)

__all__ = [
    "ANOMALY_KINDS",
    "Anomaly",
    "AnomalyKind",
    "Completeness",
    "TransactionState",
    "TransactionsProjection",
    "energy_register_wh",
    "is_sentinel_id",
    "register_wh",
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
    "seq_no_duplicate",
    "seq_no_gap",
    "seq_no_out_of_order",
    "event_after_ended",
]
ANOMALY_KINDS: tuple[str, ...] = get_args(AnomalyKind)
"""Every anomaly kind, in the order ``docs/projections.md`` describes them."""

Completeness = Literal["complete", "incomplete"]

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
    """One transaction of either protocol version. Read-only for everyone but the projection."""

    transaction_id: int | str
    """1.6: the integer we issued (unique in the store); 2.0.1: the station's string (unique
    for that station only)."""
    station: str
    protocol: str
    connector_id: int | None
    """1.6 ``connectorId``; 2.0.1 ``evse.connectorId``."""
    evse_id: int | None = None
    """2.0.1 ``evse.id`` (``None`` for 1.6, whose connector N is EVSE N's connector 1)."""
    id_tag: str | None
    """1.6 ``idTag``; 2.0.1 ``idToken.idToken`` of the first event that carried one."""
    id_token_type: str | None = None
    """2.0.1 ``idToken.type`` of that token."""
    id_tag_status: str | None
    """The ``idTagInfo.status`` / ``idTokenInfo.status`` we answered that token with."""
    start_timestamp: str | None
    """The station's time of the start (2.0.1: of the Started event), as sent."""
    stop_timestamp: str | None = None
    meter_start: int | float | None
    """Wh: 1.6 ``meterStart``; 2.0.1 the energy register reading of the event with the lowest
    ``seqNo`` that carries one (normally the Started event)."""
    meter_stop: int | float | None = None
    """Wh: 1.6 ``meterStop``; 2.0.1 the reading of the Ended event."""
    meter_last_wh: float | None = None
    """Latest energy register reading for this transaction (see :func:`energy_register_wh`):
    1.6 in log order, 2.0.1 of the event with the highest ``seqNo`` that carries one."""
    energy_wh: float | None = None
    """1.6: ``meter_stop - meter_start`` once ended, else ``meter_last_wh - meter_start``;
    2.0.1: ``meter_last_wh - meter_start``. ``None`` when unknown or negative."""
    stop_reason: str | None = None
    """1.6 ``reason``, 2.0.1 ``stoppedReason``, as sent (none means ``Local``)."""
    status: Literal["active", "ended"] = "active"
    started_at: float
    """When we answered the start (2.0.1: the first event of the transaction we answered)."""
    ended_at: float | None = None
    """When we answered the stop (2.0.1: the Ended event)."""
    started_position: int
    """Log position of the CALLRESULT that issued the id (2.0.1: that answered the first event)."""
    positions: list[int] = []
    """Log positions of the evidence, ascending: the CALL and CALLRESULT of the start, the
    stop and each MeterValues applied (2.0.1: of each TransactionEvent applied)."""
    anomalies: list[Anomaly] = []
    remote_start_id: int | None = None
    """2.0.1 ``remoteStartId``: the RequestStartTransaction that started it."""
    charging_state: str | None = None
    """2.0.1 ``chargingState`` of the latest event (by ``seqNo``) that carried one."""
    trigger_reasons: list[str] = []
    """2.0.1 ``triggerReason`` of each event applied, in log order."""
    offline: bool = False
    """2.0.1: an event applied was flagged ``offline`` (sent from the station's queue)."""
    seq_nos: list[int] = []
    """2.0.1 ``seqNo`` of each event applied, ascending, each once."""
    started_seq_no: int | None = None
    """2.0.1 ``seqNo`` of the Started event; ``None`` until it arrives."""
    seq_no_gaps: list[tuple[int, int]] = []
    """2.0.1 ``seqNo`` still missing, as inclusive ranges: from ``started_seq_no`` (0 until the
    Started event arrives) to the highest ``seqNo`` applied."""
    messages_in_queue: bool | None = None
    """2.0.1 ``messagesInQueue`` of the station's latest answer to GetTransactionStatus for it."""

    @property
    def completeness(self) -> Completeness:
        """``complete`` when the transaction can be billed as it stands, else ``incomplete``:
        the one billing rule, :func:`chargeledger.projections.billing.billing_doubts`."""
        return "complete" if is_billable(self) else "incomplete"


_StartKey = tuple[str, int | None, str | None, datetime | str | None, int | float | None]


def _start_key(
    station: str,
    connector_id: int | None,
    id_tag: str | None,
    timestamp: datetime | str | None,
    meter_start: int | float | None,
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
    """The energy register reading (Wh) of a ``meterValue`` list (1.6 MeterValues, 2.0.1
    TransactionEvent or MeterValues), ``None`` when it holds none.

    The last ``meterValue`` with a reading wins. Within one, only raw
    ``Energy.Active.Import.Register`` samples (the default measurand) at the outlet (the
    default location) with unit Wh or kWh count; the reading without ``phase`` is used, or the
    sum of the per-phase readings (neutral excluded) when there is none. The samples are read
    by :func:`~chargeledger.projections.meters.read_meter_values` (the unit is 1.6 ``unit`` or
    2.0.1 ``unitOfMeasure.unit`` times ``10 ** unitOfMeasure.multiplier``). Unparsable
    values, 1.6 signed data (its value is an opaque blob; a 2.0.1 value is always the
    reading, with the signature beside it) and other units are skipped.
    """
    reading = None
    for _, samples in read_meter_values(meter_values):
        total = register_wh(samples)
        if total is not None:
            reading = total
    return reading


def register_wh(samples: Iterable[SampledValue]) -> float | None:
    """The energy register reading (Wh) among the samples of one ``meterValue``, as
    :func:`energy_register_wh` reads it; ``None`` when they hold none."""
    total = None
    phases: dict[str, float] = {}
    for sample in samples:
        if (
            sample.measurand != DEFAULT_MEASURAND
            or sample.format != "Raw"
            or sample.location != DEFAULT_LOCATION
        ):
            continue
        wh = _wh(sample.value, sample.unit)
        if wh is None:
            continue
        if sample.phase is None:
            total = wh
        elif sample.phase != "N":
            phases[sample.phase] = wh
    if total is None and phases:
        total = sum(phases.values())
    return total


def _wh(value: float | None, unit: str | None) -> float | None:
    factor = None if unit is None else _WH_PER_UNIT.get(unit)
    if factor is None or value is None:
        return None
    number = value * factor
    return number if math.isfinite(number) else None


def _energy(start: int | float | None, end: float | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    try:
        return float(end - start)
    except OverflowError:  # JSON integers have no size limit
        return None


class TransactionsProjection(ExchangeFold):
    """Transactions of both protocol versions folded from the log (see
    ``docs/projections.md``).

    ``anomalies`` holds the anomalies that belong to no known transaction of the station that
    caused them; the others are on their transaction.
    """

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            "GetTransactionStatus",
            "TransactionEvent",
            "StartTransaction",
            "StopTransaction",
            "MeterValues",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self.anomalies: list[Anomaly] = []
        self._by_key: dict[int | tuple[str, str], TransactionState] = {}
        """1.6 transactions by id (unique in the store), 2.0.1 ones by (station, id)."""
        self._by_start: dict[_StartKey, TransactionState] = {}
        """The first transaction issued for each start, for retransmissions."""
        self._active: dict[tuple[str, int | None], TransactionState] = {}
        """The latest transaction started on each (station, connector), while active."""
        self._flagged: set[tuple[str, str, int | str]] = set()
        """(kind, station, id) of the meter-values anomalies already recorded."""
        self._reading_seq_nos: dict[tuple[str, str], tuple[int | None, int | None]] = {}
        """For each active 2.0.1 transaction, the ``seqNo`` of the events that gave its
        ``meter_start`` and its ``meter_last_wh``."""

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes (what ``Views`` calls so that
        a frame is decoded once for every projection)."""
        if (
            exchange is None
            or type(exchange.request) is not dict
            or type(exchange.response) is not dict
        ):
            return
        if exchange.origin == "out":
            if exchange.action == "GetTransactionStatus" and not is_v16(exchange.protocol):
                self._transaction_status(exchange)
        elif not is_v16(exchange.protocol):
            if exchange.action == "TransactionEvent":
                self._transaction_event(exchange)
        elif exchange.action == "StartTransaction":
            self._start(exchange)
        elif exchange.action == "StopTransaction":
            self._stop(exchange)
        elif exchange.action == "MeterValues":
            self._meter_values(exchange)

    def get(self, transaction_id: int | str, station: str | None = None) -> TransactionState | None:
        """The transaction with that id (of ``station``, when given), ``None`` when there is
        none. A 2.0.1 id (a string) is unique per station only, so it needs ``station``;
        without it ``ValueError`` is raised."""
        if type(transaction_id) is int:
            found = self._by_key.get(transaction_id)
        elif station is None:
            raise ValueError(f"2.0.1 transaction id {transaction_id!r}: name its station")
        else:
            found = self._by_key.get((station, str(transaction_id)))
        return found if station is None or (found and found.station == station) else None

    def all(self) -> list[TransactionState]:
        """Every transaction of both versions, by start position."""
        return sorted(self._by_key.values(), key=attrgetter("started_position"))

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
            id_tag_status=_token_status(exchange.response),
            start_timestamp=as_str(request.get("timestamp")),
            meter_start=as_int(request.get("meterStart")),
            started_at=exchange.at,
            started_position=exchange.result_position,
            positions=[exchange.call_position, exchange.result_position],
        )
        key = _key_of(transaction)
        issued = self._by_key.get(transaction_id)
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
        self._by_key[transaction_id] = transaction
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
        transaction = self._by_key.get(transaction_id)
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
        transaction = self._by_key.get(transaction_id)
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

    def _transaction_event(self, exchange: Exchange) -> None:
        request = exchange.request
        info = as_dict(request.get("transactionInfo"))
        transaction_id, seq_no = as_str(info.get("transactionId")), as_int(request.get("seqNo"))
        if transaction_id is None or seq_no is None:
            return
        event_type = as_str(request.get("eventType"))
        key = (exchange.station, transaction_id)
        transaction = self._by_key.get(key)
        if transaction is None:
            # 2.0.1: the station names the transaction; whichever of its events we answer
            # first (normally Started, but events arrive lost, late and out of order) makes it.
            transaction = self._by_key[key] = TransactionState(
                transaction_id=transaction_id,
                station=exchange.station,
                protocol=exchange.protocol,
                connector_id=None,
                id_tag=None,
                id_tag_status=None,
                start_timestamp=None,
                meter_start=None,
                started_at=exchange.at,
                started_position=exchange.result_position,
            )
        seen = transaction.seq_nos
        index = bisect_left(seen, seq_no)
        if index < len(seen) and seen[index] == seq_no:
            self._flag(
                transaction,
                "seq_no_duplicate",
                exchange,
                f"{event_type} seqNo {seq_no} received again; not applied",
            )
            return
        if transaction.status == "ended":
            self._flag(
                transaction,
                "event_after_ended",
                exchange,
                f"{event_type} seqNo {seq_no} after the transaction ended; not applied",
            )
            return
        latest = not seen or seq_no > seen[-1]
        if not latest:
            self._flag(
                transaction,
                "seq_no_out_of_order",
                exchange,
                f"{event_type} seqNo {seq_no} after seqNo {seen[-1]}",
            )
        seen.insert(index, seq_no)
        self._track_seq_no(transaction, exchange, seq_no, event_type == "Started", latest)
        self._apply_event(transaction, exchange, seq_no, latest)

    def _apply_event(
        self, transaction: TransactionState, exchange: Exchange, seq_no: int, latest: bool
    ) -> None:
        """Apply what a TransactionEvent says (``latest``: no higher ``seqNo`` was applied)."""
        request = exchange.request
        info = as_dict(request.get("transactionInfo"))
        event_type = request.get("eventType")
        transaction.positions += (exchange.call_position, exchange.result_position)
        reason = as_str(request.get("triggerReason"))
        if reason is not None:
            transaction.trigger_reasons.append(reason)
        transaction.offline = transaction.offline or request.get("offline") is True
        # What names the transaction's place and token is taken from the first event that
        # carries it: a later token is the one that stopped it.
        evse = as_dict(request.get("evse"))
        if transaction.evse_id is None:
            transaction.evse_id = as_int(evse.get("id"))
            transaction.connector_id = as_int(evse.get("connectorId"))
        token = as_dict(request.get("idToken"))
        if transaction.id_tag is None and as_str(token.get("idToken")) is not None:
            transaction.id_tag = as_str(token.get("idToken"))
            transaction.id_token_type = as_str(token.get("type"))
            transaction.id_tag_status = _token_status(exchange.response, "idTokenInfo")
        if transaction.remote_start_id is None:
            transaction.remote_start_id = as_int(info.get("remoteStartId"))
        charging_state = as_str(info.get("chargingState"))
        if charging_state is not None and latest:
            transaction.charging_state = charging_state
        if event_type == "Started":
            transaction.start_timestamp = as_str(request.get("timestamp"))
        key = (transaction.station, str(transaction.transaction_id))
        reading = energy_register_wh(request.get("meterValue"))
        if reading is not None:
            first, last = self._reading_seq_nos.get(key, (None, None))
            if first is None or seq_no < first:
                transaction.meter_start, first = reading, seq_no
            if last is None or seq_no > last:
                transaction.meter_last_wh, last = reading, seq_no
            self._reading_seq_nos[key] = (first, last)
            transaction.energy_wh = _energy(transaction.meter_start, transaction.meter_last_wh)
        if event_type == "Ended":
            transaction.status = "ended"
            transaction.ended_at = exchange.at
            transaction.stop_timestamp = as_str(request.get("timestamp"))
            transaction.stop_reason = as_str(info.get("stoppedReason"))
            transaction.meter_stop = reading
            # Nothing is applied after Ended, so the readings' seqNo are no longer needed.
            self._reading_seq_nos.pop(key, None)

    def _track_seq_no(
        self,
        transaction: TransactionState,
        exchange: Exchange,
        seq_no: int,
        started: bool,
        latest: bool,
    ) -> None:
        """Update ``seq_no_gaps`` for ``seq_no`` (already in ``seq_nos``); flag a new gap."""
        if started and transaction.started_seq_no is None:
            # The run starts at the Started event's seqNo (0 until it arrives).
            transaction.started_seq_no = seq_no
            transaction.seq_no_gaps = _gaps(seq_no, transaction.seq_nos)
            return
        first = transaction.started_seq_no or 0
        if not latest:
            transaction.seq_no_gaps = _without(transaction.seq_no_gaps, seq_no)
            return
        seen = transaction.seq_nos
        missing_from = max(seen[-2] + 1 if len(seen) > 1 else first, first)
        if seq_no > missing_from:
            transaction.seq_no_gaps.append((missing_from, seq_no - 1))
            self._flag(
                transaction,
                "seq_no_gap",
                exchange,
                f"seqNo {seq_no} arrived before seqNo {missing_from}..{seq_no - 1}",
            )

    def _transaction_status(self, exchange: Exchange) -> None:
        transaction_id = as_str(exchange.request.get("transactionId"))
        if transaction_id is None:
            return  # about the station's queue as a whole
        transaction = self._by_key.get((exchange.station, transaction_id))
        if transaction is not None:
            transaction.messages_in_queue = as_bool(exchange.response.get("messagesInQueue"))

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


def _named_id(exchange: Exchange) -> int | str | None:
    if exchange.action == "TransactionEvent":
        return as_str(as_dict(exchange.request.get("transactionInfo")).get("transactionId"))
    source = exchange.response if exchange.action == "StartTransaction" else exchange.request
    return as_int(source.get("transactionId"))


def _token_status(response: dict[str, Any], field: str = "idTagInfo") -> str | None:
    """The status we answered a token with: 1.6 ``idTagInfo``, 2.0.1 ``idTokenInfo``."""
    return as_str(as_dict(response.get(field)).get("status"))


def _gaps(first: int, seen: list[int]) -> list[tuple[int, int]]:
    """The ranges missing from ``first`` to the highest of ``seen`` (ascending)."""
    gaps: list[tuple[int, int]] = []
    expected = first
    for seq_no in seen:
        if seq_no > expected:
            gaps.append((expected, seq_no - 1))
        expected = max(expected, seq_no + 1)
    return gaps


def _without(gaps: list[tuple[int, int]], seq_no: int) -> list[tuple[int, int]]:
    """``gaps`` with ``seq_no`` no longer missing."""
    result: list[tuple[int, int]] = []
    for low, high in gaps:
        if low <= seq_no <= high:
            result += [(a, b) for a, b in ((low, seq_no - 1), (seq_no + 1, high)) if a <= b]
        else:
            result.append((low, high))
    return result
