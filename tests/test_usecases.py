"""The version-neutral use cases: the request each version gets, how its answer reads, and one
end-to-end test run unchanged against a 1.6 and a 2.0.1 station."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import after
from ocpp.v16 import call as call16
from ocpp.v16.enums import Action as Action16

from chargeledger.core import usecases
from chargeledger.core.errors import UnsupportedUseCase
from chargeledger.core.frames import to_wire
from chargeledger.core.settings import BootPolicy, Settings
from chargeledger.plugins import authorization, provisioning
from chargeledger.projections import Views
from chargeledger.schemas import OCPP16, OCPP201
from chargeledger.schemas.v201 import IdTokenType
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, running_server
from tests.test_projections import Log

V16, V201 = OCPP16, OCPP201

# (use case, its arguments) -> (1.6 action and payload, 2.0.1 action and payload)
REQUESTS: list[tuple[str, tuple[Any, ...], dict[str, Any], tuple[Any, ...], tuple[Any, ...]]] = [
    (
        "remote_start",
        ("TAG", 2),
        {"request_id": 9},
        ("RemoteStartTransaction", {"idTag": "TAG", "connectorId": 2}),
        (
            "RequestStartTransaction",
            {"idToken": {"idToken": "TAG", "type": "Central"}, "remoteStartId": 9, "evseId": 2},
        ),
    ),
    (
        "remote_start",
        ("TAG", None, 3),
        {"request_id": 9, "id_token_type": "eMAID"},
        ("RemoteStartTransaction", {"idTag": "TAG", "connectorId": 3}),
        (
            "RequestStartTransaction",
            {"idToken": {"idToken": "TAG", "type": "eMAID"}, "remoteStartId": 9, "evseId": 3},
        ),
    ),
    (
        "remote_stop",
        (42,),
        {},
        ("RemoteStopTransaction", {"transactionId": 42}),
        ("RequestStopTransaction", {"transactionId": "42"}),
    ),
    ("reset", ("soft",), {}, ("Reset", {"type": "Soft"}), ("Reset", {"type": "OnIdle"})),
    ("reset", ("on_idle",), {}, ("Reset", {"type": "Soft"}), ("Reset", {"type": "OnIdle"})),
    ("reset", ("hard",), {}, ("Reset", {"type": "Hard"}), ("Reset", {"type": "Immediate"})),
    (
        "change_availability",
        (False,),
        {},
        ("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}),
        ("ChangeAvailability", {"operationalStatus": "Inoperative"}),
    ),
    (
        "change_availability",
        (True, 2),
        {},
        ("ChangeAvailability", {"connectorId": 2, "type": "Operative"}),
        ("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 2}}),
    ),
    (
        "change_availability",
        (True, None, 2),
        {},
        ("ChangeAvailability", {"connectorId": 2, "type": "Operative"}),
        (
            "ChangeAvailability",
            {"operationalStatus": "Operative", "evse": {"id": 2, "connectorId": 1}},
        ),
    ),
    (
        "unlock_connector",
        (1, 2),
        {},
        ("UnlockConnector", {"connectorId": 2}),
        ("UnlockConnector", {"evseId": 2, "connectorId": 1}),
    ),
    (
        "unlock_connector",
        (3,),
        {},
        ("UnlockConnector", {"connectorId": 3}),
        ("UnlockConnector", {"evseId": 3, "connectorId": 1}),
    ),
    (
        "read_configuration",
        (["HeartbeatInterval", "SampledDataCtrlr.TxUpdatedInterval"],),
        {},
        ("GetConfiguration", {"key": ["HeartbeatInterval", "MeterValueSampleInterval"]}),
        (
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    },
                    {
                        "component": {"name": "SampledDataCtrlr"},
                        "variable": {"name": "TxUpdatedInterval"},
                    },
                ]
            },
        ),
    ),
    (
        "read_configuration",
        (),
        {"request_id": 4},
        ("GetConfiguration", {}),
        ("GetBaseReport", {"requestId": 4, "reportBase": "ConfigurationInventory"}),
    ),
    (
        "change_configuration",
        ("HeartbeatInterval", "60"),
        {},
        ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}),
        (
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                        "attributeValue": "60",
                    }
                ]
            },
        ),
    ),
    (
        "trigger_message",
        ("StatusNotification", 1),
        {},
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}),
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1}}),
    ),
    (
        "trigger_message",
        ("DiagnosticsStatusNotification",),
        {},
        ("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"}),
        ("TriggerMessage", {"requestedMessage": "LogStatusNotification"}),
    ),
    ("clear_cache", (), {}, ("ClearCache", {}), ("ClearCache", {})),
    (
        "data_transfer",
        ("com.acme", "m", "d"),
        {},
        ("DataTransfer", {"vendorId": "com.acme", "messageId": "m", "data": "d"}),
        ("DataTransfer", {"vendorId": "com.acme", "messageId": "m", "data": "d"}),
    ),
]


@pytest.mark.parametrize(("use_case", "args", "kwargs", "v16", "v201"), REQUESTS)
def test_each_version_gets_its_valid_request(
    use_case: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    v16: tuple[str, dict[str, Any]],
    v201: tuple[str, dict[str, Any]],
) -> None:
    build = getattr(usecases, use_case)
    for protocol, (action, payload) in ((V16, v16), (V201, v201)):
        request = build(protocol, *args, **kwargs)
        assert (request.action, request.payload) == (action, payload), protocol
        to_wire(protocol, request.action, request.payload, "request")  # schema-valid


def test_201_only_requests_are_valid() -> None:
    requests = [
        usecases.reset(V201, "immediate", evse_id=2),
        usecases.get_base_report(V201, 3, "SummaryInventory"),
        usecases.get_report(V201, 4, ["EVSE@1.Power", "HeartbeatInterval"], ["Problem"]),
        usecases.set_variables(V201, {"HeartbeatInterval": "60", "AuthCtrlr.Enabled": "true"}),
        usecases.get_transaction_status(V201, "TX-1"),
    ]
    for request in requests:
        to_wire(V201, request.action, request.payload, "request")
    assert requests[0].payload == {"type": "Immediate", "evseId": 2}
    assert requests[2].payload["componentVariable"][0] == {
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Power"},
    }
    status = requests[4].result({"messagesInQueue": True, "ongoingIndicator": True})
    assert (status.status, status.accepted) == ("MessagesInQueue", True)


def test_charging_limit_is_a_tx_profile_in_both_versions() -> None:
    for protocol in (V16, V201):
        request = usecases.remote_start(protocol, "TAG", 1, charging_limit_w=7400, request_id=5)
        wire = to_wire(protocol, request.action, request.payload, "request")
        profile = wire["chargingProfile"]
        assert profile["chargingProfilePurpose"] == "TxProfile"
        schedule = profile["chargingSchedule"]
        period = (schedule[0] if protocol == V201 else schedule)["chargingSchedulePeriod"][0]
        assert period == {"startPeriod": 0, "limit": 7400}


@pytest.mark.parametrize(
    ("build", "protocol"),
    [
        (partial(usecases.reset, kind="hard", evse_id=1), V16),
        (partial(usecases.remote_stop, transaction_id="abc"), V16),
        (partial(usecases.remote_start, id_token="T", evse_id=1, connector_id=2), V16),
        (partial(usecases.unlock_connector, connector_id=0), V201),
        (partial(usecases.change_configuration, key="NotAKnownKey", value="1"), V201),
        (partial(usecases.get_base_report, request_id=1), V16),
        (partial(usecases.get_report, request_id=1), V16),
        (partial(usecases.set_variables, values={"A.B": "1"}), V16),
        (usecases.get_transaction_status, V16),
    ],
)
def test_what_a_version_cannot_express_is_refused(build: Any, protocol: str) -> None:
    with pytest.raises(UnsupportedUseCase):
        build(protocol)


def test_configuration_keys_map_both_ways() -> None:
    assert usecases.key_16("OCPPCommCtrlr.HeartbeatInterval") == "HeartbeatInterval"
    assert usecases.key_16("VendorKey") == "VendorKey"
    assert usecases.variable_ref("MeterValueSampleInterval").key == (
        "SampledDataCtrlr.TxUpdatedInterval"
    )
    assert usecases.variable_ref("EVSE@2.Power[Max]").key == "EVSE@2.Power[Max]"
    for key, variable in usecases.KEYS_16_TO_201.items():
        assert usecases.key_16(variable) == key


def test_read_configuration_answers_are_keyed_as_asked() -> None:
    v16 = usecases.read_configuration(V16, ["OCPPCommCtrlr.HeartbeatInterval", "Nope"])
    result = v16.result(
        {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}],
            "unknownKey": ["Nope"],
        }
    )
    assert result.values == {"OCPPCommCtrlr.HeartbeatInterval": "60"}
    assert (result.status, result.accepted) == ("PartiallyUnknown", False)
    v201 = usecases.read_configuration(V201, ["HeartbeatInterval"])
    names = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    result = v201.result(
        {"getVariableResult": [{**names, "attributeStatus": "Accepted", "attributeValue": "60"}]}
    )
    assert (result.values, result.status, result.accepted) == (
        {"HeartbeatInterval": "60"},
        "Accepted",
        True,
    )


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["Accepted", "Accepted"], ("Accepted", True)),
        (["Accepted", "RebootRequired"], ("RebootRequired", True)),
        (["Accepted", "UnknownVariable"], ("UnknownVariable", False)),
        (["Accepted"], ("Rejected", False)),
    ],
)
def test_set_variables_status(statuses: list[str], expected: tuple[str, bool]) -> None:
    request = usecases.set_variables(V201, {"A.X": "1", "A.Y": "2"})
    results = [
        {"component": {"name": "A"}, "variable": {"name": name}, "attributeStatus": status}
        for name, status in zip("XY", statuses, strict=False)
    ]
    result = request.result({"setVariableResult": results})
    assert (result.status, result.accepted) == expected
    assert result.values == dict(zip(["A.X", "A.Y"], statuses, strict=False))


def test_configure_is_one_call_in_201_and_one_per_key_in_16() -> None:
    values = {"HeartbeatInterval": "60", "WebSocketPingInterval": "30"}
    assert [r.action for r in usecases.configure(V16, values)] == ["ChangeConfiguration"] * 2
    [request] = usecases.configure(V201, values)
    assert len(request.payload["setVariableData"]) == 2


def test_configured_value_reads_the_version_of_the_station() -> None:
    views = Views()
    assert usecases.configured_value(views, "CP", "HeartbeatInterval") is None


# -------------------------------------------------------------------------
# The same use-case calls against a 1.6 and a 2.0.1 station
# -------------------------------------------------------------------------


class Station16(test_e2e_v16.Station):
    """The 1.6 test station, which also runs the transaction a remote start asks for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.configuration = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60"}

    @after(Action16.remote_start_transaction)
    async def started(self, id_tag: str, **_: Any) -> None:
        result = await self.call(
            call16.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=100, timestamp="2026-11-21T10:00:00Z"
            )
        )
        assert result.transaction_id > 0

    @after(Action16.remote_stop_transaction)
    async def stopped(self, transaction_id: int) -> None:
        await self.call(
            call16.StopTransaction(
                transaction_id=transaction_id,
                meter_stop=1600,
                timestamp="2026-11-21T11:00:00Z",
                reason="Remote",
            )
        )


async def _connect(server: RunningServer, protocol: str, name: str) -> tuple[Any, Any, Any]:
    if protocol == V201:
        cp, ws, task = await test_e2e_v201.connect(server, name)
        await cp.boot()
        return cp, ws, task
    ws = await websockets.connect(f"{server.url}/{name}", subprotocols=[protocol])
    cp = Station16(name, ws)
    task = asyncio.create_task(cp.start())
    await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    return cp, ws, task


@pytest.mark.parametrize("protocol", [V16, V201])
def test_the_same_use_cases_work_for_either_version(tmp_path: Path, protocol: str) -> None:
    """Start a session for a token, stop it, and every other use case, with the same calls."""
    station = "CP-" + protocol
    until = test_e2e_v201.until

    async def scenario(server: RunningServer) -> dict[str, Any]:
        csms = server.csms
        assert csms is not None
        _, ws, task = await _connect(server, protocol, station)
        facts: dict[str, Any] = {}

        def use(method: str, *args: Any, **kwargs: Any) -> Any:
            return server.arun(partial(getattr(csms, method), station, *args, **kwargs))

        def latest(status: str) -> Any:
            found = [t for t in csms.views.transactions.all() if t.station == station]
            return found[-1] if found and found[-1].status == status else None

        try:
            facts["start"] = await use("remote_start", "TAG-R", evse_id=1, charging_limit_w=11000)
            started = await until(server, partial(latest, "active"), "the started transaction")
            facts["stop"] = await use("remote_stop", started.transaction_id)
            facts["transaction"] = await until(server, partial(latest, "ended"), "its end")
            facts["reset"] = await use("reset", "on_idle")
            facts["availability"] = await use("change_availability", False, evse_id=1)
            facts["unlock"] = await use("unlock_connector", 1, evse_id=1)
            facts["trigger"] = await use("trigger_message", "StatusNotification", evse_id=1)
            facts["read"] = await use("read_configuration", ["HeartbeatInterval"])
            facts["change"] = await use("change_configuration", "HeartbeatInterval", "120")
            facts["read_again"] = await use("read_configuration", ["HeartbeatInterval"])
            facts["read_all"] = await use("read_configuration")
            facts["clear_cache"] = await use("clear_cache")
            facts["data_transfer"] = await use("data_transfer", "com.example")
            return facts
        finally:
            task.cancel()
            await ws.close()

    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'uc.db'}")
    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))

    for use_case in ("start", "stop", "reset", "availability", "trigger", "change", "clear_cache"):
        assert facts[use_case].accepted and facts[use_case].protocol == protocol, use_case
    assert facts["unlock"].status == "Unlocked"
    transaction = facts["transaction"]
    assert (transaction.station, transaction.status, transaction.id_tag) == (
        station,
        "ended",
        "TAG-R",
    )
    assert (transaction.energy_wh, transaction.completeness) == (1500, "complete")
    assert facts["read"].values == {"HeartbeatInterval": "300"}
    assert facts["read_again"].values == {"HeartbeatInterval": "120"}
    all_key = "HeartbeatInterval" if protocol == V16 else "OCPPCommCtrlr.HeartbeatInterval"
    assert facts["read_all"].accepted and facts["read_all"].values[all_key] == "120"
    assert facts["data_transfer"].status == "Rejected"


# -------------------------------------------------------------------------
# Plugins that use the use cases, one decision for either version
# -------------------------------------------------------------------------


def _pending_views(protocol: str, **answered: Any) -> Views:
    """Views of a station ``CP`` whose boot was answered Pending, then the answers given."""
    log = Log()
    log.open("CP", protocol=protocol)
    boot = (
        {"chargePointVendor": "V", "chargePointModel": "M"}
        if protocol == V16
        else {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
    )
    log.call(
        "CP", "BootNotification", boot, {"status": "Pending", "currentTime": "t", "interval": 7}
    )
    for action, (request, response) in answered.items():
        log.call("CP", action, request, response, by="out")
    return log.views()


PROVISIONING = Settings(
    boot=BootPolicy(status="Pending"),
    plugins={"provisioning": {"pending_configuration": {"HeartbeatInterval": "60"}}},
)


@pytest.mark.parametrize("protocol", [V16, V201])
def test_a_pending_boot_is_configured_then_triggered(protocol: str) -> None:
    views = _pending_views(protocol)
    [configure] = provisioning.chargeledger_react(views.last_exchange, views, PROVISIONING)
    [expected] = usecases.configure(protocol, {"HeartbeatInterval": "60"})
    assert (configure.station, configure.action, configure.payload) == (
        "CP",
        expected.action,
        expected.payload,
    )
    assert provisioning.boot_status("CP", PROVISIONING, views) == "Pending"
    response = (
        {"status": "Accepted"}
        if protocol == V16
        else {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                }
            ]
        }
    )
    views = _pending_views(protocol, **{expected.action: (expected.payload, response)})
    [trigger] = provisioning.chargeledger_react(views.last_exchange, views, PROVISIONING)
    assert (trigger.action, trigger.payload) == (
        "TriggerMessage",
        {"requestedMessage": "BootNotification"},
    )
    assert provisioning.boot_status("CP", PROVISIONING, views) == "Accepted"
    views = _pending_views(protocol)
    assert provisioning.chargeledger_react(views.last_exchange, views, Settings()) == []


def test_token_answers_are_one_decision_spelled_per_version() -> None:
    settings = Settings(
        plugins={
            "authorization": {
                "known": ["A", "B", "C"],
                "blocked": ["B"],
                "expired": ["C"],
                "groups": {"A": "G"},
                "cache_expiry_seconds": 60,
            }
        }
    )
    at = 1_700_000_000.0
    assert authorization.id_tag_info("A", settings, at) == {
        "status": "Accepted",
        "expiryDate": "2023-11-14T22:14:20.000Z",
        "parentIdTag": "G",
    }
    token = IdTokenType(id_token="A", type="ISO14443")
    assert authorization.id_token_info(token, settings, at) == {
        "status": "Accepted",
        "cacheExpiryDateTime": "2023-11-14T22:14:20.000Z",
        "groupIdToken": {"idToken": "G", "type": "Central"},
    }
    for tag, v16_status, v201_status in (
        ("B", "Blocked", "Blocked"),
        ("C", "Expired", "Expired"),
        ("Z", "Invalid", "Unknown"),
    ):
        assert authorization.id_tag_info(tag, settings, at)["status"] == v16_status
        token = IdTokenType(id_token=tag, type="eMAID")
        assert authorization.id_token_info(token, settings, at)["status"] == v201_status
    free = IdTokenType(id_token="", type="NoAuthorization")
    assert authorization.id_token_info(free, settings, at) == {"status": "Accepted"}
