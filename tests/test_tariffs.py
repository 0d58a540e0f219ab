"""Tariffs and cost end to end (docs/tariffs.md): the ``ocpp`` package's 2.0.1 charging
station gets the price before charging, the running and final ``totalCost`` and
``CostUpdated``; the CDRs carry the cost; re-rating with another tariff (CLI and API)
reports the differences and records nothing; a 1.6 charge point enabled for California
Pricing gets ``RunningCost`` / ``FinalCost`` DataTransfers, one not enabled gets none; the
tariffs CLI through the API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from chargeledger.core.commands import SendCall, StartTimer
from chargeledger.core.events import (
    CommandRequested,
    FrameLogged,
    Recorded,
    TariffAssigned,
    TariffDefined,
    TimerFired,
    TimerStarted,
)
from chargeledger.core.http.keys import new_key
from chargeledger.core.settings import Settings
from chargeledger.core.tariff import Tariff
from chargeledger.core.tokens import TokenRequest
from chargeledger.plugins import tariffs
from chargeledger.projections import Views
from chargeledger.projections.cost import price_text
from tests import test_e2e_v16, test_e2e_v201
from tests.conftest import on_sqlite_and_postgres
from tests.harness import RunningServer, running_server
from tests.polling import eventually
from tests.test_cost import defined
from tests.test_e2e_v201 import recorded, until
from tests.test_http_api import ROLES, Api, api_settings
from tests.test_projections import Log

__all__: list[str] = []

STANDARD = {
    "currency": "EUR",
    "energy_per_kwh": "0.30",
    "time_per_hour": "0.60",
    "parking_per_hour": "1.20",
    "session_fee": "1.00",
    "tax_rate": "0.19",
}
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
"""The transactions' start, by the stations' clocks (an hour ago: the timers firing now
price the time since)."""


def stamp(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def energy(wh: int, minutes: float) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": stamp(minutes),
            "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}],
        }
    ]


class Station201(test_e2e_v201.Station):
    """The 2.0.1 test station, remembering the CostUpdated it gets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.costs: list[tuple[str, float]] = []

    @on(Action.cost_updated)
    def on_cost_updated(self, total_cost: float, transaction_id: str) -> Any:
        self.costs.append((transaction_id, total_cost))
        return call_result.CostUpdated()


class Station16(test_e2e_v16.Station):
    """The 1.6 test charge point, accepting and remembering the costmsg DataTransfers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[tuple[str, dict[str, Any]]] = []

    @on(Action16.data_transfer)
    def on_data_transfer(self, vendor_id: str, **rest: Any) -> Any:
        if vendor_id != "org.openchargealliance.costmsg":
            return result16.DataTransfer(status="UnknownVendorId")
        self.messages.append((rest["message_id"], json.loads(rest["data"])))
        return result16.DataTransfer(status="Accepted")


@pytest.fixture
def api(server_store: str) -> Iterator[Api]:
    keys: dict[str, str] = {role: new_key() for role in ROLES}
    options = {"tariffs": {"cost_updated_interval": 0.5}}
    with running_server(api_settings(server_store, keys, plugins=options)) as server:
        yield Api(server, keys)


def _event(kind: str, seq_no: int, minutes: float, **fields: Any) -> Any:
    info = {"transaction_id": "TX-1", **fields.pop("info", {})}
    return call.TransactionEvent(
        event_type=kind,
        timestamp=stamp(minutes),
        trigger_reason=fields.pop("trigger_reason", "MeterValuePeriodic"),
        seq_no=seq_no,
        transaction_info=info,
        evse={"id": 1, "connector_id": 1},
        **fields,
    )


def test_v201_running_and_final_cost_cost_updated_cdr_and_rerating(
    api: Api, server_store: str, tmp_path: Path
) -> None:
    token = {"id_token": "CARD-1", "type": "ISO14443"}

    async def scenario() -> dict[str, Any]:
        facts: dict[str, Any] = {}
        async with api.client("admin") as admin, api.client("read") as reader:
            defined = await admin.put("/api/tariffs/STANDARD", json=STANDARD)
            assert defined.status_code == 200, defined.text
            cheap = await admin.put("/api/tariffs/GREEN", json={**STANDARD, "energy_per_kwh": 0.5})
            assert cheap.status_code == 200, cheap.text
            assigned = await admin.post(
                "/api/tariff-assignments", json={"tariff_id": "STANDARD", "target": "default"}
            )
            assert assigned.status_code == 200, assigned.text
            cp, ws, task = await test_e2e_v201.connect(api.server, "CP-T1", Station201)
            try:
                assert await cp.boot() == "Accepted"
                authorized = await cp.call(call.Authorize(id_token=token))
                facts["authorize"] = authorized.id_token_info
                started = await cp.call(
                    _event(
                        "Started",
                        0,
                        0,
                        trigger_reason="Authorized",
                        id_token=token,
                        meter_value=energy(0, 0),
                        info={"charging_state": "Charging"},
                    )
                )
                facts["started"] = started.total_cost
                facts["started_info"] = started.id_token_info
                updated = await cp.call(_event("Updated", 1, 15, meter_value=energy(5000, 15)))
                facts["updated"] = updated.total_cost
                suspended = await cp.call(
                    _event(
                        "Updated",
                        2,
                        30,
                        meter_value=energy(10000, 30),
                        trigger_reason="ChargingStateChanged",
                        info={"charging_state": "SuspendedEV"},
                    )
                )
                facts["suspended"] = suspended.total_cost
                await eventually(lambda: cp.costs or None, what="a CostUpdated")
                ended = await cp.call(
                    _event(
                        "Ended",
                        3,
                        40,
                        meter_value=energy(10000, 40),
                        trigger_reason="EVDeparted",
                        info={"stopped_reason": "EVDisconnected"},
                    )
                )
                facts["ended"] = ended.total_cost
                facts["cost_updated"] = list(cp.costs)
            finally:
                task.cancel()
                await ws.close()
            cdrs = await reader.get("/api/billing/cdrs", params={"station": "CP-T1"})
            facts["cdrs"] = cdrs.json()["items"]
            csv_text = (await reader.get("/api/billing/cdrs.csv", params={"station": "CP-T1"})).text
            facts["csv"] = csv_text.splitlines()
            rate = await reader.get("/api/billing/rate", params={"tariff": "GREEN"})
            facts["rate"] = rate.json()
            missing = await reader.get("/api/billing/rate", params={"tariff": "NOPE"})
            facts["rate_missing"] = missing.status_code
        return facts

    facts = asyncio.run(scenario())
    standard = Tariff(
        id="STANDARD", **{k: Decimal(v) if k != "currency" else v for k, v in STANDARD.items()}
    )
    message = facts["authorize"]["personal_message"]
    assert message == {"format": "UTF8", "content": price_text(standard)}
    assert facts["started_info"]["personal_message"] == message
    # Started: the session fee and its tax; 15 min, 5 kWh: 1.50 + 0.15 + 1.00 = 2.65 + 0.50;
    # 30 min, 10 kWh: 3.00 + 0.30 + 1.00 = 4.30 + 0.82; Ended after 10 min idle: + 0.20 parking.
    assert facts["started"] == 1.19
    assert facts["updated"] == 3.15
    assert facts["suspended"] == 5.12
    assert facts["ended"] == 5.36
    # Each CostUpdated carries the cost up to its timer's due time, as the log recomputes it.
    assert facts["cost_updated"] and all(tx == "TX-1" for tx, _ in facts["cost_updated"])
    records = recorded(server_store)
    names = {r.event.name for r in records if isinstance(r.event, TimerStarted)}
    assert names == {"cost:CP-T1:TX-1"}
    expected, requested, sent, views = [], [], [], Views()
    for record in records:
        views.apply(record)
        event = record.event
        if isinstance(event, TimerFired):
            transaction = views.transactions.get("TX-1", "CP-T1")
            assert transaction is not None
            if transaction.status == "active":
                due = datetime.fromtimestamp(event.due, UTC)
                found = views.metering.cost(transaction, until=due)
                assert found is not None
                expected.append(float(found.total))
        elif isinstance(event, CommandRequested):
            assert (event.key, event.command) == ("plugins", "CostUpdated")
            requested.append(event.payload["totalCost"])
        elif isinstance(event, FrameLogged) and event.direction == "out":
            frame = json.loads(event.text)
            if frame[0] == 2 and frame[2] == "CostUpdated":
                sent.append(frame[3]["totalCost"])
    # One CostUpdated asked for per timer fired while the transaction ran; each one sent
    # (a last one may find the station gone) is what the station got.
    got = [total for _, total in facts["cost_updated"]]
    assert requested == expected
    assert got and sent[: len(got)] == got and sent == requested[: len(sent)]
    assert all(total >= 1.19 for total in sent)
    # The CDR: the same final total, broken down.
    (cdr,) = facts["cdrs"]
    assert (cdr["tariff_id"], cdr["currency"], cdr["cost_total"]) == ("STANDARD", "EUR", "5.36")
    breakdown = [
        cdr[f"cost_{line}"] for line in ("energy", "time", "parking", "session_fee", "tax")
    ]
    assert breakdown == ["3.00", "0.30", "0.20", "1.00", "0.86"]
    header = facts["csv"][0].split(",")
    row = dict(zip(header, facts["csv"][1].split(","), strict=True))
    assert (row["tariff_id"], row["cost_net"], row["cost_total"]) == ("STANDARD", "4.50", "5.36")
    # Re-rating with GREEN (0.50 EUR/kWh): 5.00 + 0.30 + 0.20 + 1.00 = 6.50 + 1.24 tax.
    (item,) = facts["rate"]["items"]
    assert (item["total"], item["new_total"], item["difference"]) == ("5.36", "7.74", "2.38")
    assert facts["rate"]["summary"]["difference"] == "2.38"
    assert facts["rate_missing"] == 404
    # The CLI re-rates from the store with a tariff file, and nothing is recorded (once the
    # server has recorded the close and the last timer).
    asyncio.run(until(api.server, lambda: _quiet(api, "CP-T1"), "the server done"))
    before = len(recorded(server_store))
    tariff_file = tmp_path / "corrected.json"
    tariff_file.write_text(json.dumps({"id": "FIX", **STANDARD, "session_fee": "0"}))
    rated = _run(
        "rate",
        "--tariff",
        str(tariff_file),
        "--from",
        stamp(-60),
        "--store",
        server_store,
        "--json",
    )
    assert rated.returncode == 0, rated.stderr
    (line,) = [json.loads(text) for text in rated.stdout.splitlines()]
    assert (line["new_tariff_id"], line["new_total"], line["difference"]) == (
        "FIX",
        "4.17",
        "-1.19",
    )
    assert json.loads(rated.stderr.splitlines()[-1])["changed"] == 1
    text = _run("rate", "--tariff", "GREEN", "--store", server_store)
    assert text.returncode == 0 and "1 transaction(s), 1 changed: 5.36 -> 7.74 EUR" in text.stdout
    none = _run("rate", "--tariff", "GREEN", "--from", stamp(24 * 60), "--store", server_store)
    assert "0 transaction(s)" in none.stdout
    unknown = _run("rate", "--tariff", "NOPE", "--store", server_store)
    assert unknown.returncode == 2 and "neither defined nor a file" in unknown.stderr
    assert len(recorded(server_store)) == before
    # The answers were decided from the log alone: today's plugins answer every CALL alike.
    what_if = _run("replay", "--what-if", "--store", server_store)
    assert what_if.returncode == 0, what_if.stdout + what_if.stderr
    assert "re-decided 6 station CALLs" in what_if.stdout  # boot, Authorize, 4 events
    assert "0 answered differently today" in what_if.stdout


@on_sqlite_and_postgres
def test_v16_costmsg_only_where_enabled(server_store: str) -> None:
    options = {"tariffs": {"cost_updated_interval": 0.3, "costmsg_stations": ["CP-C1"]}}
    settings = Settings(port=0, store=server_store, plugins=options)
    tariff = Tariff(
        id="T16", currency="USD", energy_per_kwh=Decimal("0.40"), tax_rate=Decimal("0.10")
    )

    async def scenario(server: RunningServer) -> dict[str, Any]:
        csms = server.csms
        assert csms is not None
        await server.arun(csms.define_tariff, tariff)
        await server.arun(csms.assign_tariff, "T16", "default")
        facts: dict[str, Any] = {}
        for name in ("CP-C1", "CP-C2"):
            ws = await websockets.connect(f"{server.url}/{name}", subprotocols=["ocpp1.6"])
            cp = Station16(name, ws)
            task = asyncio.create_task(cp.start())
            try:
                await cp.call(
                    call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                start = await cp.call(
                    call16.StartTransaction(
                        connector_id=1, id_tag="TAG", meter_start=1000, timestamp=stamp(0)
                    )
                )
                transaction_id = start.transaction_id
                await cp.call(
                    call16.MeterValues(
                        connector_id=1,
                        transaction_id=transaction_id,
                        meter_value=[{"timestamp": stamp(20), "sampledValue": [{"value": "6000"}]}],
                    )
                )
                if name == "CP-C1":
                    await eventually(
                        lambda cp=cp: _running(cp.messages, 6000) or None,
                        what="a RunningCost after the meter values",
                    )
                await cp.call(
                    call16.StopTransaction(
                        meter_stop=11000, timestamp=stamp(30), transaction_id=transaction_id
                    )
                )
                if name == "CP-C1":
                    await eventually(
                        lambda cp=cp: [m for m in cp.messages if m[0] == "FinalCost"] or None,
                        what="the FinalCost",
                    )
                facts[name] = (transaction_id, list(cp.messages))
            finally:
                task.cancel()
                await ws.close()
        return facts

    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))
    transaction_id, messages = facts["CP-C1"]
    running = _running(messages, 6000)
    assert running[0]["transactionId"] == transaction_id
    assert running[0]["meterValue"] == 6000 and running[0]["state"] == "Charging"
    assert running[0]["cost"] == 2.2  # 5 kWh x 0.40 + 10 % tax
    assert running[0]["chargingPrice"] == {"kWhPrice": 0.4, "hourPrice": 0, "flatFee": 0}
    (final,) = [data for kind, data in messages if kind == "FinalCost"]
    assert (final["transactionId"], final["cost"]) == (transaction_id, 4.4)
    assert final["priceText"].startswith("4.40 USD (10.000 kWh)")
    assert facts["CP-C2"][1] == []
    records = recorded(server_store)
    timers = {r.event.name for r in records if isinstance(r.event, TimerStarted)}
    assert timers == {f"cost:CP-C1:{transaction_id}"}
    assert [
        type(r.event) for r in records if isinstance(r.event, TariffDefined | TariffAssigned)
    ] == [
        TariffDefined,
        TariffAssigned,
    ]


def _quiet(api: Api, station: str) -> bool | None:
    assert api.server.csms is not None
    views = api.server.csms.views
    state = views.stations.get(station)
    return (state is not None and not state.connected and not views.timers.pending()) or None


def _running(messages: list[tuple[str, dict[str, Any]]], meter_wh: int) -> list[dict[str, Any]]:
    return [
        data for kind, data in messages if kind == "RunningCost" and data["meterValue"] == meter_wh
    ]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        timeout=60,
    )


def test_tariffs_cli_through_the_api(api: Api, tmp_path: Path, server_store: str) -> None:
    env = {"CHARGELEDGER_API_URL": api.base, "CHARGELEDGER_API_KEY": api.keys["admin"]}
    added = _run(
        "tariffs", "add", "NIGHT", "--currency", "EUR", "--energy", "0.25",
        "--band", "Mon-Fri 22:00-06:00 energy=0.18 parking=0",
        "--band", "Sat,Sun 00:00-24:00 energy=0.20",
        "--tax-rate", "0.19", "--timezone", "Europe/Berlin", "--json", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    tariff = json.loads(added.stdout)["tariff"]
    assert tariff["bands"][0]["days"] == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert (tariff["bands"][0]["energy_per_kwh"], tariff["bands"][1]["days"]) == (
        "0.18",
        ["Sat", "Sun"],
    )
    tariff_file = tmp_path / "standard.json"
    tariff_file.write_text(json.dumps(STANDARD))
    assert _run("tariffs", "add", "STANDARD", "--file", str(tariff_file), env=env).returncode == 0
    for bad, message in (
        (["add", "X", "--currency", "euro"], "ISO 4217"),
        (["add", "X", "--currency", "EUR", "--band", "Mon-Fri 8-20"], "band"),
        (["assign", "NIGHT", "planet:mars"], "assignment target"),
        (["assign", "NOPE", "default"], "not defined"),
        (["remove", "NOPE"], "404"),
    ):
        failed = _run("tariffs", *bad, env=env)
        assert failed.returncode == 2 and message in failed.stderr, (bad, failed.stderr)
    assert (
        _run("tariffs", "assign", "NIGHT", "station:CP-9", "--group", "VANS", env=env).returncode
        == 0
    )
    assert _run("tariffs", "assign", "STANDARD", "default", env=env).returncode == 0
    reader = {**env, "CHARGELEDGER_API_KEY": api.keys["read"]}
    denied = _run("tariffs", "add", "Y", "--currency", "EUR", env=reader)
    assert denied.returncode == 2 and "403" in denied.stderr
    listed = _run("tariffs", "list", "--json", env=reader)
    assert [json.loads(line)["tariff"]["id"] for line in listed.stdout.splitlines()] == [
        "NIGHT",
        "STANDARD",
    ]
    shown = _run("tariffs", "show", "NIGHT", env=reader)
    assert shown.returncode == 0 and shown.stdout.startswith("NIGHT")
    assignments = _run("tariffs", "assignments", "--json", env=reader)
    rows = [json.loads(line) for line in assignments.stdout.splitlines()]
    assert [(r["tariff_id"], r["target"], r["group"], r["key"]) for r in rows] == [
        ("NIGHT", "station:CP-9", "VANS", "admin"),
        ("STANDARD", "default", None, "admin"),
    ]
    assert (
        _run("tariffs", "unassign", "NIGHT", "station:CP-9", "--group", "VANS", env=env).returncode
        == 0
    )
    assert (
        _run("tariffs", "unassign", "NIGHT", "station:CP-9", "--group", "VANS", env=env).returncode
        == 2
    )
    assert _run("tariffs", "remove", "NIGHT", env=env).returncode == 0
    assert api.server.csms is not None
    views = api.server.csms.views
    assert [state.tariff.id for state in views.tariffs.all()] == ["STANDARD"]
    when = datetime.now(UTC)
    assert views.tariffs.resolve("CP-9", "VANS", when) == views.tariffs.resolve("CP-1", None, when)
    keys = {r.event.key for r in recorded(server_store) if isinstance(r.event, TariffDefined)}
    assert keys == {"admin"}


def test_a_token_of_a_group_sees_its_groups_tariff(server_store: str) -> None:
    """personalMessage follows the token's group; no tariff, no message and no cost."""
    settings = Settings(port=0, store=server_store)
    fleet = Tariff(id="FLEET", currency="EUR", description="Fleet rate: 0.20 EUR/kWh")

    async def scenario(server: RunningServer) -> list[Any]:
        csms = server.csms
        assert csms is not None
        await server.arun(
            csms.register_tokens,
            [TokenRequest(id_token="VAN-1", group="VANS"), TokenRequest(id_token="GUEST")],
        )
        await server.arun(csms.define_tariff, fleet)
        await server.arun(csms.assign_tariff, "FLEET", "station:CP-G", "VANS")
        cp, ws, task = await test_e2e_v201.connect(server, "CP-G")
        try:
            await cp.boot()
            answers = [
                await cp.call(call.Authorize(id_token={"id_token": name, "type": "ISO14443"}))
                for name in ("VAN-1", "GUEST")
            ]
            event = await cp.call(
                _event("Started", 0, 0, id_token={"id_token": "GUEST", "type": "ISO14443"})
            )
        finally:
            task.cancel()
            await ws.close()
        transaction = await until(
            server, lambda: csms.views.transactions.get("TX-1", "CP-G"), "the transaction"
        )
        return [*answers, event, transaction]

    with running_server(settings) as server:
        van, guest, event, transaction = asyncio.run(scenario(server))
        assert server.csms is not None
        assert server.csms.views.metering.cost(transaction) is None
    assert van.id_token_info["personal_message"]["content"] == "Fleet rate: 0.20 EUR/kWh"
    assert "personal_message" not in guest.id_token_info
    assert event.total_cost is None and "personal_message" not in event.id_token_info


def test_running_cost_stops_for_a_transaction_the_station_lost() -> None:
    """A 1.6 start never stopped, overtaken by a later start on its connector, gets no more
    RunningCost; the later one does (the react hook on a hand-built log)."""
    log = Log()
    defined(log, Tariff(id="T", currency="EUR", energy_per_kwh=Decimal("0.30")))
    log.open("CP", "ocpp1.6")
    log.start("CP", 1)
    log.start("CP", 2, timestamp="2024-05-01T11:00:00Z", meterStart=2000)
    views = log.views()
    options = {"tariffs": {"costmsg_stations": ["*"], "cost_updated_interval": 60}}
    settings = Settings(node="n1", plugins=options)
    due = datetime.fromisoformat("2024-05-01T11:30:00+00:00").timestamp()

    def fire(name: str) -> list[Any]:
        event = TimerFired(name=name, due=due, at=due)
        recorded_event = Recorded(len(log.records) + 1, f"timer:{name}", 2, event)
        return tariffs.chargeledger_react(recorded_event, None, views, settings)

    assert fire("cost:CP:1") == []
    send, again = fire("cost:CP:2")
    assert isinstance(send, SendCall) and send.payload["messageId"] == "RunningCost"
    assert json.loads(send.payload["data"])["transactionId"] == 2
    assert again == StartTimer("cost:CP:2", due + 60)
    # Not enabled for costmsg: nothing for a 1.6 station.
    plain = Settings(node="n1", plugins={"tariffs": {"cost_updated_interval": 60}})
    event = TimerFired(name="cost:CP:2", due=due, at=due)
    assert tariffs.chargeledger_react(Recorded(99, "timer:x", 2, event), None, views, plain) == []


class DisplayStation201(test_e2e_v201.Station):
    """The 2.0.1 test station with a display: it keeps what SetDisplayMessage sets and
    forgets what ClearDisplayMessage clears, in the order they came."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown: list[tuple[str, dict[str, Any] | int]] = []

    @on(Action.set_display_message)
    def on_set_display_message(self, message: dict[str, Any], **_: Any) -> Any:
        self.shown.append(("set", message))
        return call_result.SetDisplayMessage(status="Accepted")

    @on(Action.clear_display_message)
    def on_clear_display_message(self, id: int, **_: Any) -> Any:
        self.shown.append(("clear", id))
        return call_result.ClearDisplayMessage(status="Accepted")


def test_the_tariff_is_shown_on_a_201_display_before_charging(tmp_path: Path) -> None:
    """With ``display_message_id``, a 2.0.1 station shows its tariff while idle: once its boot
    is accepted, again after a tariff change, and the message is cleared when no tariff
    applies any more. Without the option (the other tests), nothing is sent."""
    standard = Tariff(id="STD", currency="EUR", energy_per_kwh=Decimal("0.30"))
    night = Tariff(
        id="NIGHT",
        currency="EUR",
        description="Night rate 0.20 EUR/kWh",
        valid_to="2099-01-01T00:00:00+00:00",
    )
    settings = Settings(
        port=0,
        store=f"sqlite:///{tmp_path / 'display.db'}",
        plugins={"tariffs": {"display_message_id": 9001}},
    )

    async def scenario(server: RunningServer) -> list[Any]:
        csms = server.csms
        assert csms is not None
        await server.arun(csms.define_tariff, standard)
        await server.arun(csms.assign_tariff, "STD", "default")
        cp, ws, task = await test_e2e_v201.connect(server, "CP-D", DisplayStation201)
        try:
            await cp.boot()
            await eventually(lambda: cp.shown or None, what="the tariff at boot")
            await server.arun(csms.define_tariff, night)
            await server.arun(csms.assign_tariff, "NIGHT", "station:CP-D")
            await eventually(lambda: len(cp.shown) >= 3 or None, what="the night tariff")
            await server.arun(csms.unassign_tariff, "NIGHT", "station:CP-D")
            await server.arun(csms.unassign_tariff, "STD", "default")
            await eventually(lambda: len(cp.shown) >= 5 or None, what="the display cleared")
        finally:
            task.cancel()
            await ws.close()
        return list(cp.shown)

    with running_server(settings) as server:
        shown = asyncio.run(scenario(server))

    def message(content: str, end: str | None = None) -> tuple[str, dict[str, Any]]:
        text = {"format": "UTF8", "content": content}
        found = {"id": 9001, "priority": "NormalCycle", "state": "Idle", "message": text}
        return ("set", found if end is None else {**found, "end_date_time": end})

    assert shown == [
        message(price_text(standard)),  # the boot
        message(price_text(standard)),  # NIGHT defined: not assigned yet
        message("Night rate 0.20 EUR/kWh", "2099-01-01T00:00:00.000Z"),  # assigned here
        message(price_text(standard)),  # NIGHT unassigned: the default again
        ("clear", 9001),  # no tariff any more
    ]
