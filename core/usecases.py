"""Version-neutral use cases: the request each protocol version needs, and its answer read back.

Pure functions: given the station's protocol and the use case's arguments they return a
:class:`Request` (action, payload, and how to read the answer). The API sends it; plugins may
return ``SendCall(station, request.action, request.payload)`` for the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from chargeledger.core.errors import UnsupportedUseCase
from chargeledger.schemas import OCPP16

__all__ = [
    "Request",
    "ResetKind",
    "UseCaseResult",
    "change_availability",
    "change_configuration",
    "clear_cache",
    "data_transfer",
    "read_configuration",
    "remote_start",
    "remote_stop",
    "reset",
    "trigger_message",
    "unlock_connector",
]

ResetKind = Literal["soft", "hard", "on_idle", "immediate"]


class UseCaseResult(msgspec.Struct, frozen=True, kw_only=True):
    """The station's answer to a use case.

    ``status`` is the answer's status as the station sent it (``Accepted``, ``Rejected``,
    ``Unlocked``, ...); ``accepted`` says whether it did what was asked; ``values`` holds
    what a read returned (configuration key -> value); ``response`` is the raw CALLRESULT
    payload, ``action`` and ``protocol`` what was sent."""

    protocol: str
    action: str
    status: str
    accepted: bool
    response: dict[str, Any]
    values: dict[str, Any] = {}


ACCEPTED_STATUSES = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired"})


def _status_result(protocol: str, action: str) -> Callable[[dict[str, Any]], UseCaseResult]:
    def read(response: dict[str, Any]) -> UseCaseResult:
        status = str(response.get("status", ""))
        return UseCaseResult(
            protocol=protocol,
            action=action,
            status=status,
            accepted=status in ACCEPTED_STATUSES,
            response=response,
        )

    return read


class Request(msgspec.Struct, frozen=True):
    """One CALL that carries out a use case, and how to read its answer."""

    protocol: str
    action: str
    payload: dict[str, Any]
    reader: Callable[[dict[str, Any]], UseCaseResult] | None = None

    def result(self, response: dict[str, Any]) -> UseCaseResult:
        reader = self.reader or _status_result(self.protocol, self.action)
        return reader(response)


def _present(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _only_16(protocol: str, use_case: str) -> None:
    if protocol != OCPP16:
        raise UnsupportedUseCase(f"{use_case} is not available for {protocol} stations yet")


def remote_start(
    protocol: str,
    id_token: str,
    evse_id: int | None = None,
    connector_id: int | None = None,
    charging_limit_w: float | None = None,
) -> Request:
    _only_16(protocol, "remote start")
    profile = None
    if charging_limit_w is not None:
        profile = {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": charging_limit_w}],
            },
        }
    connector = connector_id if connector_id is not None else evse_id
    payload = _present(idTag=id_token, connectorId=connector, chargingProfile=profile)
    return Request(protocol, "RemoteStartTransaction", payload)


def remote_stop(protocol: str, transaction_id: int | str) -> Request:
    _only_16(protocol, "remote stop")
    if not isinstance(transaction_id, int):
        raise UnsupportedUseCase("OCPP 1.6 transaction ids are integers")
    return Request(protocol, "RemoteStopTransaction", {"transactionId": transaction_id})


def reset(protocol: str, kind: ResetKind, evse_id: int | None = None) -> Request:
    _only_16(protocol, "reset")
    if evse_id is not None:
        raise UnsupportedUseCase("OCPP 1.6 resets the whole station only")
    return Request(protocol, "Reset", {"type": "Hard" if kind in ("hard", "immediate") else "Soft"})


def change_availability(
    protocol: str, operative: bool, evse_id: int | None = None, connector_id: int | None = None
) -> Request:
    _only_16(protocol, "change availability")
    connector = connector_id if connector_id is not None else (evse_id or 0)
    payload = {"connectorId": connector, "type": "Operative" if operative else "Inoperative"}
    return Request(protocol, "ChangeAvailability", payload)


def unlock_connector(protocol: str, connector_id: int, evse_id: int | None = None) -> Request:
    _only_16(protocol, "unlock connector")
    return Request(protocol, "UnlockConnector", {"connectorId": connector_id})


def read_configuration(protocol: str, keys: list[str] | None = None) -> Request:
    _only_16(protocol, "read configuration")

    def read(response: dict[str, Any]) -> UseCaseResult:
        values = {item["key"]: item.get("value") for item in response.get("configurationKey", [])}
        unknown = response.get("unknownKey", [])
        return UseCaseResult(
            protocol=protocol,
            action="GetConfiguration",
            status="Accepted" if not unknown else "PartiallyUnknown",
            accepted=not unknown,
            response=response,
            values=values,
        )

    return Request(protocol, "GetConfiguration", _present(key=keys), read)


def change_configuration(protocol: str, key: str, value: str) -> Request:
    _only_16(protocol, "change configuration")
    return Request(protocol, "ChangeConfiguration", {"key": key, "value": value})


def trigger_message(
    protocol: str, message: str, evse_id: int | None = None, connector_id: int | None = None
) -> Request:
    _only_16(protocol, "trigger message")
    connector = connector_id if connector_id is not None else evse_id
    payload = _present(requestedMessage=message, connectorId=connector)
    return Request(protocol, "TriggerMessage", payload)


def clear_cache(protocol: str) -> Request:
    return Request(protocol, "ClearCache", {})


def data_transfer(
    protocol: str, vendor_id: str, message_id: str | None = None, data: str | None = None
) -> Request:
    payload = _present(vendorId=vendor_id, messageId=message_id, data=data)
    return Request(protocol, "DataTransfer", payload)
