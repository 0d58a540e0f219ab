"""How a simulated station answers the CSMS's CALLs, as a real one-connector station would.

:meth:`Responder.answer` returns the answer frame (a CALLRESULT, or a CALLERROR) and what the
station does next (:class:`FollowUp`), which the station's own task carries out once it is
idle (OCPP-J allows one CALL of ours in flight):

=================================================  ===========================================
CSMS CALL                                          answer, then
=================================================  ===========================================
1.6 RemoteStartTransaction,                        Accepted (Rejected while charging, or for
2.0.1 RequestStartTransaction                      another connector / EVSE than 1); then
                                                   StartTransaction / TransactionEvent Started
                                                   (triggerReason RemoteStart, its
                                                   remoteStartId) and MeterValues every
                                                   MeterValueSampleInterval / TxUpdatedInterval
RemoteStopTransaction, RequestStopTransaction      Accepted for the open transaction (else
                                                   Rejected); then StopTransaction reason
                                                   Remote / TransactionEvent Ended (RemoteStop)
GetConfiguration, GetVariables                     from the simulated configuration (unknown
                                                   keys: unknownKey / UnknownVariable)
ChangeConfiguration, SetVariables                  change it (read-only: Rejected; unknown:
                                                   NotSupported / UnknownVariable)
GetBaseReport (2.0.1)                              Accepted; then NotifyReport of every variable
Reset                                              Accepted; then the open transaction ends
                                                   (reason SoftReset / ImmediateReset), the
                                                   connection closes, the station reconnects
                                                   and boots (BootNotification, then
                                                   StatusNotification). 2.0.1 OnIdle while
                                                   charging: Scheduled, done after the stop
TriggerMessage                                     Accepted; then the message requested
                                                   (Rejected: MeterValues / TransactionEvent
                                                   without a transaction; NotImplemented: what a
                                                   simulated station cannot send)
ClearCache                                         Accepted (it keeps no cache)
DataTransfer                                       UnknownVendorId
any other action of the version                    its response's NotSupported or Rejected
                                                   status; CALLERROR NotSupported when its
                                                   response has no such status
an action the version does not define              CALLERROR NotImplemented
=================================================  ===========================================
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from chargeledger.core.simulator.frames import StationFrames
from chargeledger.core.times import rfc3339
from chargeledger.schemas import OCPP16, request_type, response_type

__all__ = ["FollowUp", "Responder"]


class FollowUp(msgspec.Struct, frozen=True):
    """What the station does after answering: ``call`` sends the frame ``kind`` (a
    :class:`StationFrames` method) with ``args``; ``reboot`` stops its transaction, reconnects
    and boots; ``reboot_when_idle`` reboots once its transaction has ended."""

    what: Literal["call", "reboot", "reboot_when_idle"]
    kind: str = ""
    args: tuple[Any, ...] = ()


_Answer = tuple[bytes, list[FollowUp]]

_CONFIGURATION_16: dict[str, tuple[str, bool]] = {
    "HeartbeatInterval": ("300", False),
    "MeterValueSampleInterval": ("10", False),
    "MeterValuesSampledData": (
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC",
        False,
    ),
    "ClockAlignedDataInterval": ("0", False),
    "ConnectionTimeOut": ("60", False),
    "AuthorizeRemoteTxRequests": ("false", False),
    "LocalAuthorizeOffline": ("true", False),
    "StopTransactionOnInvalidId": ("true", False),
    "WebSocketPingInterval": ("30", False),
    "NumberOfConnectors": ("1", True),
    "SupportedFeatureProfiles": ("Core,RemoteTrigger", True),
}
"""1.6 keys: value and read-only."""

_INTEGER_KEYS = frozenset(
    {
        "HeartbeatInterval",
        "MeterValueSampleInterval",
        "ClockAlignedDataInterval",
        "ConnectionTimeOut",
        "WebSocketPingInterval",
        "TxUpdatedInterval",
        "EVConnectionTimeOut",
    }
)
"""Keys (1.6) and variables (2.0.1) that take a whole number of seconds."""

_DEVICE_MODEL_201: dict[tuple[str, str], tuple[str, bool]] = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): ("300", False),
    ("OCPPCommCtrlr", "WebSocketPingInterval"): ("30", False),
    ("SampledDataCtrlr", "TxUpdatedInterval"): ("10", False),
    ("SampledDataCtrlr", "TxUpdatedMeasurands"): (
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC",
        False,
    ),
    ("AuthCtrlr", "AuthorizeRemoteStart"): ("false", False),
    ("TxCtrlr", "EVConnectionTimeOut"): ("60", False),
    ("DeviceDataCtrlr", "ItemsPerMessage"): ("50", True),
}
"""2.0.1 variables (component, variable; their ``Actual`` attribute): value and read-only."""

_TRIGGERS_16: dict[str, tuple[str, tuple[str, ...]]] = {
    "BootNotification": ("boot", ()),
    "Heartbeat": ("heartbeat", ()),
    "DiagnosticsStatusNotification": ("message", ("DiagnosticsStatusNotification",)),
    "FirmwareStatusNotification": ("message", ("FirmwareStatusNotification",)),
}
_TRIGGERS_201: dict[str, tuple[str, tuple[str, ...]]] = {
    "BootNotification": ("boot", ()),
    "Heartbeat": ("heartbeat", ()),
    "FirmwareStatusNotification": ("message", ("FirmwareStatusNotification",)),
    "LogStatusNotification": ("message", ("LogStatusNotification",)),
}


class Responder:
    """The answers of one simulated ``protocol`` station whose frames are ``frames``."""

    def __init__(self, protocol: str, frames: StationFrames) -> None:
        self.protocol = protocol
        self.frames = frames
        self.configuration = dict(_CONFIGURATION_16)
        self.device_model = dict(_DEVICE_MODEL_201)
        self.starting = False
        """A remote start was accepted and its start not yet sent."""
        self.stopping = False
        """A remote stop was accepted and its stop not yet sent."""

    @property
    def meter_interval(self) -> float:
        """Seconds between the MeterValues of a remotely started transaction (0: none), as
        configured (1.6 ``MeterValueSampleInterval``, 2.0.1 ``TxUpdatedInterval``)."""
        if self.protocol == OCPP16:
            value = self.configuration["MeterValueSampleInterval"][0]
        else:
            value = self.device_model[("SampledDataCtrlr", "TxUpdatedInterval")][0]
        return float(value)

    @property
    def charging(self) -> bool:
        return self.frames.transaction is not None or self.starting

    def answer(self, message_id: str, action: str, payload: Any) -> _Answer:
        """The answer frame to the CSMS CALL ``action`` with ``payload``, and what follows."""
        if request_type(self.protocol, action) is None:
            return _error(message_id, "NotImplemented", f"{action} is not an OCPP action here")
        if type(payload) is not dict:
            return _error(message_id, self._format_error, "the payload is not an object")
        handler = getattr(self, f"_{action}", None)
        if handler is None:
            return self._refuse(message_id, action)
        try:
            answer: _Answer = handler(message_id, payload)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return _error(message_id, self._format_error, f"cannot read {action}: {exc!r}")
        return answer

    @property
    def _format_error(self) -> str:
        return "FormationViolation" if self.protocol == OCPP16 else "FormatViolation"

    def _refuse(self, message_id: str, action: str) -> _Answer:
        """A known action a simulated station does not do: its response's NotSupported or
        Rejected status, or CALLERROR NotSupported when it has none."""
        response = response_type(self.protocol, action)
        status = None if response is None else _refusal_status(response)
        if status is None:
            return _error(message_id, "NotSupported", f"a simulated station does not do {action}")
        return _result(message_id, {"status": status})

    # -- 1.6 ----------------------------------------------------------------------------------

    def _RemoteStartTransaction(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        if self.charging or payload.get("connectorId", 1) != 1:
            return _result(message_id, {"status": "Rejected"})
        self.starting = True
        start = FollowUp("call", "remote_start_transaction", (payload["idTag"], "", None))
        return _result(message_id, {"status": "Accepted"}, start)

    def _RemoteStopTransaction(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        current = self.frames.transaction
        if current is None or self.stopping or b"%d" % payload["transactionId"] != current:
            return _result(message_id, {"status": "Rejected"})
        self.stopping = True
        return _result(message_id, {"status": "Accepted"}, FollowUp("call", "stop", ("remote",)))

    def _GetConfiguration(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        keys = payload.get("key") or list(self.configuration)
        known = [
            {
                "key": key,
                "readonly": self.configuration[key][1],
                "value": self.configuration[key][0],
            }
            for key in keys
            if key in self.configuration
        ]
        unknown = [key for key in keys if key not in self.configuration]
        answer: dict[str, Any] = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return _result(message_id, answer)

    def _ChangeConfiguration(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        key, value = payload["key"], payload["value"]
        if key not in self.configuration:
            return _result(message_id, {"status": "NotSupported"})
        if self.configuration[key][1] or not _valid(key, value):
            return _result(message_id, {"status": "Rejected"})
        self.configuration[key] = (value, False)
        return _result(message_id, {"status": "Accepted"})

    def _Reset(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        if self.protocol == OCPP16:
            return _result(message_id, {"status": "Accepted"}, FollowUp("reboot"))
        if payload.get("evseId") not in (None, 0):
            return _result(message_id, {"status": "Rejected"})  # no EVSE reset on its own
        if payload["type"] == "OnIdle" and self.charging:
            return _result(message_id, {"status": "Scheduled"}, FollowUp("reboot_when_idle"))
        return _result(message_id, {"status": "Accepted"}, FollowUp("reboot"))

    def _TriggerMessage(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        requested = payload["requestedMessage"]
        triggers = _TRIGGERS_16 if self.protocol == OCPP16 else _TRIGGERS_201
        status = "Charging" if self.frames.transaction is not None else "Available"
        follow: FollowUp | None = None
        if requested in triggers:
            kind, args = triggers[requested]
            if kind == "message":
                follow = FollowUp("call", kind, (*args, {"status": "Idle"}))
            else:
                follow = FollowUp("call", kind, args)
        elif requested == "StatusNotification":
            if self.protocol != OCPP16:
                status = "Occupied" if self.frames.transaction is not None else "Available"
            follow = FollowUp("call", "status_notification", (status,))
        elif requested == "TransactionEvent" or (
            requested == "MeterValues" and self.protocol == OCPP16 and self.charging
        ):
            if self.frames.transaction is None:
                return _result(message_id, {"status": "Rejected"})
            follow = FollowUp("call", "meter_values")
        elif requested == "MeterValues":  # no transaction (1.6), or 2.0.1's own message
            follow = FollowUp("call", "message", ("MeterValues", self._register_reading()))
        if follow is None:
            return _result(message_id, {"status": "NotImplemented"})
        return _result(message_id, {"status": "Accepted"}, follow)

    def _register_reading(self) -> dict[str, Any]:
        """A MeterValues payload with the energy register, context Trigger."""
        sample: dict[str, Any] = {
            "measurand": "Energy.Active.Import.Register",
            "context": "Trigger",
        }
        energy = int(self.frames.meter.energy_wh)
        if self.protocol == OCPP16:
            sample.update(value=str(energy), unit="Wh")
            where = {"connectorId": 1}
        else:
            sample.update(value=energy, unitOfMeasure={"unit": "Wh"})
            where = {"evseId": 1}
        return {
            **where,
            "meterValue": [{"timestamp": rfc3339(time.time()), "sampledValue": [sample]}],
        }

    def _ClearCache(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        return _result(message_id, {"status": "Accepted"})

    def _DataTransfer(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        return _result(message_id, {"status": "UnknownVendorId"})

    # -- 2.0.1 --------------------------------------------------------------------------------

    def _RequestStartTransaction(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        if self.charging or payload.get("evseId", 1) != 1:
            return _result(message_id, {"status": "Rejected"})
        self.starting = True
        token = payload["idToken"]
        args = (token["idToken"], token["type"], payload["remoteStartId"])
        return _result(
            message_id, {"status": "Accepted"}, FollowUp("call", "remote_start_transaction", args)
        )

    def _RequestStopTransaction(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        current = self.frames.transaction
        asked = msgspec.json.encode(payload["transactionId"])
        if current is None or self.stopping or asked != current:
            return _result(message_id, {"status": "Rejected"})
        self.stopping = True
        return _result(message_id, {"status": "Accepted"}, FollowUp("call", "stop", ("remote",)))

    def _GetVariables(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        results = []
        for item in payload["getVariableData"]:
            status, value = self._variable(item)
            result = _variable_result(item, status)
            if value is not None:
                result["attributeValue"] = value
            results.append(result)
        return _result(message_id, {"getVariableResult": results})

    def _SetVariables(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        results = []
        for item in payload["setVariableData"]:
            status, _ = self._variable(item)
            key = (item["component"]["name"], item["variable"]["name"])
            if status == "Accepted":
                value = item["attributeValue"]
                if self.device_model[key][1] or not _valid(key[1], value):
                    status = "Rejected"
                else:
                    self.device_model[key] = (value, False)
            results.append(_variable_result(item, status))
        return _result(message_id, {"setVariableResult": results})

    def _variable(self, item: dict[str, Any]) -> tuple[str, str | None]:
        """The status of a variable asked for, and its value when Accepted."""
        if item.get("attributeType", "Actual") != "Actual":
            return "NotSupportedAttributeType", None
        component, variable = item["component"]["name"], item["variable"]["name"]
        if not any(name == component for name, _ in self.device_model):
            return "UnknownComponent", None
        if (component, variable) not in self.device_model:
            return "UnknownVariable", None
        return "Accepted", self.device_model[(component, variable)][0]

    def _GetBaseReport(self, message_id: str, payload: dict[str, Any]) -> _Answer:
        report = {
            "requestId": payload["requestId"],
            "generatedAt": rfc3339(time.time()),
            "seqNo": 0,
            "tbc": False,
            "reportData": [
                {
                    "component": {"name": component},
                    "variable": {"name": variable},
                    "variableAttribute": [
                        {
                            "type": "Actual",
                            "value": value,
                            "mutability": "ReadOnly" if read_only else "ReadWrite",
                        }
                    ],
                }
                for (component, variable), (value, read_only) in self.device_model.items()
            ],
        }
        notify = FollowUp("call", "message", ("NotifyReport", report))
        return _result(message_id, {"status": "Accepted"}, notify)


def _variable_result(item: dict[str, Any], status: str) -> dict[str, Any]:
    """A GetVariables / SetVariables result for the ``item`` asked for, with ``status``."""
    result = {"attributeStatus": status, "component": item["component"]}
    result["variable"] = item["variable"]
    if "attributeType" in item:
        result["attributeType"] = item["attributeType"]
    return result


def _valid(key: str, value: str) -> bool:
    if key in _INTEGER_KEYS:
        return value.isdigit()
    return True


def _refusal_status(response: type[msgspec.Struct]) -> str | None:
    """``NotSupported``, else ``Rejected``, when ``response``'s one required field is a
    ``status`` that has it."""
    info = msgspec.inspect.type_info(response)
    assert isinstance(info, msgspec.inspect.StructType)
    required = [field for field in info.fields if field.required]
    if [field.encode_name for field in required] != ["status"]:
        return None
    kind = required[0].type
    values = kind.values if isinstance(kind, msgspec.inspect.LiteralType) else ()
    for status in ("NotSupported", "Rejected"):
        if status in values:
            return status
    return None


def _result(message_id: str, payload: dict[str, Any], *follow: FollowUp) -> _Answer:
    return msgspec.json.encode([3, message_id, payload]), list(follow)


def _error(message_id: str, code: str, description: str) -> _Answer:
    return msgspec.json.encode([4, message_id, code, description, {}]), []
