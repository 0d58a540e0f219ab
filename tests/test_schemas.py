"""The generated payload types: fresh, complete, faithful to the wire, and named as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

from chargeledger.schemas import (
    OCPP16,
    OCPP201,
    PROTOCOLS,
    actions,
    generate,
    request_type,
    response_type,
    v16,
    v201,
)

SCHEMAS = Path(generate.__file__).resolve().parent
MODULES = {OCPP16: "v16", OCPP201: "v201"}


@pytest.mark.parametrize("version", sorted(generate.VERSIONS))
def test_generated_modules_are_not_stale(version: str) -> None:
    committed = (SCHEMAS / f"{version}.py").read_text(encoding="utf-8")
    assert generate.render(version) == committed, (
        f"schemas/{version}.py is stale: run python schemas/generate.py"
    )


def test_the_generator_does_not_import_the_generated_modules() -> None:
    # Otherwise a broken generated module would stop its own regeneration.
    check = (
        "import sys, chargeledger.schemas.generate; "
        "assert not {'chargeledger.schemas.v16', 'chargeledger.schemas.v201'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", check], check=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_action_of_the_json_schemas_has_a_request_and_a_response_type(
    protocol: str,
) -> None:
    files = {path.stem for path in (SCHEMAS / "json" / MODULES[protocol]).glob("*.json")}
    from_files = {name.removesuffix("Response").removesuffix("Request") for name in files}
    assert actions(protocol) == from_files
    for action in actions(protocol):
        request, response = request_type(protocol, action), response_type(protocol, action)
        assert request is not None and request.__name__ == f"{action}Request"
        assert response is not None and response.__name__ == f"{action}Response"


def test_action_counts_include_the_16_security_extension() -> None:
    assert len(actions(OCPP16)) == 39
    assert {"SignCertificate", "SecurityEventNotification", "ExtendedTriggerMessage"} <= actions(
        OCPP16
    )
    assert len(actions(OCPP201)) == 64


def test_unknown_action_is_none_and_unknown_protocol_is_an_error() -> None:
    assert request_type(OCPP16, "TransactionEvent") is None
    assert response_type(OCPP201, "StartTransaction") is None
    with pytest.raises(ValueError, match=r"ocpp2\.1"):
        request_type("ocpp2.1", "Heartbeat")


BOOT_16 = {
    "chargePointVendor": "VendorX",
    "chargePointModel": "SingleSocketCharger",
    "chargePointSerialNumber": "SN-0001",
    "firmwareVersion": "1.2.3",
    "meterType": "ACME",
}
METER_VALUES_16 = {
    "connectorId": 1,
    "transactionId": 2147483647,
    "meterValue": [
        {
            "timestamp": "2024-05-01T10:00:00Z",
            "sampledValue": [
                {
                    "value": "1234.5",
                    "context": "Sample.Periodic",
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "kWh",
                },
                {"value": "16.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            ],
        }
    ],
}
TRANSACTION_EVENT_201 = {
    "eventType": "Updated",
    "timestamp": "2024-05-01T10:00:00.000Z",
    "triggerReason": "MeterValuePeriodic",
    "seqNo": 3,
    "offline": True,
    "transactionInfo": {"transactionId": "f3b1c2d4-0000-4000-8000-000000000001"},
    "idToken": {"idToken": "04A2B3C4D5", "type": "ISO14443"},
    "evse": {"id": 1, "connectorId": 1},
    "meterValue": [
        {
            "timestamp": "2024-05-01T10:00:00.000Z",
            "sampledValue": [
                {
                    "value": 12.345,
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": "kWh", "multiplier": 0},
                    "signedMeterValue": {
                        "signedMeterData": "OCMF|{...}",
                        "signingMethod": "ECDSA-secp256r1-SHA256",
                        "encodingMethod": "OCMF",
                        "publicKey": "",
                    },
                }
            ],
        }
    ],
}
NOTIFY_REPORT_201 = {
    "requestId": 7,
    "generatedAt": "2024-05-01T10:00:00Z",
    "seqNo": 0,
    "tbc": True,
    "reportData": [
        {
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "HeartbeatInterval"},
            "variableAttribute": [{"type": "Actual", "value": "300", "mutability": "ReadWrite"}],
            "variableCharacteristics": {"dataType": "integer", "supportsMonitoring": False},
        },
        {
            "component": {"name": "EVSE", "evse": {"id": 1}},
            "variable": {"name": "AvailabilityState"},
            "variableAttribute": [{"value": "Available"}],
        },
    ],
}


@pytest.mark.parametrize(
    ("protocol", "action", "payload"),
    [
        (OCPP16, "BootNotification", BOOT_16),
        (OCPP16, "MeterValues", METER_VALUES_16),
        (OCPP201, "TransactionEvent", TRANSACTION_EVENT_201),
        (OCPP201, "NotifyReport", NOTIFY_REPORT_201),
    ],
)
def test_real_payloads_round_trip_with_their_wire_names(
    protocol: str, action: str, payload: dict[str, Any]
) -> None:
    payload_type = request_type(protocol, action)
    assert payload_type is not None
    typed = msgspec.json.decode(json.dumps(payload), type=payload_type)
    assert json.loads(msgspec.json.encode(typed)) == payload
    assert msgspec.to_builtins(typed) == payload


def test_attributes_are_snake_case_and_encode_as_wire_names() -> None:
    sample = msgspec.convert(METER_VALUES_16, v16.MeterValuesRequest).meter_value[0]
    assert sample.sampled_value[0].measurand == "Energy.Active.Import.Register"
    needs = v201.DCChargingParametersType(ev_max_current=32, ev_max_voltage=400, full_soc=80)
    assert msgspec.to_builtins(needs) == {"evMaxCurrent": 32, "evMaxVoltage": 400, "fullSoC": 80}
    assert generate.attribute("responderURL") == "responder_url"


def test_optional_fields_default_to_none_and_are_left_out() -> None:
    boot = v16.BootNotificationRequest(charge_point_vendor="V", charge_point_model="M")
    assert boot.firmware_version is None
    assert msgspec.json.encode(boot) == b'{"chargePointVendor":"V","chargePointModel":"M"}'


def test_definitions_shared_across_files_are_emitted_once() -> None:
    text = (SCHEMAS / "v201.py").read_text(encoding="utf-8")
    assert text.count("\nclass IdTokenType(") == 1
    assert text.count("\nIdTokenEnumType = Literal[") == 1
    # 1.6 inline objects: identical ones share the type named by the smallest path.
    assert v16.StopTransactionResponse.__annotations__["id_tag_info"] == (
        "AuthorizeResponseIdTagInfo | None"
    )


def test_vendor_extensions_in_custom_data_are_allowed() -> None:
    payload = {"customData": {"vendorId": "acme", "anything": 1}, "reason": "PowerUp"}
    payload["chargingStation"] = {"model": "M", "vendorName": "V"}
    typed = msgspec.convert(payload, v201.BootNotificationRequest)
    assert typed.custom_data is not None and typed.custom_data.vendor_id == "acme"


def _schema(definitions: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "definitions": definitions,
        "properties": properties,
    }


def test_conflicting_definitions_get_distinct_names(monkeypatch: pytest.MonkeyPatch) -> None:
    short = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 5}}}
    long = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 9}}}
    use = {"x": {"$ref": "#/definitions/ThingType"}}
    empty = {"type": "object", "properties": {}}
    schemas = {
        ("Alpha", "Request"): _schema({"ThingType": long}, use),
        ("Beta", "Request"): _schema({"ThingType": short}, use),
        ("Gamma", "Request"): _schema({"ThingType": short}, use),
        **{(action, "Response"): empty for action in ("Alpha", "Beta", "Gamma")},
    }
    text = generate.render_schemas("Test", "memory", schemas)
    # The variant two files use keeps the name; the other is named after its first user.
    assert "class ThingType(" in text and "class AlphaRequestThingType(" in text
    assert "max_length=5" in text.split("class ThingType(")[1].split("class")[0]
    assert "x: AlphaRequestThingType | None = None" in text
    # msgspec resolves the (postponed) annotations through the module, so make it a real one.
    module = ModuleType("generated_for_test")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(text, "<generated>", "exec"), module.__dict__)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"x": {"a": "toolong"}}, module.BetaRequest)
    assert msgspec.convert({"x": {"a": "toolong"}}, module.AlphaRequest)


def test_the_generator_refuses_what_it_cannot_map() -> None:
    pattern = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x$"}}}
    schemas = {("A", "Request"): pattern, ("A", "Response"): _schema({}, {})}
    with pytest.raises(generate.SchemaError, match="pattern"):
        generate.render_schemas("Test", "memory", schemas)
    with pytest.raises(generate.SchemaError, match="ARequest"):
        generate.render_schemas("Test", "memory", {("A", "Response"): _schema({}, {})})
