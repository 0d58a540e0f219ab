"""The problems projection: what is wrong with each station now, and the latest events."""

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
)
from chargeledger.projections.stations import evse_of_connector_16

__all__ = [
    "MAX_RECENT_EVENTS",
    "Problem",
    "ProblemsProjection",
    "StationProblems",
    "problems_json",
]

MAX_RECENT_EVENTS = 64
"""Events kept per station in ``recent`` (the oldest is forgotten first)."""


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One reported event about a component's variable (a 2.0.1 ``EventDataType``), or a
    connector fault taken from a StatusNotification, which is the only way 1.6 reports one."""

    ref: VariableRef
    """The component and variable it is about; its ``key`` identifies the problem."""
    source: str
    """``NotifyEvent`` or ``StatusNotification``."""
    actual_value: str | None
    """2.0.1 ``actualValue``; a status-derived problem: 1.6 ``errorCode`` or 2.0.1
    ``connectorStatus``."""
    trigger: str | None
    """2.0.1 ``trigger`` (``Alerting``, ``Delta``, ``Periodic``)."""
    cleared: bool
    """The event reports the return to normal."""
    event_id: int | None
    tech_code: str | None
    """2.0.1 ``techCode``; 1.6 ``vendorErrorCode``."""
    tech_info: str | None
    """2.0.1 ``techInfo``; 1.6 ``info``."""
    transaction_id: str | None
    notification_type: str | None
    """2.0.1 ``eventNotificationType``."""
    monitor_id: int | None = None
    """2.0.1 ``variableMonitoringId``: the monitor that fired it (``views.monitors``)."""
    timestamp: str | None
    """The station's time of the event, as sent."""
    position: int
    """Log position of the CALLRESULT that acknowledged it."""
    at: float
    """When we acknowledged it."""


class StationProblems(msgspec.Struct, kw_only=True):
    """A station's problems. Read-only for everyone but the projection."""

    station: str
    active: dict[str, Problem] = {}
    """The problems not cleared yet, by the key of the variable they are about."""
    recent: list[Problem] = []
    """The latest events (at most ``MAX_RECENT_EVENTS``), oldest first: every NotifyEvent
    event, and each status notification that raised or cleared a problem."""


def _raises(problem: Problem) -> bool | None:
    """Whether ``problem`` raises (``True``) or clears (``False``) the problem of its variable;
    ``None`` for an event that only reports a value (a Delta or Periodic monitor)."""
    if problem.cleared:
        return False
    if problem.ref.variable == "Problem":
        # The standard variable a component uses to say it has a problem (e.g. a lock failure).
        return (problem.actual_value or "").lower() == "true"
    return True if problem.trigger == "Alerting" else None


def _fault_ref(evse_id: int, connector_id: int) -> VariableRef:
    if evse_id == 0:
        return VariableRef(component="ChargingStation", variable="Problem")
    return VariableRef(
        component="Connector", variable="Problem", evse_id=evse_id, connector_id=connector_id
    )


class ProblemsProjection(ExchangeFold):
    """Problems folded from the log (see ``docs/projections.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({"NotifyEvent", "StatusNotification"})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationProblems] = {}

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        if (
            exchange is None
            or exchange.origin != "in"
            or type(exchange.request) is not dict
            or type(exchange.response) is not dict
        ):
            return
        if exchange.action == "NotifyEvent" and not is_v16(exchange.protocol):
            self._notify_event(exchange)
        elif exchange.action == "StatusNotification":
            self._status(exchange)

    def get(self, station: str) -> StationProblems | None:
        """The station's problems, ``None`` when it never reported any."""
        return self._stations.get(station)

    def all(self) -> list[StationProblems]:
        """Every station that reported problems, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def _notify_event(self, exchange: Exchange) -> None:
        for data in as_list(exchange.request.get("eventData")):
            data = as_dict(data)
            ref = VariableRef.from_wire(data.get("component"), data.get("variable"))
            if ref is None:
                continue
            problem = Problem(
                ref=ref,
                source="NotifyEvent",
                actual_value=as_text(data.get("actualValue")),
                trigger=as_str(data.get("trigger")),
                cleared=as_bool(data.get("cleared")) is True,
                event_id=as_int(data.get("eventId")),
                tech_code=as_str(data.get("techCode")),
                tech_info=as_str(data.get("techInfo")),
                transaction_id=as_str(data.get("transactionId")),
                notification_type=as_str(data.get("eventNotificationType")),
                monitor_id=as_int(data.get("variableMonitoringId")),
                timestamp=as_str(data.get("timestamp")),
                position=exchange.result_position,
                at=exchange.at,
            )
            self._record(exchange.station, problem, _raises(problem), always=True)

    def _status(self, exchange: Exchange) -> None:
        request = exchange.request
        evse_id: int | None
        connector_id: int | None
        if is_v16(exchange.protocol):
            connector = as_int(request.get("connectorId"))
            if connector is None:
                return
            evse_id, connector_id = evse_of_connector_16(connector)
            value = as_str(request.get("errorCode"))
            raises = value != "NoError"
        else:
            evse_id = as_int(request.get("evseId"))
            connector_id = as_int(request.get("connectorId"))
            value = as_str(request.get("connectorStatus"))
            raises = value == "Faulted"
        if evse_id is None or connector_id is None or value is None:
            return
        problem = Problem(
            ref=_fault_ref(evse_id, connector_id),
            source="StatusNotification",
            actual_value=value,
            trigger=None,
            cleared=not raises,
            event_id=None,
            tech_code=as_str(request.get("vendorErrorCode")),
            tech_info=as_str(request.get("info")),
            transaction_id=None,
            notification_type=None,
            timestamp=as_str(request.get("timestamp")),
            position=exchange.result_position,
            at=exchange.at,
        )
        self._record(exchange.station, problem, raises, always=False)

    def _record(self, station: str, problem: Problem, raises: bool | None, always: bool) -> None:
        state = self._stations.get(station)
        key = problem.ref.key
        changes = raises is True or (raises is False and state is not None and key in state.active)
        if not (always or changes):
            return  # a status notification that changes no problem is not news
        if state is None:
            state = self._stations[station] = StationProblems(station=station)
        if raises is True:
            state.active[key] = problem
        elif raises is False:
            state.active.pop(key, None)
        state.recent.append(problem)
        if len(state.recent) > MAX_RECENT_EVENTS:
            del state.recent[0]


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "key": problem.ref.key,
        "component": problem.ref.component,
        "evse_id": problem.ref.evse_id,
        "connector_id": problem.ref.connector_id,
        "variable": problem.ref.variable,
        "source": problem.source,
        "actual_value": problem.actual_value,
        "trigger": problem.trigger,
        "cleared": problem.cleared,
        "event_id": problem.event_id,
        "tech_code": problem.tech_code,
        "tech_info": problem.tech_info,
        "transaction_id": problem.transaction_id,
        "notification_type": problem.notification_type,
        "monitor_id": problem.monitor_id,
        "timestamp": problem.timestamp,
        "position": problem.position,
        "at": rfc3339(problem.at),
    }


def problems_json(state: StationProblems) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``)."""
    return {
        "station": state.station,
        "active": [_problem_json(problem) for _, problem in sorted(state.active.items())],
        "recent": [_problem_json(problem) for problem in state.recent],
    }
