"""End to end over real WebSockets: the ``ocpp`` package's 1.6 charge point against a running
ChargeLedger, then the CLI reads, also after a server restart."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from chargeledger.core.errors import CallError, StationOffline
from chargeledger.core.settings import BootPolicy, Settings
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
from tests.smart_charging_station import SmartCharging16


class Station(SmartCharging16, CallErrorsRaise, ChargePoint):  # type: ignore[misc]
    """A 1.6 charge point that accepts whatever the CSMS asks of it; a CALLERROR answering
    one of its CALLs raises."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per instance: a class-level dict would carry one test's ChangeConfiguration into
        # the next.
        self.configuration = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60"}
        self.local_list = HeldList()

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str, **list_: Any) -> Any:
        items = list_.get("local_authorization_list") or []
        status = self.local_list.update(list_version, update_type, items)
        return call_result.SendLocalList(status=status)

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self) -> Any:
        return call_result.GetLocalListVersion(list_version=self.local_list.version)

    @on(Action.reset)
    def on_reset(self, type: str) -> Any:
        return call_result.Reset(status="Accepted")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        keys = [
            {"key": k, "readonly": False, "value": v}
            for k, v in self.configuration.items()
            if key is None or k in key
        ]
        unknown = [k for k in key or [] if k not in self.configuration]
        return call_result.GetConfiguration(configuration_key=keys, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> Any:
        self.configuration[key] = value
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str) -> Any:
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.clear_cache)
    def on_clear_cache(self) -> Any:
        return call_result.ClearCache(status="Accepted")

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **_: Any) -> Any:
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> Any:
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.unlock_connector)
    def on_unlock(self, connector_id: int) -> Any:
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.trigger_message)
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="Rejected")

    reserve_status = "Accepted"
    """What it answers every ReserveNow with."""

    @on(Action.reserve_now)
    def on_reserve_now(self, **_: Any) -> Any:
        return call_result.ReserveNow(status=self.reserve_status)

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int) -> Any:
        return call_result.CancelReservation(status="Accepted")


async def connect(server: RunningServer, name: str) -> tuple[Station, Any, asyncio.Task[None]]:
    ws = await websockets.connect(f"{server.url}/{name}", subprotocols=["ocpp1.6"])
    station = Station(name, ws)
    task = asyncio.create_task(station.start())
    return station, ws, task


BOOT = '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
START = {
    "connector_id": 1,
    "id_tag": "TAG-1",
    "meter_start": 1000,
    "timestamp": "2026-11-21T10:00:00Z",
}


async def charging_session(server: RunningServer) -> dict[str, Any]:
    cp, ws, task = await connect(server, "CP-1")
    facts: dict[str, Any] = {"since": time.time()}
    try:
        boot = await cp.call(
            call.BootNotification(charge_point_model="EVC5", charge_point_vendor="Acme")
        )
        facts["boot"] = boot
        facts["heartbeat"] = await cp.call(call.Heartbeat())
        facts["status_notification"] = await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing")
        )
        facts["authorize"] = await cp.call(call.Authorize(id_tag="TAG-1"))
        started = await cp.call(call.StartTransaction(**START))
        facts["start"] = started
        # The CALLRESULT was "lost": the station retransmits the same start under a new id...
        facts["start_again"] = await cp.call(call.StartTransaction(**START))
        # ... and verbatim, with the same message id.
        facts["start_verbatim"] = await cp.call(call.StartTransaction(**START), unique_id="fixed-1")
        facts["start_verbatim_2"] = await cp.call(
            call.StartTransaction(**START), unique_id="fixed-1"
        )
        tid = started.transaction_id
        facts["meter_values"] = await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tid,
                meter_value=[
                    {
                        "timestamp": "2026-11-21T10:30:00Z",
                        "sampledValue": [
                            {
                                "value": "4.5",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "kWh",
                            }
                        ],
                    }
                ],
            )
        )
        stop = dict(
            meter_stop=9000,
            timestamp="2026-11-21T11:00:00Z",
            transaction_id=tid,
            reason="Local",
            id_tag="TAG-1",
        )
        facts["stop"] = await cp.call(call.StopTransaction(**stop))
        facts["stop_again"] = await cp.call(call.StopTransaction(**stop))
        facts["stop_unknown"] = await cp.call(
            call.StopTransaction(
                meter_stop=1, timestamp="2026-11-21T11:00:00Z", transaction_id=987654
            )
        )
        facts["stop_sentinel"] = await cp.call(
            call.StopTransaction(meter_stop=1, timestamp="2026-11-21T11:00:00Z", transaction_id=-1)
        )
        facts["data_transfer"] = await cp.call(call.DataTransfer(vendor_id="com.example"))

        csms = server.csms
        assert csms is not None
        facts["reset"] = await server.arun(csms.reset, "CP-1", "soft")
        facts["get_configuration"] = await server.arun(csms.read_configuration, "CP-1")
        facts["change_configuration"] = await server.arun(
            csms.change_configuration, "CP-1", "HeartbeatInterval", "120"
        )
        facts["change_availability"] = await server.arun(
            partial(csms.change_availability, "CP-1", False, connector_id=1)
        )
        facts["clear_cache"] = await server.arun(csms.clear_cache, "CP-1")
        facts["remote_start"] = await server.arun(
            partial(csms.remote_start, "CP-1", "TAG-2", connector_id=1)
        )
        facts["remote_stop"] = await server.arun(csms.remote_stop, "CP-1", tid)
        facts["unlock"] = await server.arun(csms.unlock_connector, "CP-1", 1)
        facts["csms_data_transfer"] = await server.arun(csms.data_transfer, "CP-1", "com.example")
        facts["raw_trigger"] = await server.arun(
            csms.call, "CP-1", "TriggerMessage", {"requestedMessage": "Heartbeat"}
        )
    finally:
        task.cancel()
        await ws.close()
    return facts


@pytest.fixture
def store(server_store: str) -> str:
    """SQLite; PostgreSQL too where a test is marked ``@on_sqlite_and_postgres``."""
    return server_store


def settings(store: str) -> Settings:
    return Settings(port=0, store=store, node="test-node")


@on_sqlite_and_postgres
def test_full_session_with_independent_client(store: str) -> None:
    with running_server(settings(store)) as server:
        facts = asyncio.run(charging_session(server))

    # Every CALL was answered with a CALLRESULT (a CALLERROR raises), valid by the schema
    # (the client checks), and each answer says what it should.
    assert facts["boot"].status == "Accepted"
    assert facts["boot"].interval == 300
    assert_current_time(facts["boot"].current_time, facts["since"])
    assert_current_time(facts["heartbeat"].current_time, facts["since"])
    assert facts["status_notification"] == call_result.StatusNotification()
    assert facts["authorize"].id_tag_info == {"status": "Accepted"}
    tid = facts["start"].transaction_id
    assert 1 <= tid < 2**31
    assert facts["start"].id_tag_info == {"status": "Accepted"}
    assert facts["start_again"] == facts["start"], "retransmitted start got another answer"
    assert facts["start_verbatim"] == facts["start"]
    assert facts["start_verbatim_2"] == facts["start"]
    assert facts["meter_values"] == call_result.MeterValues()
    # Every stop is acknowledged, so the station can drop it from its queue: the second one,
    # one for a transaction we never started and one for the "no id" sentinel alike.
    assert facts["stop"] == call_result.StopTransaction(id_tag_info={"status": "Accepted"})
    assert facts["stop_again"] == facts["stop"]
    assert facts["stop_unknown"] == call_result.StopTransaction()
    assert facts["stop_sentinel"] == call_result.StopTransaction()
    assert facts["data_transfer"].status == "UnknownVendorId"
    assert facts["reset"].accepted and facts["reset"].response == {"status": "Accepted"}
    assert facts["get_configuration"].values == {
        "HeartbeatInterval": "300",
        "MeterValueSampleInterval": "60",
    }
    for use_case in ("change_configuration", "change_availability", "clear_cache"):
        assert facts[use_case].accepted, use_case
    assert facts["remote_start"].accepted and facts["remote_stop"].accepted
    assert facts["unlock"].status == "Unlocked" and facts["unlock"].accepted
    assert facts["csms_data_transfer"].status == "Rejected"
    assert facts["raw_trigger"] == {"status": "Accepted"}

    # The CLI reads, from another process, see the same story.
    transactions = chargeledger_cli("transactions", store=store)
    ours = [t for t in transactions if t["transaction_id"] == tid]
    assert len(ours) == 1, "one physical session, one transaction"
    (txn,) = ours
    assert txn["station"] == "CP-1"
    assert txn["status"] == "ended"
    assert txn["energy_wh"] == 8000
    kinds = {a["kind"] for a in txn["anomalies"]}
    assert {"start_retransmitted", "duplicate_stop"} <= kinds
    assert len(transactions) == 1, transactions

    stations = {s["station"]: s for s in chargeledger_cli("stations", store=store)}
    cp1 = stations["CP-1"]
    assert cp1["connected"] is False
    assert cp1["boot"]["status"] == "Accepted"
    assert cp1["connectors"]["1"]["status"] == "Preparing"
    assert cp1["configuration"]["HeartbeatInterval"]["value"] == "120"

    events = chargeledger_cli("events", "--station", "CP-1", store=store)
    frames = [e for e in events if e["kind"] == "FrameLogged"]
    assert all(e["event"]["station"] == "CP-1" for e in events)
    # Every frame each way is in the log verbatim, including the retransmission marker.
    assert any(e["event"]["note"] == "retransmission" for e in frames)
    assert sum(1 for e in frames if '"StartTransaction"' in e["event"]["text"]) == 4
    assert json.loads(frames[0]["event"]["text"])[2] == "BootNotification"

    # After a restart the server folds the same state from the log.
    with running_server(settings(store)) as server:
        assert server.csms is not None
        txn_after = server.csms.views.transactions.get(tid)
        assert txn_after is not None and txn_after.energy_wh == 8000
    assert chargeledger_cli("transactions", store=store) == transactions


@on_sqlite_and_postgres
def test_new_ids_are_never_reused_across_restarts(store: str) -> None:
    async def start_one(server: RunningServer, meter: int) -> int:
        cp, ws, task = await connect(server, "CP-9")
        try:
            boot = await cp.call(
                call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
            assert boot.status == "Accepted"
            result = await cp.call(call.StartTransaction(**{**START, "meter_start": meter}))
            assert result.id_tag_info == {"status": "Accepted"}
            return int(result.transaction_id)
        finally:
            task.cancel()
            await ws.close()

    ids = []
    for meter in (1, 2, 3):
        with running_server(settings(store)) as server:
            ids.append(asyncio.run(start_one(server, meter)))
    assert len(set(ids)) == 3 and ids == sorted(ids)


def test_calls_to_an_offline_station_fail_fast(store: str) -> None:
    with running_server(settings(store)) as server:
        assert server.csms is not None
        with pytest.raises(StationOffline):
            server.run(server.csms.reset, "nobody", "soft")


async def _raw(server: RunningServer, frames: list[str]) -> list[Any]:
    ws = await raw_station(server.url, "RAW-1", ["ocpp1.6"])
    answers = []
    try:
        await ws.send(BOOT)
        assert json.loads(await ws.recv())[2]["status"] == "Accepted"
        for frame in frames:
            await ws.send(frame)
            answers.append(json.loads(await ws.recv()))
    finally:
        await ws.close()
    return answers


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("this is not json", [4, "-1", "FormationViolation"]),
        ('[9,"m1","Heartbeat",{}]', [4, "m1", "ProtocolError"]),
        ('[2,"m2","NoSuchAction",{}]', [4, "m2", "NotImplemented"]),
        ('[2,"m3","Authorize",{"idTag":42}]', [4, "m3", "TypeConstraintViolation"]),
        ('[2,"m4","Authorize",{}]', [4, "m4", "OccurenceConstraintViolation"]),
        (
            '[2,"m5","StatusNotification",{"connectorId":1,"errorCode":"Error","status":"Available"}]',
            [4, "m5", "PropertyConstraintViolation"],
        ),
        ('[2,"m6","Heartbeat",{"extra":1}]', [4, "m6", "FormationViolation"]),
    ],
)
def test_bad_frames_get_the_16_error_and_are_recorded(
    store: str, frame: str, expected: list[Any]
) -> None:
    with running_server(settings(store)) as server:
        (answer,) = asyncio.run(_raw(server, [frame]))
    assert answer[:3] == expected
    events = chargeledger_cli("events", "--station", "RAW-1", store=store)
    texts = [e["event"]["text"] for e in events if e["kind"] == "FrameLogged"]
    assert frame in texts, "the bad frame is in the log verbatim"
    assert json.dumps(answer, separators=(",", ":")) in texts or any(
        json.loads(t) == answer for t in texts if t.startswith("[4")
    )


def test_call_before_boot_is_refused(store: str) -> None:
    async def scenario(server: RunningServer) -> Any:
        ws = await raw_station(server.url, "NEW-1", ["ocpp1.6"])
        try:
            await ws.send('[2,"h1","Heartbeat",{}]')
            return json.loads(await ws.recv())
        finally:
            await ws.close()

    with running_server(settings(store)) as server:
        answer = asyncio.run(scenario(server))
    assert answer[:3] == [4, "h1", "SecurityError"]


@on_sqlite_and_postgres
def test_callerror_from_station_is_raised(store: str) -> None:
    class Grumpy(Station):
        @on(Action.reset)
        def on_reset(self, type: str) -> Any:
            raise NotImplementedError  # the ocpp package answers InternalError

    async def scenario(server: RunningServer) -> Exception | None:
        ws = await websockets.connect(f"{server.url}/GRUMPY", subprotocols=["ocpp1.6"])
        cp = Grumpy("GRUMPY", ws)
        task = asyncio.create_task(cp.start())
        try:
            boot = await cp.call(
                call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
            assert boot.status == "Accepted"
            assert server.csms is not None
            try:
                await server.arun(server.csms.reset, "GRUMPY", "hard")
            except CallError as exc:
                return exc
            return None
        finally:
            task.cancel()
            await ws.close()

    with running_server(settings(store)) as server:
        error = asyncio.run(scenario(server))
    assert isinstance(error, CallError) and error.code == "InternalError"


def test_cli_reads_refuse_a_missing_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = f"sqlite:///{tmp_path / 'typo.db'}"
    completed = subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", "stations", "--store", missing],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "no store at" in completed.stderr
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    ("policy", "expected", "interval"),
    [
        (BootPolicy(status="Pending", retry_interval=7), "Pending", 7),
        (BootPolicy(status="Rejected", retry_interval=9), "Rejected", 9),
        (BootPolicy(status="Pending", accepted=["LISTED"]), "Accepted", 300),
        (BootPolicy(rejected=["LISTED"]), "Rejected", 60),
    ],
)
def test_boot_policy(store: str, policy: BootPolicy, expected: str, interval: int) -> None:
    async def scenario(server: RunningServer) -> tuple[Any, Any]:
        ws = await raw_station(server.url, "LISTED", ["ocpp1.6"])
        try:
            await ws.send(BOOT)
            boot = json.loads(await ws.recv())
            await ws.send('[2,"h","Heartbeat",{}]')
            return boot, json.loads(await ws.recv())
        finally:
            await ws.close()

    with running_server(Settings(port=0, store=store, boot=policy)) as server:
        boot, heartbeat = asyncio.run(scenario(server))
        assert server.csms is not None
        state = server.csms.views.stations.get("LISTED")
    assert boot[2]["status"] == expected and boot[2]["interval"] == interval
    assert state is not None and state.accepted == (expected == "Accepted")
    if expected == "Accepted":
        assert heartbeat[0] == 3
    else:
        assert heartbeat[:3] == [4, "h", "SecurityError"], "a station not accepted is not usable"
