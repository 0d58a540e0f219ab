"""The device-model projection: each 2.0.1 station's components, variables and reports."""

from __future__ import annotations

import re
from bisect import insort
from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
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
from chargeledger.projections.parts import Parts, report_of

__all__ = [
    "MAX_REPORTS_PER_STATION",
    "Attribute",
    "Characteristics",
    "DeviceModelProjection",
    "DeviceModelState",
    "Report",
    "Variable",
    "VariableRef",
    "device_model_json",
]

MAX_REPORTS_PER_STATION = 16
"""Reports remembered per station (the oldest is forgotten first); their variables stay."""

ACTUAL = "Actual"
"""The attribute type OCPP assumes when a message names none."""

_KEY = re.compile(
    r"(?P<component>[^.\[\]@/]+)(?:\[(?P<component_instance>[^\]]*)\])?"
    r"(?:@(?P<evse_id>\d+)(?:/(?P<connector_id>\d+))?)?"
    r"\.(?P<variable>[^.\[\]@/]+)(?:\[(?P<variable_instance>[^\]]*)\])?"
)


class VariableRef(msgspec.Struct, frozen=True, kw_only=True):
    """One variable of one component, as 2.0.1 names it, with its text ``key``:
    ``Component[instance]@evse/connector.Variable[instance]``, every part but the two names
    optional (``OCPPCommCtrlr.HeartbeatInterval``, ``Connector@1/2.AvailabilityState``,
    ``OCPPCommCtrlr.MessageAttempts[TransactionEvent]``)."""

    component: str
    variable: str
    component_instance: str | None = None
    variable_instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None

    @property
    def key(self) -> str:
        component = self.component
        if self.component_instance is not None:
            component += f"[{self.component_instance}]"
        if self.evse_id is not None:
            component += f"@{self.evse_id}"
            if self.connector_id is not None:
                component += f"/{self.connector_id}"
        variable = self.variable
        if self.variable_instance is not None:
            variable += f"[{self.variable_instance}]"
        return f"{component}.{variable}"

    @classmethod
    def parse(cls, key: str) -> VariableRef | None:
        """The variable ``key`` names, ``None`` when it is not in the key syntax."""
        match = _KEY.fullmatch(key)
        if match is None:
            return None
        parts = match.groupdict()
        return cls(
            component=parts["component"],
            variable=parts["variable"],
            component_instance=parts["component_instance"],
            variable_instance=parts["variable_instance"],
            evse_id=None if parts["evse_id"] is None else int(parts["evse_id"]),
            connector_id=None if parts["connector_id"] is None else int(parts["connector_id"]),
        )

    @classmethod
    def from_wire(cls, component: Any, variable: Any) -> VariableRef | None:
        """The variable a ``ComponentType`` and ``VariableType`` pair names (``None`` when
        either has no name)."""
        component, variable = as_dict(component), as_dict(variable)
        component_name, variable_name = as_str(component.get("name")), as_str(variable.get("name"))
        if component_name is None or variable_name is None:
            return None
        evse = as_dict(component.get("evse"))
        return cls(
            component=component_name,
            variable=variable_name,
            component_instance=as_str(component.get("instance")),
            variable_instance=as_str(variable.get("instance")),
            evse_id=as_int(evse.get("id")),
            connector_id=as_int(evse.get("connectorId")),
        )

    def to_wire(self) -> dict[str, Any]:
        """The ``component`` and ``variable`` fields naming this variable on the wire."""
        component: dict[str, Any] = {"name": self.component}
        if self.component_instance is not None:
            component["instance"] = self.component_instance
        if self.evse_id is not None:
            component["evse"] = {"id": self.evse_id}
            if self.connector_id is not None:
                component["evse"]["connectorId"] = self.connector_id
        variable: dict[str, Any] = {"name": self.variable}
        if self.variable_instance is not None:
            variable["instance"] = self.variable_instance
        return {"component": component, "variable": variable}


class Attribute(msgspec.Struct, frozen=True, kw_only=True):
    """One attribute (``Actual``, ``Target``, ``MinSet``, ``MaxSet``) of a variable, as last
    reported, read or successfully set; what the station did not say is ``None``."""

    value: str | None
    mutability: str | None
    persistent: bool | None
    constant: bool | None
    at: float
    """When the station's message carrying it arrived."""


class Characteristics(msgspec.Struct, frozen=True, kw_only=True):
    """A variable's ``variableCharacteristics`` from a report."""

    data_type: str | None
    unit: str | None
    min_limit: float | None
    max_limit: float | None
    values_list: str | None
    supports_monitoring: bool | None


class Variable(msgspec.Struct, kw_only=True):
    """One variable of the station's device model."""

    ref: VariableRef
    attributes: dict[str, Attribute] = {}
    """By attribute type."""
    characteristics: Characteristics | None = None


class Report(Parts, kw_only=True):
    """A report the station sends in NotifyReport parts, assembled by ``seqNo`` / ``tbc``
    (:class:`~chargeledger.projections.parts.Parts`: ``seq_nos``, ``last_seq_no``,
    ``complete``)."""

    request_id: int
    base: str | None = None
    """``reportBase`` of our GetBaseReport; ``None`` for a GetReport, or when the log holds no
    answered request of ours for this ``requestId``."""
    status: str | None = None
    """The station's answer to our request (``Accepted``, ``EmptyResultSet``, ...)."""
    generated_at: str | None = None
    """The station's ``generatedAt`` of the first part received."""
    at: float | None = None
    """When the latest part arrived."""


class DeviceModelState(msgspec.Struct, kw_only=True):
    """A station's device model. Read-only for everyone but the projection."""

    station: str
    variables: dict[str, Variable] = {}
    """By :attr:`VariableRef.key`."""
    reports: dict[int, Report] = {}
    """By ``requestId``, oldest first (at most ``MAX_REPORTS_PER_STATION``)."""
    unknown_variables: list[str] = []
    """Keys the station answered ``UnknownComponent`` / ``UnknownVariable`` for, sorted."""

    def value(self, key: str, attribute: str = ACTUAL) -> str | None:
        """The value of an attribute of the variable ``key`` names, ``None`` when unknown."""
        variable = self.variables.get(key)
        found = None if variable is None else variable.attributes.get(attribute)
        return None if found is None else found.value

    def values(self, attribute: str = ACTUAL) -> dict[str, str | None]:
        """The value of that attribute of every variable that has it, by key."""
        return {
            key: variable.attributes[attribute].value
            for key, variable in sorted(self.variables.items())
            if attribute in variable.attributes
        }


def _variable(state: DeviceModelState, ref: VariableRef) -> Variable:
    key = ref.key
    variable = state.variables.get(key)
    if variable is None:
        variable = state.variables[key] = Variable(ref=ref)
    if key in state.unknown_variables:
        state.unknown_variables.remove(key)
    return variable


def _unknown(state: DeviceModelState, ref: VariableRef) -> None:
    key = ref.key
    state.variables.pop(key, None)
    if key not in state.unknown_variables:
        insort(state.unknown_variables, key)


def _set_value(state: DeviceModelState, ref: VariableRef, kind: str, value: Any, at: float) -> None:
    """A value read or set: keeps what a report said of the attribute's other properties."""
    variable = _variable(state, ref)
    earlier = variable.attributes.get(kind)
    variable.attributes[kind] = Attribute(
        value=as_text(value),
        mutability=None if earlier is None else earlier.mutability,
        persistent=None if earlier is None else earlier.persistent,
        constant=None if earlier is None else earlier.constant,
        at=at,
    )


def _report(state: DeviceModelState, request_id: int) -> Report:
    return report_of(state.reports, request_id, _new_report, MAX_REPORTS_PER_STATION)


def _new_report(request_id: int) -> Report:
    return Report(request_id=request_id)


def _notify_report(state: DeviceModelState, exchange: Exchange) -> None:
    request = exchange.request
    request_id, seq_no = as_int(request.get("requestId")), as_int(request.get("seqNo"))
    if request_id is None or seq_no is None:
        return
    report = _report(state, request_id)
    if not report.receive(seq_no, request.get("tbc")):
        return  # a part received again (its CALLRESULT was lost): applied once
    report.generated_at = report.generated_at or as_str(request.get("generatedAt"))
    report.at = exchange.at
    for entry in as_list(request.get("reportData")):
        entry = as_dict(entry)
        ref = VariableRef.from_wire(entry.get("component"), entry.get("variable"))
        if ref is None:
            continue
        variable = _variable(state, ref)
        for attribute in as_list(entry.get("variableAttribute")):
            attribute = as_dict(attribute)
            variable.attributes[as_str(attribute.get("type")) or ACTUAL] = Attribute(
                value=as_text(attribute.get("value")),
                mutability=as_str(attribute.get("mutability")),
                persistent=as_bool(attribute.get("persistent")),
                constant=as_bool(attribute.get("constant")),
                at=exchange.at,
            )
        characteristics = entry.get("variableCharacteristics")
        if type(characteristics) is dict:
            variable.characteristics = Characteristics(
                data_type=as_str(characteristics.get("dataType")),
                unit=as_str(characteristics.get("unit")),
                min_limit=_number(characteristics.get("minLimit")),
                max_limit=_number(characteristics.get("maxLimit")),
                values_list=as_str(characteristics.get("valuesList")),
                supports_monitoring=as_bool(characteristics.get("supportsMonitoring")),
            )


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _report_requested(state: DeviceModelState, exchange: Exchange) -> None:
    request_id = as_int(exchange.request.get("requestId"))
    if request_id is None:
        return
    report = _report(state, request_id)
    report.base = as_str(exchange.request.get("reportBase"))
    report.status = as_str(exchange.response.get("status"))


def _get_variables(state: DeviceModelState, exchange: Exchange) -> None:
    for result in as_list(exchange.response.get("getVariableResult")):
        result = as_dict(result)
        ref = VariableRef.from_wire(result.get("component"), result.get("variable"))
        status = result.get("attributeStatus")
        if ref is None:
            continue
        if status == "Accepted":
            kind = as_str(result.get("attributeType")) or ACTUAL
            _set_value(state, ref, kind, result.get("attributeValue"), exchange.at)
        elif status in ("UnknownComponent", "UnknownVariable"):
            _unknown(state, ref)


def _set_variables(state: DeviceModelState, exchange: Exchange) -> None:
    sent: dict[tuple[str, str], Any] = {}
    for data in as_list(exchange.request.get("setVariableData")):
        data = as_dict(data)
        ref = VariableRef.from_wire(data.get("component"), data.get("variable"))
        if ref is not None:
            sent[ref.key, as_str(data.get("attributeType")) or ACTUAL] = data.get("attributeValue")
    for result in as_list(exchange.response.get("setVariableResult")):
        result = as_dict(result)
        ref = VariableRef.from_wire(result.get("component"), result.get("variable"))
        status = result.get("attributeStatus")
        kind = as_str(result.get("attributeType")) or ACTUAL
        if ref is None or (ref.key, kind) not in sent:
            continue
        if status in ("Accepted", "RebootRequired"):
            # RebootRequired: the station stored the value; it takes effect after a reboot.
            _set_value(state, ref, kind, sent[ref.key, kind], exchange.at)
        elif status in ("UnknownComponent", "UnknownVariable"):
            _unknown(state, ref)


_STATION_CALLS = {"NotifyReport": _notify_report}
_CSMS_CALLS = {
    "GetBaseReport": _report_requested,
    "GetReport": _report_requested,
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
}


class DeviceModelProjection(ExchangeFold):
    """2.0.1 device models folded from the log (see ``docs/projections.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({*_STATION_CALLS, *_CSMS_CALLS})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, DeviceModelState] = {}

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        if exchange is None or is_v16(exchange.protocol):
            return
        handlers = _STATION_CALLS if exchange.origin == "in" else _CSMS_CALLS
        handler = handlers.get(exchange.action)
        if handler is not None and type(exchange.request) is type(exchange.response) is dict:
            state = self._stations.get(exchange.station)
            if state is None:
                state = self._stations[exchange.station] = DeviceModelState(
                    station=exchange.station
                )
            handler(state, exchange)

    def get(self, station: str) -> DeviceModelState | None:
        """The station's device model, ``None`` when the log holds none of it."""
        return self._stations.get(station)

    def all(self) -> list[DeviceModelState]:
        """Every station's device model, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))


def device_model_json(state: DeviceModelState) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``)."""
    return {
        "station": state.station,
        "variables": {
            key: {
                "component": variable.ref.component,
                "component_instance": variable.ref.component_instance,
                "evse_id": variable.ref.evse_id,
                "connector_id": variable.ref.connector_id,
                "variable": variable.ref.variable,
                "variable_instance": variable.ref.variable_instance,
                "attributes": {
                    kind: {
                        "value": attribute.value,
                        "mutability": attribute.mutability,
                        "persistent": attribute.persistent,
                        "constant": attribute.constant,
                        "at": rfc3339(attribute.at),
                    }
                    for kind, attribute in sorted(variable.attributes.items())
                },
                "characteristics": None
                if variable.characteristics is None
                else msgspec.to_builtins(variable.characteristics),
            }
            for key, variable in sorted(state.variables.items())
        },
        "reports": [
            {
                "request_id": report.request_id,
                "base": report.base,
                "status": report.status,
                "seq_nos": list(report.seq_nos),
                "last_seq_no": report.last_seq_no,
                "complete": report.complete,
                "generated_at": report.generated_at,
                "at": None if report.at is None else rfc3339(report.at),
            }
            for report in state.reports.values()
        ],
        "unknown_variables": list(state.unknown_variables),
    }
