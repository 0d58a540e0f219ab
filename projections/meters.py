"""The meter projection: what each station's meters last read, per connector (EVSE), measurand,
phase and location; and the reading of sampled values every projection shares.

Meter values reach the CSMS in 1.6 ``MeterValues`` (with a ``transactionId`` inside a
transaction, without one outside: clock-aligned readings of the station's main meter,
connector 0, and of idle connectors), in 2.0.1 ``MeterValues`` (always outside a transaction)
and in the ``meterValue`` of 2.0.1 ``TransactionEvent``. Each answered with a CALLRESULT folds
in here (a sample whose value is not a number, 1.6 signed data, is left out: it stays verbatim
in the frame log); the transaction's energy is the transactions projection's business
(:func:`~chargeledger.projections.transactions.energy_register_wh`, built on the same
:func:`sampled_values`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import (
    Exchange,
    ExchangeFold,
    Kind,
    as_dict,
    as_int,
    as_str,
    is_v16,
)
from chargeledger.projections.reservations import parse_time

__all__ = [
    "DEFAULT_LOCATION",
    "DEFAULT_MEASURAND",
    "MeterReading",
    "MetersProjection",
    "SampledValue",
    "StationMeters",
    "meters_json",
    "read_meter_values",
    "sampled_values",
]

DEFAULT_MEASURAND = "Energy.Active.Import.Register"
"""The measurand of a sample that names none (both versions)."""
DEFAULT_LOCATION = "Outlet"
"""The location of a sample that names none (both versions)."""
_DEFAULT_UNIT = "Wh"
"""The unit of an energy sample that names none."""


class SampledValue(msgspec.Struct, frozen=True, kw_only=True):
    """One sample of a ``meterValue``, read tolerantly, defaults applied."""

    value: float | None
    """The number sent times ``10 ** unitOfMeasure.multiplier`` (2.0.1); ``None`` when it is
    not a finite number (1.6 signed data is an opaque blob, not a reading)."""
    unit: str | None
    """1.6 ``unit`` or 2.0.1 ``unitOfMeasure.unit``; when absent ``Wh`` for an ``Energy.*``
    measurand (the versions' default), else ``None``; ``None`` when it is not a string."""
    measurand: str
    phase: str | None
    location: str
    context: str | None
    """``Sample.Clock`` (clock-aligned), ``Sample.Periodic``, ``Transaction.Begin``, ...;
    ``None`` when absent (OCPP's default is ``Sample.Periodic``)."""
    format: str
    """1.6 ``Raw`` or ``SignedData``; 2.0.1 values are always ``Raw`` (their signature is
    ``signedMeterValue``, beside the value)."""


def _number(value: Any, multiplier: Any) -> float | None:
    if type(value) not in (str, int, float) or type(multiplier) is not int:
        return None
    try:
        number = float(value) * 10.0**multiplier
    except (ValueError, OverflowError):  # JSON integers have no size limit
        return None
    return number if math.isfinite(number) else None


def sampled_values(meter_value: Any) -> Iterator[SampledValue]:
    """The samples of one ``meterValue`` (either version) whose ``measurand``, ``phase``,
    ``location`` and ``format`` are strings or absent; a sample with one of another JSON type
    names nothing we can place and is skipped. Never raises."""
    samples = meter_value.get("sampledValue") if type(meter_value) is dict else None
    for sample in samples if type(samples) is list else ():
        if type(sample) is not dict:
            continue
        measurand = sample.get("measurand", DEFAULT_MEASURAND)
        phase = sample.get("phase")
        location = sample.get("location", DEFAULT_LOCATION)
        format = sample.get("format", "Raw")
        if not (
            type(measurand) is type(location) is type(format) is str
            and (phase is None or type(phase) is str)
        ):
            continue
        # Both versions default the unit to Wh, which only an energy measurand can be in.
        default = _DEFAULT_UNIT if measurand.startswith("Energy.") else None
        measure = sample.get("unitOfMeasure")
        if type(measure) is dict:
            unit, multiplier = measure.get("unit", default), measure.get("multiplier", 0)
        else:
            unit, multiplier = sample.get("unit", default), 0
        yield SampledValue(
            value=_number(sample.get("value"), multiplier) if format == "Raw" else None,
            unit=as_str(unit),
            measurand=measurand,
            phase=phase,
            location=location,
            context=as_str(sample.get("context")),
            format=format,
        )


MeterValueRead = tuple[Any, tuple[SampledValue, ...]]
"""One ``meterValue`` as sent and its samples (:func:`sampled_values`)."""

_last_read: tuple[Any, list[MeterValueRead]] = (None, [])
"""The ``meterValue`` list read last (kept, so its identity is not reused) and its reading."""


def read_meter_values(meter_values: Any) -> list[MeterValueRead]:
    """Each ``meterValue`` of a list (none for anything else) with its samples.

    Read once per list: the transactions, meters and metering folds of one frame are given
    the same payload, and the second and third ask for the reading of the same list object
    (payloads are never changed once decoded). Never raises."""
    global _last_read
    last, read = _last_read
    if meter_values is last:
        return read
    read = [
        (meter_value, tuple(sampled_values(meter_value)))
        for meter_value in (meter_values if type(meter_values) is list else ())
    ]
    _last_read = (meter_values, read)
    return read


class MeterReading(msgspec.Struct, frozen=True, kw_only=True):
    """The latest reading of one measurand, phase and location of one connector's meter."""

    connector_id: int
    """1.6 ``connectorId``, 2.0.1 ``evseId`` (a 1.6 connector N is EVSE N); 0: the station's
    main meter."""
    measurand: str
    phase: str | None
    location: str
    value: float
    """The number sent (times ``10 ** unitOfMeasure.multiplier``), in ``unit``."""
    unit: str | None
    context: str | None
    format: str
    timestamp: str | None
    """The ``meterValue``'s ``timestamp``, as the station sent it."""
    transaction_id: int | str | None
    """The transaction the reading was taken in (1.6 ``transactionId``, 2.0.1
    TransactionEvent's), ``None`` outside one."""
    action: str
    """``MeterValues`` or ``TransactionEvent``."""
    position: int
    """Log position of our CALLRESULT."""
    at: float
    """When we answered it."""

    @property
    def key(self) -> str:
        """``measurand|phase|location`` (phase empty when none): what a later reading of the
        same connector replaces."""
        return f"{self.measurand}|{self.phase or ''}|{self.location}"


def _order(reading: MeterReading) -> tuple[str, str, str]:
    return reading.measurand, reading.phase or "", reading.location


class StationMeters(msgspec.Struct, kw_only=True):
    """A station's meters. Read-only for everyone but the projection."""

    station: str
    connectors: dict[int, dict[str, MeterReading]] = {}
    """By connector (EVSE) id, then by :attr:`MeterReading.key`."""
    clock_aligned_at: str | None = None
    """The station's timestamp of its latest clock-aligned (``Sample.Clock``) reading."""

    def readings(self) -> list[MeterReading]:
        """Every latest reading, by connector, measurand, phase and location."""
        return [
            reading
            for _, readings in sorted(self.connectors.items())
            for reading in sorted(readings.values(), key=_order)
        ]


def _newer(reading: MeterReading, held: MeterReading | None) -> bool:
    """Whether ``reading`` replaces ``held``: it does unless both timestamps are times and
    its own is the earlier (a station sending its offline queue late must not put an old
    reading in front of a newer one); otherwise the log's order decides."""
    if held is None:
        return True
    new, old = parse_time(reading.timestamp), parse_time(held.timestamp)
    return new is None or old is None or new >= old


class MetersProjection(ExchangeFold):
    """Station meters folded from the log (see ``docs/projections.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({"MeterValues", "TransactionEvent"})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationMeters] = {}
        self._evse_of: dict[tuple[str, str], int] = {}
        """The EVSE of each active 2.0.1 transaction: only its first event must name it."""

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        if (
            exchange is None
            or exchange.origin != "in"
            or exchange.action not in ("MeterValues", "TransactionEvent")
            or type(exchange.request) is not dict
            or type(exchange.response) is not dict
        ):
            return
        request = exchange.request
        transaction_id: int | str | None
        if is_v16(exchange.protocol):
            if exchange.action != "MeterValues":
                return
            connector_id = as_int(request.get("connectorId"))
            transaction_id = as_int(request.get("transactionId"))
        elif exchange.action == "MeterValues":
            connector_id, transaction_id = as_int(request.get("evseId")), None
        else:
            transaction_id = as_str(as_dict(request.get("transactionInfo")).get("transactionId"))
            connector_id = self._evse(exchange.station, transaction_id, request)
        if connector_id is None:
            return  # no place to put it: a TransactionEvent of a transaction never placed
        for meter_value, samples in read_meter_values(request.get("meterValue")):
            timestamp = as_str(as_dict(meter_value).get("timestamp"))
            for sample in samples:
                if sample.value is not None:  # signed data stays verbatim in the frame log
                    self._read(
                        exchange, connector_id, transaction_id, timestamp, sample.value, sample
                    )

    def _evse(
        self, station: str, transaction_id: str | None, request: dict[str, Any]
    ) -> int | None:
        """The EVSE of a 2.0.1 TransactionEvent: its own ``evse``, else the one an earlier
        event of the transaction named; forgotten at the Ended event."""
        evse_id = as_int(as_dict(request.get("evse")).get("id"))
        if transaction_id is None:
            return evse_id
        key = (station, transaction_id)
        if evse_id is None:
            evse_id = self._evse_of.get(key)
        elif request.get("eventType") != "Ended":
            self._evse_of[key] = evse_id
        if request.get("eventType") == "Ended":
            self._evse_of.pop(key, None)
        return evse_id

    def _read(
        self,
        exchange: Exchange,
        connector_id: int,
        transaction_id: int | str | None,
        timestamp: str | None,
        value: float,
        sample: SampledValue,
    ) -> None:
        state = self._stations.get(exchange.station)
        if state is None:
            state = self._stations[exchange.station] = StationMeters(station=exchange.station)
        reading = MeterReading(
            connector_id=connector_id,
            measurand=sample.measurand,
            phase=sample.phase,
            location=sample.location,
            value=value,
            unit=sample.unit,
            context=sample.context,
            format=sample.format,
            timestamp=timestamp,
            transaction_id=transaction_id,
            action=exchange.action,
            position=exchange.result_position,
            at=exchange.at,
        )
        readings = state.connectors.setdefault(connector_id, {})
        if _newer(reading, readings.get(reading.key)):
            readings[reading.key] = reading
            if sample.context == "Sample.Clock":
                state.clock_aligned_at = timestamp

    def get(self, station: str) -> StationMeters | None:
        """The station's meters, ``None`` until it reported a reading."""
        return self._stations.get(station)

    def all(self) -> list[StationMeters]:
        """Every station's meters, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))


def reading_json(reading: MeterReading) -> dict[str, Any]:
    """``reading`` as JSON-ready builtins (keys documented in ``docs/projections.md``)."""
    return {
        "connector_id": reading.connector_id,
        "measurand": reading.measurand,
        "phase": reading.phase,
        "location": reading.location,
        "value": reading.value,
        "unit": reading.unit,
        "context": reading.context,
        "format": reading.format,
        "timestamp": reading.timestamp,
        "transaction_id": reading.transaction_id,
        "action": reading.action,
        "position": reading.position,
        "at": rfc3339(reading.at),
    }


def meters_json(state: StationMeters) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``): ``readings`` by connector, measurand, phase, location."""
    return {
        "station": state.station,
        "clock_aligned_at": state.clock_aligned_at,
        "readings": [reading_json(reading) for reading in state.readings()],
    }
