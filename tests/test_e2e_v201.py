"""End to end over real WebSockets: the ``ocpp`` package's 2.0.1 charge point against a running
ChargeLedger: provisioning through Pending, reports, authorization, transactions with broken
seqNo runs, availability, diagnostics, vendor extensions and bad input."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import websockets
from ocpp.exceptions import SecurityError
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from chargeledger.core.events import FrameLogged, Recorded
from chargeledger.core.settings import BootPolicy, Settings
from chargeledger.core.store import open_store
from chargeledger.projections import Views
from tests.conftest import on_sqlite_and_postgres
from tests.harness import (
    CallErrorsRaise,
    RunningServer,
    assert_current_time,
    chargeledger_cli,
    raw_station,
    running_server,
)
from tests.local_list_station import HeldList
from tests.polling import eventually
from tests.smart_charging_station import SmartCharging201

T = TypeVar("T")

CHARGING_STATION = {"model": "EVC201", "vendor_name": "Acme"}
NOW = "2026-11-21T10:00:00Z"


def meter(wh: float, context: str = "Sample.Periodic") -> list[dict[str, Any]]:
    """A ``meterValue`` list with one energy register reading in Wh."""
    return [
        {
            "timestamp": NOW,
            "sampledValue": [
                {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}
            ],
        }
    ]


class Station(SmartCharging201, CallErrorsRaise, ChargePoint):  # type: ignore[misc]
    """A 2.0.1 charging station that does what the CSMS asks and reports it: its variables
    live in ``variables``, each boot answer is appended to ``boots``, a remote start runs a
    transaction ``R<remoteStartId>`` on EVSE 1 until a remote stop ends it. A CALLERROR
    answering one of its CALLs raises; the answers to the CALLs it sends on its own (reports,
    remote-started transactions) are appended to ``answers``, where tests check them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.variables = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): "300",
            ("TxCtrlr", "EVConnectionTimeOut"): "30",
            ("AuthCtrlr", "Enabled"): "true",
        }
        self.boots: list[str] = []
        self.set_requests: list[Any] = []
        self.remote: dict[str, int] = {}
        """Remote-started transaction id -> next seqNo."""
        self.answers: list[Any] = []
        self.local_list = HeldList()

    @on(Action.send_local_list)
    def on_send_local_list(self, version_number: int, update_type: str, **list_: Any) -> Any:
        items = list_.get("local_authorization_list") or []
        status = self.local_list.update(version_number, update_type, items)
        return call_result.SendLocalList(status=status)

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self) -> Any:
        return call_result.GetLocalListVersion(version_number=self.local_list.version)

    async def boot(self) -> str:
        result = await self.call(
            call.BootNotification(charging_station=CHARGING_STATION, reason="PowerUp")
        )
        self.boots.append(result.status)
        return str(result.status)

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]]) -> Any:
        self.set_requests.append(set_variable_data)
        results = []
        for data in set_variable_data:
            name = (data["component"]["name"], data["variable"]["name"])
            self.variables[name] = data["attribute_value"]
            results.append(
                {
                    "attributeStatus": "Accepted",
                    "component": data["component"],
                    "variable": data["variable"],
                }
            )
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> Any:
        results = []
        for data in get_variable_data:
            value = self.variables.get((data["component"]["name"], data["variable"]["name"]))
            result = {"component": data["component"], "variable": data["variable"]}
            if value is None:
                results.append({**result, "attributeStatus": "UnknownVariable"})
            else:
                results.append({**result, "attributeStatus": "Accepted", "attributeValue": value})
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, report_base: str) -> Any:
        return call_result.GetBaseReport(status="Accepted")

    @after(Action.get_base_report)
    async def send_report(self, request_id: int, report_base: str) -> None:
        """The report in three parts: the variables, then an EVSE, then a connector."""
        data = [
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "variableAttribute": [{"value": value, "mutability": "ReadWrite"}],
                "variableCharacteristics": {"dataType": "string", "supportsMonitoring": False},
            }
            for (component, variable), value in sorted(self.variables.items())
        ]
        data.append(
            {
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "Power"},
                "variableAttribute": [{"type": "MaxSet", "value": "22000"}],
                "variableCharacteristics": {
                    "unit": "W",
                    "dataType": "decimal",
                    "maxLimit": 22000,
                    "supportsMonitoring": True,
                },
            }
        )
        data.append(
            {
                "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                "variable": {"name": "ConnectorType"},
                "variableAttribute": [{"value": "cType2", "mutability": "ReadOnly"}],
            }
        )
        parts = [data[:-2], data[-2:-1], data[-1:]]
        for seq_no, part in enumerate(parts):
            answer = await self.call(
                call.NotifyReport(
                    request_id=request_id,
                    generated_at=NOW,
                    seq_no=seq_no,
                    report_data=part,
                    tbc=seq_no < len(parts) - 1,
                )
            )
            self.answers.append(answer)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, **_: Any) -> Any:
        return call_result.TriggerMessage(status="Accepted")

    @after(Action.trigger_message)
    async def triggered(self, requested_message: str, **_: Any) -> None:
        if requested_message == "BootNotification":
            await self.boot()

    @on(Action.request_start_transaction)
    def on_request_start(self, id_token: dict[str, Any], remote_start_id: int, **_: Any) -> Any:
        return call_result.RequestStartTransaction(status="Accepted")

    @after(Action.request_start_transaction)
    async def started(self, id_token: dict[str, Any], remote_start_id: int, **_: Any) -> None:
        transaction_id = f"R{remote_start_id}"
        self.remote[transaction_id] = 1
        answer = await self.call(
            call.TransactionEvent(
                event_type="Started",
                timestamp=NOW,
                trigger_reason="RemoteStart",
                seq_no=0,
                transaction_info={
                    "transaction_id": transaction_id,
                    "remote_start_id": remote_start_id,
                    "charging_state": "Charging",
                },
                evse={"id": 1, "connector_id": 1},
                id_token=id_token,
                meter_value=meter(100, "Transaction.Begin"),
            )
        )
        self.answers.append(answer)

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id: str) -> Any:
        status = "Accepted" if transaction_id in self.remote else "Rejected"
        return call_result.RequestStopTransaction(status=status)

    @after(Action.request_stop_transaction)
    async def stopped(self, transaction_id: str) -> None:
        if transaction_id not in self.remote:
            return
        answer = await self.call(
            call.TransactionEvent(
                event_type="Ended",
                timestamp=NOW,
                trigger_reason="RemoteStop",
                seq_no=self.remote.pop(transaction_id),
                transaction_info={"transaction_id": transaction_id, "stopped_reason": "Remote"},
                meter_value=meter(1600, "Transaction.End"),
            )
        )
        self.answers.append(answer)

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> Any:
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    def on_change_availability(self, operational_status: str, **_: Any) -> Any:
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.unlock_connector)
    def on_unlock_connector(self, evse_id: int, connector_id: int) -> Any:
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.clear_cache)
    def on_clear_cache(self) -> Any:
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="Rejected")

    @on(Action.get_transaction_status)
    def on_get_transaction_status(self, **_: Any) -> Any:
        return call_result.GetTransactionStatus(messages_in_queue=False, ongoing_indicator=True)

    @on(Action.reserve_now)
    def on_reserve_now(self, **_: Any) -> Any:
        return call_result.ReserveNow(status="Accepted")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int) -> Any:
        return call_result.CancelReservation(status="Accepted")


async def connect(
    server: RunningServer, name: str, station_type: type[Station] = Station
) -> tuple[Station, Any, asyncio.Task[None]]:
    ws = await websockets.connect(f"{server.url}/{name}", subprotocols=["ocpp2.0.1"])
    station = station_type(name, ws)
    task = asyncio.create_task(station.start())
    return station, ws, task


async def _read(fn: Callable[[], T]) -> T:
    return fn()


async def until(server: RunningServer, probe: Callable[[], T | None], what: str) -> T:
    """Poll ``probe`` on the server's loop (where the views live) until it gives a value."""
    return await eventually(lambda: server.arun(_read, probe), what=what)


def recorded(store: str) -> list[Recorded]:
    opened = open_store(store)
    try:
        return list(opened.iter_all())
    finally:
        opened.close()


def csms_calls(records: list[Recorded], station: str) -> list[tuple[str, str]]:
    """(direction, action) of every CALL in the station's frames, in log order."""
    calls = []
    for record in records:
        event = record.event
        if isinstance(event, FrameLogged) and event.station == station:
            frame = json.loads(event.text)
            if frame[0] == 2:
                calls.append((event.direction, frame[2]))
    return calls


@pytest.fixture
def store(server_store: str) -> str:
    """SQLite; PostgreSQL too where a test is marked ``@on_sqlite_and_postgres``."""
    return server_store


@on_sqlite_and_postgres
def test_boot_pending_then_configured_then_accepted(store: str) -> None:
    settings = Settings(
        port=0,
        store=store,
        boot=BootPolicy(status="Pending", retry_interval=7),
        plugins={
            "provisioning": {
                "pending_configuration": {
                    "HeartbeatInterval": "60",
                    "TxCtrlr.EVConnectionTimeOut": "90",
                }
            }
        },
    )

    since = time.time()

    async def scenario(server: RunningServer) -> tuple[Station, Any]:
        cp, ws, task = await connect(server, "CP-P")
        try:
            assert await cp.boot() == "Pending"
            with pytest.raises(SecurityError):  # a Pending station is not usable
                await cp.call(call.Heartbeat(), suppress=False)
            # The CSMS configures the station, then triggers its boot.
            await eventually(lambda: len(cp.boots) == 2, what="the triggered second boot")
            return cp, await cp.call(call.Heartbeat())
        finally:
            task.cancel()
            await ws.close()

    with running_server(settings) as server:
        cp, heartbeat = asyncio.run(scenario(server))
        assert server.csms is not None
        state = server.csms.views.stations.get("CP-P")
        model = server.csms.views.device_model.get("CP-P")
    assert cp.boots == ["Pending", "Accepted"]
    assert cp.variables[("OCPPCommCtrlr", "HeartbeatInterval")] == "60"
    assert cp.variables[("TxCtrlr", "EVConnectionTimeOut")] == "90"
    assert len(cp.set_requests) == 1, "one SetVariables with both variables"
    assert_current_time(heartbeat.current_time, since)
    assert state is not None and state.accepted and state.boot is not None
    assert state.boot.interval == 300
    assert model is not None and model.value("OCPPCommCtrlr.HeartbeatInterval") == "60"
    # Every step is in the log, in order (the station's heartbeats run concurrently).
    calls = [c for c in csms_calls(recorded(store), "CP-P") if c[1] != "Heartbeat"]
    assert calls == [
        ("in", "BootNotification"),
        ("out", "SetVariables"),
        ("out", "TriggerMessage"),
        ("in", "BootNotification"),
    ]


@on_sqlite_and_postgres
def test_full_base_report_is_assembled(store: str) -> None:
    async def scenario(server: RunningServer) -> tuple[Any, list[Any]]:
        cp, ws, task = await connect(server, "CP-R")
        try:
            assert await cp.boot() == "Accepted"
            assert server.csms is not None
            result = await server.arun(server.csms.get_base_report, "CP-R", "FullInventory")
            # The use case returns once the last part is committed; its answer may still be
            # on its way to the station.
            await eventually(lambda: len(cp.answers) >= 3, what="the last part's answer")
            return result, cp.answers
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=store)) as server:
        result, answers = asyncio.run(scenario(server))
        assert server.csms is not None
        model = server.csms.views.device_model.get("CP-R")
    assert result.accepted and result.status == "Accepted"
    assert answers == [call_result.NotifyReport()] * 3, "each part of the report acknowledged"
    assert result.values["OCPPCommCtrlr.HeartbeatInterval"] == "300"
    assert model is not None
    [report] = model.reports.values()
    assert (report.base, report.seq_nos, report.last_seq_no, report.complete) == (
        "FullInventory",
        [0, 1, 2],
        2,
        True,
    )
    assert sorted(model.variables) == [
        "AuthCtrlr.Enabled",
        "Connector@1/1.ConnectorType",
        "EVSE@1.Power",
        "OCPPCommCtrlr.HeartbeatInterval",
        "TxCtrlr.EVConnectionTimeOut",
    ]
    power = model.variables["EVSE@1.Power"]
    assert power.attributes["MaxSet"].value == "22000"
    assert power.characteristics is not None and power.characteristics.max_limit == 22000.0
    assert model.variables["Connector@1/1.ConnectorType"].attributes["Actual"].mutability == (
        "ReadOnly"
    )


@on_sqlite_and_postgres
def test_authorized_transactions_with_broken_seq_no_runs(store: str) -> None:
    settings = Settings(
        port=0,
        store=store,
        plugins={
            "authorization": {
                "blocked": ["STOLEN"],
                "groups": {"RFID-1": "FLEET-A"},
                "cache_expiry_seconds": 3600,
            }
        },
    )

    async def scenario(server: RunningServer) -> dict[str, Any]:
        cp, ws, task = await connect(server, "CP-T")
        facts: dict[str, Any] = {}
        try:
            assert await cp.boot() == "Accepted"
            facts["authorize"] = {
                kind: await cp.call(
                    call.Authorize(
                        id_token={
                            "id_token": "" if kind == "NoAuthorization" else "RFID-1",
                            "type": kind,
                        }
                    )
                )
                for kind in (
                    "Central",
                    "eMAID",
                    "ISO14443",
                    "ISO15693",
                    "KeyCode",
                    "Local",
                    "MacAddress",
                    "NoAuthorization",
                )
            }
            facts["blocked"] = await cp.call(
                call.Authorize(id_token={"id_token": "STOLEN", "type": "ISO14443"})
            )
            facts["status_notifications"] = [
                await cp.call(
                    call.StatusNotification(
                        timestamp=NOW, connector_status="Occupied", evse_id=evse, connector_id=evse
                    )
                )
                for evse in (0, 1)
            ]
            token = {"id_token": "RFID-1", "type": "ISO14443"}
            events = [
                ("Started", 0, "Authorized", meter(1000, "Transaction.Begin"), token),
                ("Updated", 1, "MeterValuePeriodic", meter(2500), None),
                ("Ended", 2, "StopAuthorized", meter(4000, "Transaction.End"), token),
            ]
            for event_type, seq_no, reason, values, id_token in events:
                answer = await cp.call(
                    call.TransactionEvent(
                        event_type=event_type,
                        timestamp=NOW,
                        trigger_reason=reason,
                        seq_no=seq_no,
                        transaction_info={"transaction_id": "TX-OK", "charging_state": "Charging"},
                        evse={"id": 1, "connector_id": 1} if seq_no == 0 else None,
                        id_token=id_token,
                        meter_value=values,
                    )
                )
                facts.setdefault("answers", []).append(answer)
            # A second transaction: seqNo 1 twice (a retransmission under a new message id),
            # seqNo 2 never arrives.
            for event_type, seq_no, wh in (
                ("Started", 0, 5000),
                ("Updated", 1, 5500),
                ("Updated", 1, 5500),
                ("Ended", 3, 6000),
            ):
                broken = await cp.call(
                    call.TransactionEvent(
                        event_type=event_type,
                        timestamp=NOW,
                        trigger_reason="MeterValuePeriodic",
                        seq_no=seq_no,
                        transaction_info={"transaction_id": "TX-BROKEN"},
                        offline=event_type == "Ended",
                        meter_value=meter(wh),
                    )
                )
                facts.setdefault("broken_answers", []).append(broken)
            facts["meter_values"] = await cp.call(call.MeterValues(evse_id=1, meter_value=meter(7)))
            facts["notify_event"] = await cp.call(
                call.NotifyEvent(
                    generated_at=NOW,
                    seq_no=0,
                    event_data=[
                        {
                            "event_id": 1,
                            "timestamp": NOW,
                            "trigger": "Delta",
                            "actual_value": "true",
                            "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1}},
                            "variable": {"name": "Problem"},
                            "event_notification_type": "HardWiredNotification",
                        }
                    ],
                )
            )
            assert server.csms is not None
            facts["status"] = await server.arun(
                server.csms.get_transaction_status, "CP-T", "TX-BROKEN"
            )
            return facts
        finally:
            task.cancel()
            await ws.close()

    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))
        assert server.csms is not None
        views = server.csms.views
        station = views.stations.get("CP-T")
        problems = views.problems.get("CP-T")
        broken = views.transactions.get("TX-BROKEN", "CP-T")

    for kind, answer in facts["authorize"].items():
        info = answer.id_token_info
        assert info["status"] == "Accepted", kind
        if kind != "NoAuthorization":
            assert info["group_id_token"] == {"id_token": "FLEET-A", "type": "Central"}
            assert info["cache_expiry_date_time"].endswith("Z")
    assert facts["blocked"].id_token_info["status"] == "Blocked"
    assert facts["answers"][0].id_token_info["status"] == "Accepted"
    assert facts["answers"][1] == call_result.TransactionEvent(), "no token, no idTokenInfo"
    assert facts["answers"][2].id_token_info["status"] == "Accepted"
    # A duplicated seqNo, a gap and an offline end are all acknowledged (the projection
    # records what they mean), so the station never resends them.
    assert facts["broken_answers"] == [call_result.TransactionEvent()] * 4
    assert facts["status_notifications"] == [call_result.StatusNotification()] * 2
    assert facts["meter_values"] == call_result.MeterValues()
    assert facts["notify_event"] == call_result.NotifyEvent()
    assert facts["status"].status == "NoMessagesInQueue"
    assert broken is not None and broken.messages_in_queue is False and broken.offline
    assert station is not None and station.evses[0][0].status == "Occupied"
    assert station.evses[1][1].status == "Occupied"
    assert problems is not None and list(problems.active) == [
        "ConnectorPlugRetentionLock@1.Problem"
    ]

    rows = {row["transaction_id"]: row for row in chargeledger_cli("transactions", store=store)}
    ok, bad = rows["TX-OK"], rows["TX-BROKEN"]
    assert (ok["station"], ok["status"], ok["energy_wh"], ok["completeness"]) == (
        "CP-T",
        "ended",
        3000,
        "complete",
    )
    assert (ok["evse_id"], ok["connector_id"], ok["id_tag"], ok["id_token_type"]) == (
        1,
        1,
        "RFID-1",
        "ISO14443",
    )
    assert ok["trigger_reasons"] == ["Authorized", "MeterValuePeriodic", "StopAuthorized"]
    assert (bad["status"], bad["energy_wh"], bad["completeness"]) == ("ended", 1000, "incomplete")
    assert bad["seq_nos"] == [0, 1, 3] and bad["seq_no_gaps"] == [[2, 2]]
    assert [a["kind"] for a in bad["anomalies"]] == ["seq_no_duplicate", "seq_no_gap"]


@pytest.fixture
def acme_block() -> Iterator[None]:
    examples = str(Path(__file__).resolve().parents[1] / "docs" / "examples")
    sys.path.insert(0, examples)
    try:
        yield
    finally:
        sys.path.remove(examples)
        sys.modules.pop("acme_block", None)


def test_vendor_data_transfer_plugin_answers_201_stations(store: str, acme_block: None) -> None:
    settings = Settings(port=0, store=store, plugin_modules=["acme_block"])

    async def scenario(server: RunningServer) -> tuple[Any, Any]:
        cp, ws, task = await connect(server, "CP-V")
        try:
            assert await cp.boot() == "Accepted"
            ours = await cp.call(call.DataTransfer(vendor_id="com.acme.display", data="hi"))
            theirs = await cp.call(call.DataTransfer(vendor_id="org.other", message_id="m"))
            return ours, theirs
        finally:
            task.cancel()
            await ws.close()

    with running_server(settings) as server:
        ours, theirs = asyncio.run(scenario(server))
    assert (ours.status, ours.data) == ("Accepted", "shown")
    assert theirs.status == "UnknownVendorId", "unknown vendor rejected per spec"


BOOT_201 = (
    '[2,"b","BootNotification",{"reason":"PowerUp",'
    '"chargingStation":{"model":"M","vendorName":"V"}}]'
)
BAD_FRAMES = [
    ("this is not json", [4, "-1", "RpcFrameworkError"]),
    ('[9,"m1","Heartbeat",{}]', [4, "m1", "MessageTypeNotSupported"]),
    ('[2,"m2","NoSuchAction",{}]', [4, "m2", "NotImplemented"]),
    ('[2,"m3","StartTransaction",{}]', [4, "m3", "NotImplemented"]),
    (
        '[2,"m4","Authorize",{"idToken":{"idToken":42,"type":"ISO14443"}}]',
        [4, "m4", "TypeConstraintViolation"],
    ),
    ('[2,"m5","Authorize",{}]', [4, "m5", "OccurrenceConstraintViolation"]),
    (
        '[2,"m6","Authorize",{"idToken":{"idToken":"T","type":"Bogus"}}]',
        [4, "m6", "PropertyConstraintViolation"],
    ),
    ('[2,"m7","Heartbeat",{"extra":1}]', [4, "m7", "FormatViolation"]),
    ('[2,"m8","Heartbeat",{}]', [3, "m8"]),
    # A different CALL reusing an answered message id: a sequencing violation.
    ('[2,"m8","Authorize",{"idToken":{"idToken":"T","type":"Local"}}]', [4, "m8", "ProtocolError"]),
    (
        '[2,"m9","TransactionEvent",{"eventType":"Begun","timestamp":"t","triggerReason":'
        '"Authorized","seqNo":0,"transactionInfo":{"transactionId":"X"}}]',
        [4, "m9", "PropertyConstraintViolation"],
    ),
]


@on_sqlite_and_postgres
def test_bad_input_gets_the_201_error_codes_and_is_recorded(store: str) -> None:
    async def scenario(server: RunningServer) -> tuple[list[Any], Any]:
        unbooted = await raw_station(server.url, "RAW-0", ["ocpp2.0.1"])
        try:
            await unbooted.send('[2,"h","Heartbeat",{}]')
            before_boot = json.loads(await unbooted.recv())
        finally:
            await unbooted.close()
        ws = await raw_station(server.url, "RAW-2", ["ocpp2.0.1"])
        answers = []
        try:
            await ws.send(BOOT_201)
            assert json.loads(await ws.recv())[2]["status"] == "Accepted"
            for frame, _ in BAD_FRAMES:
                await ws.send(frame)
                answers.append(json.loads(await ws.recv()))
        finally:
            await ws.close()
        return answers, before_boot

    with running_server(Settings(port=0, store=store)) as server:
        answers, before_boot = asyncio.run(scenario(server))
    assert before_boot[:3] == [4, "h", "SecurityError"]
    for (frame, expected), answer in zip(BAD_FRAMES, answers, strict=True):
        assert answer[: len(expected)] == expected, frame
    texts = {
        record.event.text
        for record in recorded(store)
        if isinstance(record.event, FrameLogged) and record.event.station == "RAW-2"
    }
    for frame, _ in BAD_FRAMES:
        assert frame in texts, f"{frame} is in the log verbatim"
    views = Views.replay(recorded(store))
    assert views.transactions.all() == [], "an invalid TransactionEvent changes nothing"
