"""Payload validation: the error code per violation and version; strict outbound checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeledger.core.errors import (
    ERROR_CODES,
    FrameError,
    OcppError,
    OutboundValidationError,
    error_code,
)
from chargeledger.core.frames import to_wire, validate_request, validate_response
from chargeledger.schemas import OCPP16, OCPP201, PROTOCOLS, v16, v201

STATION_201 = {"model": "M", "vendorName": "V"}
NEEDS_201 = {"requestedEnergyTransfer": "DC", "dcChargingParameters": {}}

# (protocol, action, payload, wire code, JSON path in the description)
REQUEST_VIOLATIONS = [
    (OCPP16, "NoSuchAction", {}, "NotImplemented", None),
    (OCPP201, "StartTransaction", {}, "NotImplemented", None),
    (OCPP16, "Authorize", {}, "OccurenceConstraintViolation", "$"),
    (OCPP201, "Authorize", {}, "OccurrenceConstraintViolation", "$"),
    (
        OCPP16,
        "MeterValues",
        {"connectorId": 1, "meterValue": []},
        "OccurenceConstraintViolation",
        "$.meterValue",
    ),
    (
        OCPP201,
        "GetVariables",
        {"getVariableData": []},
        "OccurrenceConstraintViolation",
        "$.getVariableData",
    ),
    (OCPP16, "Authorize", {"idTag": 42}, "TypeConstraintViolation", "$.idTag"),
    (
        OCPP201,
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"model": 7, "vendorName": "V"}},
        "TypeConstraintViolation",
        "$.chargingStation.model",
    ),
    (OCPP16, "Heartbeat", [], "TypeConstraintViolation", "$"),
    (
        OCPP16,
        "StatusNotification",
        {"connectorId": 1, "errorCode": "Error", "status": "Available"},
        "PropertyConstraintViolation",
        "$.errorCode",
    ),
    (
        OCPP201,
        "BootNotification",
        {"reason": "Bored", "chargingStation": STATION_201},
        "PropertyConstraintViolation",
        "$.reason",
    ),
    (OCPP16, "Authorize", {"idTag": "x" * 21}, "PropertyConstraintViolation", "$.idTag"),
    (
        OCPP201,
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"model": "M" * 21, "vendorName": "V"}},
        "PropertyConstraintViolation",
        "$.chargingStation.model",
    ),
    (
        OCPP201,
        "NotifyEVChargingNeeds",
        {
            "evseId": 1,
            "chargingNeeds": {
                **NEEDS_201,
                "dcChargingParameters": {
                    "evMaxCurrent": 1,
                    "evMaxVoltage": 1,
                    "stateOfCharge": 101,
                },
            },
        },
        "PropertyConstraintViolation",
        "$.chargingNeeds.dcChargingParameters.stateOfCharge",
    ),
    (OCPP16, "Heartbeat", {"extra": 1}, "FormationViolation", "$"),
    (
        OCPP201,
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {**STATION_201, "colour": "red"}},
        "FormatViolation",
        "$.chargingStation",
    ),
]


@pytest.mark.parametrize(("protocol", "action", "payload", "code", "path"), REQUEST_VIOLATIONS)
def test_request_violations_get_the_version_code(
    protocol: str, action: str, payload: Any, code: str, path: str | None
) -> None:
    with pytest.raises(FrameError) as caught:
        validate_request(protocol, action, payload, message_id="m7")
    assert caught.value.message_id == "m7"
    assert error_code(protocol, caught.value.code) == code
    if path is not None:
        assert caught.value.description.endswith(f" - at `{path}`")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_response_violations_are_checked_against_the_response_schema(protocol: str) -> None:
    with pytest.raises(FrameError) as caught:
        validate_response(protocol, "BootNotification", {"status": "Accepted"})
    assert caught.value.message_id == "-1"
    assert error_code(protocol, caught.value.code) == error_code(
        protocol, "OccurrenceConstraintViolation"
    )
    answer = {"currentTime": "2024-05-01T10:00:00Z", "interval": 300, "status": "Accepted"}
    assert validate_response(protocol, "BootNotification", answer).status == "Accepted"


def test_valid_requests_come_back_typed() -> None:
    boot = validate_request(
        OCPP16, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
    )
    assert isinstance(boot, v16.BootNotificationRequest) and boot.charge_point_model == "M"
    payload = {"reason": "PowerUp", "chargingStation": STATION_201}
    assert isinstance(
        validate_request(OCPP201, "BootNotification", payload), v201.BootNotificationRequest
    )


@given(
    st.sampled_from(PROTOCOLS),
    st.sampled_from(["BootNotification", "MeterValues", "TransactionEvent", "Nope"]),
    st.dictionaries(
        st.sampled_from(["reason", "meterValue", "connectorId", "chargingStation", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.sampled_from(["timestamp", "sampledValue", "value"]), inner)
            ),
            max_leaves=8,
        ),
    ),
)
def test_arbitrary_payloads_raise_only_frame_errors(
    protocol: str, action: str, payload: dict[str, Any]
) -> None:
    try:
        validate_request(protocol, action, payload)
    except FrameError as exc:
        assert exc.code in ERROR_CODES


def test_error_code_spells_every_neutral_name_per_version() -> None:
    renamed_in_16 = {
        "FormatViolation": "FormationViolation",
        "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        "MessageTypeNotSupported": "ProtocolError",
        "RpcFrameworkError": "FormationViolation",
    }
    for name in ERROR_CODES:
        assert error_code(OCPP201, name) == name
        assert error_code(OCPP16, name) == renamed_in_16.get(name, name)
    # A code already spelled for 1.6 translates instead of failing.
    assert error_code(OCPP16, "FormationViolation") == "FormationViolation"
    assert error_code(OCPP201, "OccurenceConstraintViolation") == "OccurrenceConstraintViolation"
    with pytest.raises(ValueError, match="Oops"):
        error_code(OCPP16, "Oops")
    with pytest.raises(ValueError, match=r"ocpp2\.1"):
        error_code("ocpp2.1", "GenericError")


BOOT_ANSWER = {"currentTime": "2024-05-01T10:00:00Z", "interval": 300, "status": "Accepted"}


@pytest.mark.parametrize(
    ("protocol", "action", "kind", "payload", "code"),
    [
        (
            OCPP16,
            "BootNotification",
            "response",
            {**BOOT_ANSWER, "status": "Maybe"},
            "PropertyConstraintViolation",
        ),
        (
            OCPP201,
            "BootNotification",
            "response",
            {**BOOT_ANSWER, "status": "Maybe"},
            "PropertyConstraintViolation",
        ),
        (
            OCPP16,
            "RemoteStartTransaction",
            "request",
            {"idTag": "x" * 21},
            "PropertyConstraintViolation",
        ),
        (
            OCPP16,
            "BootNotification",
            "response",
            {"status": "Accepted"},
            "OccurrenceConstraintViolation",
        ),
        (OCPP16, "Reset", "request", {"type": "Hard", "when": "now"}, "FormatViolation"),
        (OCPP16, "Reset", "request", {"type": 1}, "TypeConstraintViolation"),
        (OCPP16, "Reset", "request", {"type": object()}, "TypeConstraintViolation"),
        (
            OCPP201,
            "GetVariables",
            "request",
            {"getVariableData": [{"component": {"name": "C" * 51}, "variable": {"name": "V"}}]},
            "PropertyConstraintViolation",
        ),
        (OCPP16, "TransactionEvent", "request", {}, "NotImplemented"),
        (
            OCPP16,
            "SetChargingProfile",
            "request",
            {
                "connectorId": 1,
                "csChargingProfiles": {
                    "chargingProfileId": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float("nan")}],
                    },
                },
            },
            "PropertyConstraintViolation",
        ),
    ],
)
def test_outbound_validation_refuses_invalid_payloads(
    protocol: str, action: str, kind: str, payload: dict[str, Any], code: str
) -> None:
    with pytest.raises(OutboundValidationError) as caught:
        to_wire(protocol, action, payload, kind)
    assert caught.value.code == code
    assert (caught.value.protocol, caught.value.action, caught.value.kind) == (
        protocol,
        action,
        kind,
    )
    # Our bug must never be answered to the station as if it were the station's fault.
    assert not isinstance(caught.value, OcppError)


def test_outbound_validation_checks_structs_built_by_hand() -> None:
    # msgspec does not validate on construction: to_wire must.
    answer = v16.BootNotificationResponse(
        current_time="2024-05-01T10:00:00Z", interval=300, status="Maybe"
    )
    with pytest.raises(OutboundValidationError, match=r"\$\.status"):
        to_wire(OCPP16, "BootNotification", answer, "response")


def test_outbound_payloads_come_out_in_wire_names_without_nones() -> None:
    answer = v16.BootNotificationResponse(
        current_time="2024-05-01T10:00:00Z", interval=300, status="Accepted"
    )
    assert to_wire(OCPP16, "BootNotification", answer, "response") == BOOT_ANSWER
    start = {"connectorId": None, "idTag": "04A2B3C4"}
    assert to_wire(OCPP16, "RemoteStartTransaction", start, "request") == {"idTag": "04A2B3C4"}
    nested = {
        "reason": "PowerUp",
        "chargingStation": v201.ChargingStationType(model="M", vendor_name="V"),
    }
    wire = to_wire(OCPP201, "BootNotification", nested, "request")
    assert json.loads(json.dumps(wire)) == {"reason": "PowerUp", "chargingStation": STATION_201}


def test_outbound_validation_accepts_whole_numbers_for_decimals() -> None:
    period = {"startPeriod": 0, "limit": 16}
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]},
    }
    wire = to_wire(
        OCPP16, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}, "request"
    )
    assert (
        wire["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 16
    )
