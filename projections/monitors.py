"""The monitors projection: each 2.0.1 station's variable monitors (OCPP 2.0.1 N).

Folded from what the station said of them: the NotifyMonitoringReport parts a
GetMonitoringReport asks for (assembled by ``requestId``, ``seqNo`` and ``tbc``, as the device
model assembles NotifyReport), the ids it gave the monitors SetVariableMonitoring set, the
ClearVariableMonitoring results, the monitoring base and level it accepted, and the
NotifyEvent events each monitor fired (``eventData.variableMonitoringId``).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.device_model import VariableRef
from chargeledger.projections.exchanges import (
    Exchange,
    ExchangeFold,
    Kind,
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_str,
    as_text,
    is_v16,
    route,
)
from chargeledger.projections.parts import Parts, report_of

__all__ = [
    "MAX_MONITORING_REPORTS_PER_STATION",
    "FiredEvent",
    "Monitor",
    "MonitoringReport",
    "MonitorsProjection",
    "StationMonitors",
    "match_monitoring_results",
    "monitor_json",
    "monitors_json",
]

MAX_MONITORING_REPORTS_PER_STATION = 16
"""Monitoring reports remembered per station (the oldest is forgotten first); their monitors
stay."""


class FiredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The latest NotifyEvent event a monitor fired."""

    event_id: int | None
    trigger: str | None
    actual_value: str | None
    cleared: bool
    timestamp: str | None
    """The station's time of the event, as sent."""
    position: int
    """Log position of the CALLRESULT that acknowledged it."""


class Monitor(msgspec.Struct, kw_only=True):
    """One monitor of a station's variable, as the station last told of it."""

    id: int
    """The id the station gave it."""
    ref: VariableRef
    type: str | None
    """``UpperThreshold``, ``LowerThreshold``, ``Delta``, ``Periodic``,
    ``PeriodicClockAligned`` (as sent)."""
    value: float | None
    """The threshold, the delta, or (periodic) the interval in seconds."""
    severity: int | None
    transaction: bool
    """Active only while a transaction runs."""
    source: str
    """``report`` (a NotifyMonitoringReport listed it) or ``set`` (our SetVariableMonitoring
    set it and the station accepted)."""
    position: int
    """Log position of the message that last told of it."""
    at: float
    events: int = 0
    """How many NotifyEvent events it fired."""
    last_event: FiredEvent | None = None


class MonitoringReport(Parts, kw_only=True):
    """A monitoring report the station sends in NotifyMonitoringReport parts, assembled by
    ``seqNo`` / ``tbc`` (:class:`~chargeledger.projections.parts.Parts`)."""

    request_id: int
    status: str | None = None
    """The station's answer to our GetMonitoringReport (``Accepted``, ``EmptyResultSet``,
    ...); ``None`` when the log holds no answered request of ours for this ``requestId``."""
    criteria: list[str] | None = None
    """The ``monitoringCriteria`` we asked for (``None``: every kind)."""
    keys: list[str] | None = None
    """The variables we asked about (``None``: every variable)."""
    requested_position: int | None = None
    monitor_ids: list[int] = []
    """The monitors its parts listed, ascending."""
    generated_at: str | None = None
    at: float | None = None
    """When the latest part arrived."""

    @property
    def everything(self) -> bool:
        """It was asked for every monitor of the station (no criteria, no variables)."""
        return self.requested_position is not None and not self.criteria and not self.keys


class StationMonitors(msgspec.Struct, kw_only=True):
    """A station's monitors. Read-only for everyone but the projection."""

    station: str
    monitors: dict[int, Monitor] = {}
    """By the id the station gave each."""
    reports: dict[int, MonitoringReport] = {}
    """By ``requestId``, oldest first (at most ``MAX_MONITORING_REPORTS_PER_STATION``)."""
    base: str | None = None
    """The monitoring base of the station's latest accepted SetMonitoringBase."""
    level: int | None = None
    """The severity of the station's latest accepted SetMonitoringLevel: events of a severity
    number above it are not reported."""
    refused: list[dict[str, Any]] = []
    """What the station refused of our latest SetVariableMonitoring (``key``, ``type``,
    ``severity``, ``status``)."""
    at: float | None = None
    """When any of this last changed."""


def match_monitoring_results(
    data: list[Any], results: list[Any]
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each ``setMonitoringData`` entry of a SetVariableMonitoring with its
    ``setMonitoringResult`` (``None`` when the station left it out). A result names its
    variable, ``type`` and ``severity``, not the entry: results are matched to entries on
    these, in order, each result once."""
    unused = [as_dict(result) for result in results]
    matched: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for entry in map(as_dict, data):
        wanted = _identity(entry)
        found = next((r for r in unused if _identity(r) == wanted), None)
        if found is not None:
            unused.remove(found)
        matched.append((entry, found))
    return matched


def _identity(item: dict[str, Any]) -> tuple[str | None, Any, Any]:
    ref = VariableRef.from_wire(item.get("component"), item.get("variable"))
    return (None if ref is None else ref.key, item.get("type"), item.get("severity"))


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _report(state: StationMonitors, request_id: int) -> MonitoringReport:
    return report_of(state.reports, request_id, _new_report, MAX_MONITORING_REPORTS_PER_STATION)


def _new_report(request_id: int) -> MonitoringReport:
    return MonitoringReport(request_id=request_id)


def _keep(state: StationMonitors, monitor: Monitor) -> None:
    earlier = state.monitors.get(monitor.id)
    if earlier is not None:  # a monitor told of again keeps the events it fired
        monitor.events, monitor.last_event = earlier.events, earlier.last_event
    state.monitors[monitor.id] = monitor


def _monitor(
    monitor_id: int, ref: VariableRef, item: dict[str, Any], source: str, exchange: Exchange
) -> Monitor:
    """A monitor as a ``VariableMonitoringType`` or a ``SetMonitoringDataType`` (the same
    fields) says it."""
    return Monitor(
        id=monitor_id,
        ref=ref,
        type=as_str(item.get("type")),
        value=_number(item.get("value")),
        severity=as_int(item.get("severity")),
        transaction=as_bool(item.get("transaction")) is True,
        source=source,
        position=exchange.result_position,
        at=exchange.at,
    )


def _notify_monitoring_report(state: StationMonitors, exchange: Exchange) -> None:
    request = exchange.request
    request_id, seq_no = as_int(request.get("requestId")), as_int(request.get("seqNo"))
    if request_id is None or seq_no is None:
        return
    report = _report(state, request_id)
    if not report.receive(seq_no, request.get("tbc")):
        return  # a part received again (its CALLRESULT was lost): applied once
    report.generated_at = report.generated_at or as_str(request.get("generatedAt"))
    report.at = exchange.at
    for entry in map(as_dict, as_list(request.get("monitor"))):
        ref = VariableRef.from_wire(entry.get("component"), entry.get("variable"))
        if ref is None:
            continue
        for item in map(as_dict, as_list(entry.get("variableMonitoring"))):
            monitor_id = as_int(item.get("id"))
            if monitor_id is None:
                continue
            _keep(state, _monitor(monitor_id, ref, item, "report", exchange))
            if monitor_id not in report.monitor_ids:
                report.monitor_ids.append(monitor_id)
                report.monitor_ids.sort()
    if report.complete and report.everything and report.status == "Accepted":
        # A report of every monitor: those it does not list (and we did not set since we
        # asked) are gone.
        listed, since = set(report.monitor_ids), report.requested_position or 0
        for monitor_id, monitor in list(state.monitors.items()):
            if monitor_id not in listed and monitor.position < since:
                del state.monitors[monitor_id]
    state.at = exchange.at


def _monitoring_report_requested(state: StationMonitors, exchange: Exchange) -> None:
    request_id = as_int(exchange.request.get("requestId"))
    if request_id is None:
        return
    report = _report(state, request_id)
    report.status = as_str(exchange.response.get("status"))
    criteria = [c for c in as_list(exchange.request.get("monitoringCriteria")) if type(c) is str]
    report.criteria = criteria or None
    keys = []
    for item in map(as_dict, as_list(exchange.request.get("componentVariable"))):
        component = as_dict(item.get("component"))
        ref = VariableRef.from_wire(component, item.get("variable"))
        keys.append(ref.key if ref is not None else as_str(component.get("name")) or "")
    report.keys = keys or None
    report.requested_position = exchange.call_position
    if report.status == "EmptyResultSet" and report.everything:
        state.monitors.clear()  # asked for every monitor: the station has none
        state.at = exchange.at


def _set_variable_monitoring(state: StationMonitors, exchange: Exchange) -> None:
    refused = []
    pairs = match_monitoring_results(
        as_list(exchange.request.get("setMonitoringData")),
        as_list(exchange.response.get("setMonitoringResult")),
    )
    for entry, result in pairs:
        ref = VariableRef.from_wire(entry.get("component"), entry.get("variable"))
        status = None if result is None else as_str(result.get("status"))
        monitor_id = None if result is None else as_int(result.get("id"))
        monitor_id = as_int(entry.get("id")) if monitor_id is None else monitor_id
        if ref is None:
            continue
        if status != "Accepted" or monitor_id is None:
            refused.append(
                {
                    "key": ref.key,
                    "type": as_str(entry.get("type")),
                    "severity": as_int(entry.get("severity")),
                    "status": status,
                }
            )
            continue
        _keep(state, _monitor(monitor_id, ref, entry, "set", exchange))
    state.refused = refused
    state.at = exchange.at


def _clear_variable_monitoring(state: StationMonitors, exchange: Exchange) -> None:
    for result in map(as_dict, as_list(exchange.response.get("clearMonitoringResult"))):
        monitor_id = as_int(result.get("id"))
        if monitor_id is not None and result.get("status") in ("Accepted", "NotFound"):
            state.monitors.pop(monitor_id, None)
    state.at = exchange.at


def _set_monitoring_base(state: StationMonitors, exchange: Exchange) -> None:
    if exchange.response.get("status") != "Accepted":
        return
    state.base = as_str(exchange.request.get("monitoringBase"))
    if state.base in ("FactoryDefault", "HardWiredOnly"):
        # Both clear the custom monitors (2.0.1 N03): those SetVariableMonitoring set.
        for monitor_id, monitor in list(state.monitors.items()):
            if monitor.source == "set":
                del state.monitors[monitor_id]
    state.at = exchange.at


def _set_monitoring_level(state: StationMonitors, exchange: Exchange) -> None:
    if exchange.response.get("status") == "Accepted":
        state.level = as_int(exchange.request.get("severity"))
        state.at = exchange.at


def _notify_event(state: StationMonitors, exchange: Exchange) -> None:
    for data in map(as_dict, as_list(exchange.request.get("eventData"))):
        monitor = state.monitors.get(as_int(data.get("variableMonitoringId")) or -1)
        if monitor is None:
            continue
        monitor.events += 1
        monitor.last_event = FiredEvent(
            event_id=as_int(data.get("eventId")),
            trigger=as_str(data.get("trigger")),
            actual_value=as_text(data.get("actualValue")),
            cleared=as_bool(data.get("cleared")) is True,
            timestamp=as_str(data.get("timestamp")),
            position=exchange.result_position,
        )


_STATION_CALLS = {
    "NotifyMonitoringReport": _notify_monitoring_report,
    "NotifyEvent": _notify_event,
}
_CSMS_CALLS = {
    "GetMonitoringReport": _monitoring_report_requested,
    "SetVariableMonitoring": _set_variable_monitoring,
    "ClearVariableMonitoring": _clear_variable_monitoring,
    "SetMonitoringBase": _set_monitoring_base,
    "SetMonitoringLevel": _set_monitoring_level,
}


class MonitorsProjection(ExchangeFold):
    """2.0.1 variable monitors folded from the log (see ``docs/device-management.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({*_STATION_CALLS, *_CSMS_CALLS})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationMonitors] = {}

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        handler = route(exchange, _STATION_CALLS, _CSMS_CALLS)
        if handler is None or exchange is None or is_v16(exchange.protocol):
            return
        state = self._stations.get(exchange.station)
        if state is None:
            if handler is _notify_event:
                return  # no monitor known: nothing to link
            state = self._stations[exchange.station] = StationMonitors(station=exchange.station)
        handler(state, exchange)

    def get(self, station: str) -> StationMonitors | None:
        """The station's monitors, ``None`` when the log holds none of them."""
        return self._stations.get(station)

    def all(self) -> list[StationMonitors]:
        """Every station's monitors, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def report(self, station: str, request_id: int) -> MonitoringReport | None:
        """The station's monitoring report ``request_id``, if the log holds it."""
        state = self._stations.get(station)
        return None if state is None else state.reports.get(request_id)


def monitor_json(monitor: Monitor) -> dict[str, Any]:
    """One monitor as JSON-ready builtins."""
    last = monitor.last_event
    return {
        "id": monitor.id,
        "key": monitor.ref.key,
        "component": monitor.ref.component,
        "evse_id": monitor.ref.evse_id,
        "connector_id": monitor.ref.connector_id,
        "variable": monitor.ref.variable,
        "type": monitor.type,
        "value": monitor.value,
        "severity": monitor.severity,
        "transaction": monitor.transaction,
        "source": monitor.source,
        "position": monitor.position,
        "at": rfc3339(monitor.at),
        "events": monitor.events,
        "last_event": None if last is None else msgspec.to_builtins(last),
    }


def monitors_json(state: StationMonitors) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/device-management.md``)."""
    return {
        "station": state.station,
        "base": state.base,
        "level": state.level,
        "monitors": [monitor_json(monitor) for _, monitor in sorted(state.monitors.items())],
        "refused": list(state.refused),
        "reports": [
            {
                "request_id": report.request_id,
                "status": report.status,
                "criteria": report.criteria,
                "keys": report.keys,
                "seq_nos": list(report.seq_nos),
                "last_seq_no": report.last_seq_no,
                "complete": report.complete,
                "monitor_ids": list(report.monitor_ids),
                "generated_at": report.generated_at,
                "at": None if report.at is None else rfc3339(report.at),
            }
            for report in state.reports.values()
        ],
        "at": None if state.at is None else rfc3339(state.at),
    }
