"""Display messages (2.0.1 O), meter readings outside (and inside) transactions, and the views
of one station: the folds pinned on hand-built logs, then end to end with the ``ocpp``
package's charge points of both versions over real WebSockets, through Python, HTTP, the
metrics and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.events import CommandRequested
from chargeledger.core.http.keys import new_key
from chargeledger.core.settings import Settings
from chargeledger.core.usecases_display import get_display_messages, set_display_message
from chargeledger.projections import Views, display_messages_json, meters_json
from chargeledger.projections.meters import sampled_values
from chargeledger.schemas import OCPP16, OCPP201
from tests import test_certificates, test_e2e_v201
from tests.conftest import on_sqlite_and_postgres
from tests.harness import RunningServer, running_server
from tests.test_e2e_v201 import connect, recorded, until
from tests.test_http_api import ROLES, api_settings
from tests.test_projections import Log, _some

# -------------------------------------------------------------------------
# The folds, on hand-built logs
# -------------------------------------------------------------------------


def _message(message_id: int, content: str = "hi", **more: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "priority": "NormalCycle",
        "message": {"format": "UTF8", "content": content},
        **more,
    }


def _set(log: Log, message_id: int, status: str = "Accepted", **more: Any) -> None:
    payload = {"message": _message(message_id, **more)}
    log.call("CP2", "SetDisplayMessage", payload, {"status": status}, by="out")


def _ids(views: Views) -> list[int]:
    return sorted(_some(views.display_messages.get("CP2")).messages)


def test_set_and_clear_fold_only_when_the_station_accepts() -> None:
    log = Log()
    log.open("CP2", "ocpp2.0.1")
    _set(log, 1, content="first")
    _set(log, 2)
    _set(log, 3, status="NotSupportedPriority")
    _set(log, 1, content="replaced", transactionId="T1", startDateTime="2026-01-01T00:00:00Z")
    log.call("CP2", "SetDisplayMessage", {"message": _message(4)}, error=True, by="out")
    views = log.views()
    assert _ids(views) == [1, 2]
    first = _some(views.display_messages.get("CP2")).messages[1]
    assert (first.content, first.transaction_id, first.start_date_time) == (
        "replaced",
        "T1",
        "2026-01-01T00:00:00Z",
    )
    log.call("CP2", "ClearDisplayMessage", {"id": 2}, {"status": "Accepted"}, by="out")
    log.call("CP2", "ClearDisplayMessage", {"id": 1}, {"status": "Rejected"}, by="out")
    assert _ids(log.views()) == [1]
    log.call("CP2", "ClearDisplayMessage", {"id": 1}, {"status": "Unknown"}, by="out")
    assert _ids(log.views()) == []


def test_a_complete_report_replaces_the_known_set_for_its_criteria() -> None:
    log = Log()
    log.open("CP2", "ocpp2.0.1")
    _set(log, 1)
    _set(log, 2, priority="InFront")
    _set(log, 3)
    request = {"requestId": 7, "priority": "NormalCycle"}
    log.call("CP2", "GetDisplayMessages", request, {"status": "Accepted"}, by="out")
    part = {"requestId": 7, "tbc": True, "messageInfo": [_message(1, "from the station")]}
    log.call("CP2", "NotifyDisplayMessages", part, {})
    log.call("CP2", "NotifyDisplayMessages", part, {})  # the same part again: counted once
    views = log.views()
    report = _some(views.display_messages.get("CP2")).reports[7]
    assert (report.seq_nos, report.complete, report.settled) == ([0], False, False)
    assert _ids(views) == [1, 2, 3], "nothing is dropped before the report is complete"
    last = {"requestId": 7, "messageInfo": [_message(9)]}
    log.call("CP2", "NotifyDisplayMessages", last, {})
    views = log.views()
    display = _some(views.display_messages.get("CP2"))
    report = display.reports[7]
    assert (report.seq_nos, report.last_seq_no, report.complete, report.settled) == (
        [0, 1],
        1,
        True,
        True,
    )
    # 3 (NormalCycle) was not reported: gone; 2 (InFront) is outside the criteria: kept.
    assert _ids(views) == [1, 2, 9]
    assert display.messages[1].content == "from the station"
    assert display.messages[9].source == "NotifyDisplayMessages"
    document = display_messages_json(display, now=0.0)
    assert [m["window"] for m in document["messages"]] == ["current"] * 3
    assert document["reports"][0]["reported"] == [1, 9]


def test_unknown_answer_empties_the_criteria_and_transactions_take_their_messages() -> None:
    log = Log()
    log.open("CP2", "ocpp2.0.1")
    _set(log, 1, transactionId="T1")
    _set(log, 2, transactionId="T2")
    _set(log, 3, state="Faulted")
    request = {"requestId": 8, "state": "Faulted"}
    log.call("CP2", "GetDisplayMessages", request, {"status": "Unknown"}, by="out")
    assert _ids(log.views()) == [1, 2]
    log.event("CP2", "T1", "Updated", 1)
    assert _ids(log.views()) == [1, 2], "only the Ended event ends the messages"
    log.event("CP2", "T1", "Ended", 2)
    assert _ids(log.views()) == [2]


def test_display_messages_of_a_16_session_are_not_folded() -> None:
    log = Log()
    log.open("CP1")
    log.call("CP1", "SetDisplayMessage", {"message": _message(1)}, {"status": "Accepted"}, by="out")
    assert log.views().display_messages.get("CP1") is None


def test_validity_windows() -> None:
    log = Log()
    log.open("CP2", "ocpp2.0.1")
    _set(log, 1, startDateTime="2030-01-01T00:00:00Z")
    _set(log, 2, endDateTime="2020-01-01T00:00:00Z")
    _set(log, 3, startDateTime="2020-01-01T00:00:00Z", endDateTime="2030-01-01T00:00:00Z")
    _set(log, 4, startDateTime="not a time")
    now = 1_800_000_000.0  # 2027
    document = display_messages_json(_some(log.views().display_messages.get("CP2")), now)
    windows = {m["id"]: m["window"] for m in document["messages"]}
    assert windows == {1: "pending", 2: "expired", 3: "current", 4: "current"}


def test_set_display_message_builder() -> None:
    request = set_display_message(
        OCPP201,
        5,
        "Tariff: 0.39 EUR/kWh",
        priority="InFront",
        language="en",
        start="2026-12-01T10:00:00+01:00",
        end="2026-12-01T12:00:00Z",
        transaction_id="T9",
    )
    assert (request.action, request.payload) == (
        "SetDisplayMessage",
        {
            "message": {
                "id": 5,
                "priority": "InFront",
                "startDateTime": "2026-12-01T09:00:00.000Z",
                "endDateTime": "2026-12-01T12:00:00.000Z",
                "transactionId": "T9",
                "message": {"format": "UTF8", "language": "en", "content": "Tariff: 0.39 EUR/kWh"},
            }
        },
    )
    with pytest.raises(InvalidUseCaseArguments, match="not after start"):
        set_display_message(OCPP201, 5, "x", start="2026-12-01T12:00:00Z", end="2026-12-01T12:00Z")
    with pytest.raises(InvalidUseCaseArguments, match="not an RFC 3339 time"):
        set_display_message(OCPP201, 5, "x", end="tomorrow")
    with pytest.raises(UnsupportedUseCase):
        set_display_message(OCPP16, 5, "x")
    assert get_display_messages(OCPP201, 3, ids=[1, 2]).payload == {"requestId": 3, "id": [1, 2]}


def _meter_values(log: Log, station: str, payload: dict[str, Any]) -> None:
    log.call(station, "MeterValues", payload, {})


def test_meter_readings_per_connector_measurand_phase_and_location() -> None:
    log = Log()
    log.open("CP1")
    clock = [
        {"value": "12.5", "unit": "kWh", "context": "Sample.Clock"},
        {"value": "230.1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
        {"value": "231", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
        {"value": "AB12", "format": "SignedData", "context": "Sample.Clock"},
        {"value": "1", "measurand": 5},  # names no measurand: skipped
    ]
    at = "2026-11-21T10:00:00Z"
    _meter_values(
        log, "CP1", {"connectorId": 0, "meterValue": [{"timestamp": at, "sampledValue": clock}]}
    )
    earlier = {"timestamp": "2026-11-21T09:00:00Z", "sampledValue": [{"value": "1"}]}
    _meter_values(log, "CP1", {"connectorId": 0, "meterValue": [earlier]})
    log.start("CP1", 1)
    log.meter("CP1", 1, {"value": "1500", "measurand": "Energy.Active.Import.Register"})
    meters = _some(log.views().meters.get("CP1"))
    document = meters_json(meters)
    rows = [
        (r["connector_id"], r["measurand"], r["phase"], r["value"], r["unit"], r["transaction_id"])
        for r in document["readings"]
    ]
    assert rows == [
        (0, "Energy.Active.Import.Register", None, 12.5, "kWh", None),  # the older one lost
        (0, "Voltage", "L1-N", 230.1, "V", None),
        (0, "Voltage", "L2-N", 231.0, "V", None),
        (1, "Energy.Active.Import.Register", None, 1500.0, "Wh", 1),
    ]
    assert document["clock_aligned_at"] == at
    # The signed register reading (an opaque blob) is read but not a number: it replaced
    # nothing above, and stays verbatim in the frame log.
    assert [(s.format, s.value) for s in sampled_values({"sampledValue": clock})] == [
        ("Raw", 12.5),
        ("Raw", 230.1),
        ("Raw", 231.0),
        ("SignedData", None),
    ]


def test_201_meter_values_and_transaction_events_fold_by_evse() -> None:
    log = Log()
    log.open("CP2", "ocpp2.0.1")
    sample = {
        "value": 7.4,
        "measurand": "Power.Active.Import",
        "unitOfMeasure": {"unit": "W", "multiplier": 3},
    }
    value = {"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sample]}
    _meter_values(log, "CP2", {"evseId": 1, "meterValue": [value]})
    log.event("CP2", "T1", "Started", 0, 100, evse={"id": 2, "connectorId": 1})
    log.event("CP2", "T1", "Updated", 1, 200)  # no evse: the transaction's
    views = log.views()
    readings = _some(views.meters.get("CP2")).readings()
    assert [(r.connector_id, r.measurand, r.value, r.transaction_id) for r in readings] == [
        (1, "Power.Active.Import", 7400.0, None),
        (2, "Energy.Active.Import.Register", 200.0, "T1"),
    ]


# -------------------------------------------------------------------------
# End to end
# -------------------------------------------------------------------------


def _matches(message: dict[str, Any], ids: Any, priority: Any, state: Any) -> bool:
    return (
        (ids is None or message["id"] in ids)
        and (priority is None or message["priority"] == priority)
        and (state is None or message.get("state") == state)
    )


class Displays:
    """A 2.0.1 test station's display: it holds what SetDisplayMessage sets (refusing HTML),
    reports what GetDisplayMessages asks for in NotifyDisplayMessages parts of one message
    each, and clears on ClearDisplayMessage. ``display`` may be changed behind the CSMS's
    back, as a station that reboots or is serviced does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.display: dict[int, dict[str, Any]] = {}
        self.display_answers: list[Any] = []

    @on(Action.set_display_message)
    def on_set_display_message(self, message: dict[str, Any], **_: Any) -> Any:
        if message["message"]["format"] == "HTML":
            return call_result.SetDisplayMessage(status="NotSupportedMessageFormat")
        self.display[message["id"]] = message
        return call_result.SetDisplayMessage(status="Accepted")

    @on(Action.get_display_messages)
    def on_get_display_messages(
        self, request_id: int, id: Any = None, priority: Any = None, state: Any = None, **_: Any
    ) -> Any:
        found = any(_matches(m, id, priority, state) for m in self.display.values())
        return call_result.GetDisplayMessages(status="Accepted" if found else "Unknown")

    @after(Action.get_display_messages)
    async def report_display(
        self, request_id: int, id: Any = None, priority: Any = None, state: Any = None, **_: Any
    ) -> None:
        matching = [m for m in self.display.values() if _matches(m, id, priority, state)]
        for index, message in enumerate(matching):
            answer = await self.call(  # type: ignore[attr-defined]
                call.NotifyDisplayMessages(
                    request_id=request_id, message_info=[message], tbc=index < len(matching) - 1
                )
            )
            self.display_answers.append(answer)

    @on(Action.clear_display_message)
    def on_clear_display_message(self, id: int, **_: Any) -> Any:
        status = "Accepted" if self.display.pop(id, None) else "Unknown"
        return call_result.ClearDisplayMessage(status=status)


class DisplayStation(Displays, test_e2e_v201.Station):
    """The 2.0.1 e2e test station with a display."""


def _display(server: RunningServer, station: str) -> dict[str, Any]:
    assert server.csms is not None
    state = server.csms.views.display_messages.get(station)
    return {} if state is None else {m.id: m for m in state.messages.values()}


@on_sqlite_and_postgres
def test_display_messages_set_read_back_and_cleared(server_store: str) -> None:
    station = "CP-D"
    preset = {"id": 9, "priority": "NormalCycle", "message": {"format": "ASCII", "content": "Hi"}}

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        csms, out = server.csms, {}
        cp, ws, task = await connect(server, station, DisplayStation)
        try:
            await cp.boot()
            cp.display[9] = preset  # set before we knew the station
            show = partial(csms.set_display_message, station)
            out["welcome"] = await server.arun(
                partial(
                    show,
                    1,
                    "Welcome",
                    priority="InFront",
                    language="en",
                    state="Idle",
                    start="2026-01-01T00:00:00Z",
                    end="2099-01-01T01:00:00+01:00",
                )
            )
            out["lost"] = await server.arun(partial(show, 2, "Lost at the next reboot"))
            out["later"] = await server.arun(partial(show, 3, "Soon", start="2099-01-01T00:00:00Z"))
            out["html"] = await server.arun(partial(show, 4, "<b>Hi</b>", format="HTML"))
            out["tariff"] = await server.arun(partial(show, 5, "0.39 EUR/kWh", transaction_id="T5"))
            del cp.display[2]  # the station forgot it
            out["get"] = await server.arun(csms.get_display_messages, station)
            await until(server, lambda: len(cp.display_answers) >= 4, "every part answered")
            out["after_get"] = _display(server, station)
            out["none"] = await server.arun(partial(csms.get_display_messages, station, [42]))
            # The transaction the tariff message belongs to ends: the message goes with it.
            for event_type, seq_no in (("Started", 0), ("Ended", 1)):
                await cp.call(
                    call.TransactionEvent(
                        event_type=event_type,
                        timestamp=test_e2e_v201.NOW,
                        trigger_reason="Authorized",
                        seq_no=seq_no,
                        transaction_info={"transaction_id": "T5"},
                        evse={"id": 1, "connector_id": 1},
                        meter_value=test_e2e_v201.meter(100 + seq_no),
                    )
                )
            out["after_end"] = _display(server, station)
            out["clear"] = await server.arun(csms.clear_display_message, station, 1)
            out["clear_unknown"] = await server.arun(csms.clear_display_message, station, 77)
            base = f"http://127.0.0.1:{csms.api_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                out["http"] = (await client.get(f"/api/stations/{station}/display-messages")).json()
                out["bad"] = await client.post(
                    f"/api/stations/{station}/commands",
                    json={"use_case": "set_display_message", "id": 6, "content": "x", "end": "?"},
                )
                out["too_long"] = await client.post(
                    f"/api/stations/{station}/commands",
                    json={"use_case": "set_display_message", "id": 6, "content": "x" * 513},
                )
            out["live"] = display_messages_json(_some(csms.views.display_messages.get(station)))
        finally:
            task.cancel()
            await ws.close()
        return out

    with running_server(Settings(port=0, store=server_store, api_port=0)) as server:
        out = asyncio.run(scenario(server))
    for accepted in ("welcome", "lost", "later", "tariff", "clear"):
        assert out[accepted].accepted and out[accepted].status == "Accepted", accepted
    assert (out["html"].accepted, out["html"].status) == (False, "NotSupportedMessageFormat")
    get = out["get"]
    assert get.accepted and get.action == "GetDisplayMessages"
    assert [m["id"] for m in get.values["messages"]] == [9, 1, 3, 5]  # as reported
    assert get.values["messages"][1]["end_date_time"] == "2099-01-01T00:00:00.000Z"
    assert sorted(out["after_get"]) == [1, 3, 5, 9], "2 was not reported: dropped; 9 learnt"
    assert out["after_get"][9].source == "NotifyDisplayMessages"
    assert (out["none"].accepted, out["none"].status) == (False, "Unknown")
    assert sorted(out["after_end"]) == [1, 3, 9]
    assert (out["clear_unknown"].accepted, out["clear_unknown"].status) == (False, "Unknown")
    http = out["http"]
    assert [(m["id"], m["window"]) for m in http["messages"]] == [(3, "pending"), (9, "current")]
    report = http["reports"][0]
    assert (report["seq_nos"], report["complete"], report["settled"]) == ([0, 1, 2, 3], True, True)
    assert out["bad"].status_code == 422 and "not an RFC 3339 time" in out["bad"].json()["detail"]
    assert out["too_long"].status_code == 400
    records = recorded(server_store)
    asked = [
        r.event.payload.get("id")
        for r in records
        if isinstance(r.event, CommandRequested) and r.event.command == "set_display_message"
    ]
    assert asked == [1, 2, 3, 4, 5], "the refused ones were not recorded"
    # Replay equals live.
    replayed = Views.replay(records).display_messages.get(station)
    assert display_messages_json(_some(replayed)) == out["live"]


def test_display_messages_are_201_only(server_store: str) -> None:
    async def scenario(server: RunningServer) -> None:
        assert server.csms is not None
        _cp, ws, task = await test_certificates.connect(server, "CP-D16", OCPP16)
        try:
            with pytest.raises(UnsupportedUseCase):
                await server.arun(server.csms.set_display_message, "CP-D16", 1, "Hi")
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=server_store)) as server:
        asyncio.run(scenario(server))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


CLOCK = "2026-11-21T10:15:00Z"


def test_meter_values_outside_transactions_in_both_versions(server_store: str) -> None:
    """Clock-aligned and idle-connector readings of a 1.6 and a 2.0.1 station, then a late
    older reading, reach the meter view over HTTP, the metrics and ``station show``."""

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        out: dict[str, Any] = {}
        cp16, ws16, task16 = await test_certificates.connect(server, "CP-M16", OCPP16)
        cp201, ws201, task201 = await test_certificates.connect(server, "CP-M201", OCPP201)
        try:
            clock = [
                {"value": "1234.5", "unit": "kWh", "context": "Sample.Clock"},
                {"value": "230.1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                {"value": "229.8", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
                {"value": "0A1B", "format": "SignedData", "context": "Sample.Clock"},
            ]
            await cp16.call(
                call16.MeterValues(
                    connector_id=0, meter_value=[{"timestamp": CLOCK, "sampled_value": clock}]
                )
            )
            power = {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"}
            await cp16.call(
                call16.MeterValues(
                    connector_id=1, meter_value=[{"timestamp": CLOCK, "sampled_value": [power]}]
                )
            )
            late = {"timestamp": "2026-11-21T10:00:00Z", "sampled_value": [{"value": "1"}]}
            await cp16.call(call16.MeterValues(connector_id=0, meter_value=[late]))
            register = {
                "value": 98.25,
                "context": "Sample.Clock",
                "unit_of_measure": {"unit": "kWh"},
            }
            frequency = {"value": 50.01, "measurand": "Frequency", "context": "Sample.Clock"}
            await cp201.call(
                call.MeterValues(
                    evse_id=0,
                    meter_value=[{"timestamp": CLOCK, "sampled_value": [register, frequency]}],
                )
            )
            current = {
                "value": 16,
                "measurand": "Current.Import",
                "phase": "L3",
                "location": "Cable",
                "unit_of_measure": {"unit": "mA", "multiplier": 3},
            }
            await cp201.call(
                call.MeterValues(
                    evse_id=2, meter_value=[{"timestamp": CLOCK, "sampled_value": [current]}]
                )
            )
            base = f"http://127.0.0.1:{server.csms.api_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                for station in ("CP-M16", "CP-M201"):
                    out[station] = (await client.get(f"/api/stations/{station}/meter")).json()
                out["connector"] = (
                    await client.get("/api/stations/CP-M16/meter?connector=1")
                ).json()
                out["metrics"] = (await client.get("/metrics")).text
            out["show"] = await asyncio.to_thread(_cli, "station", "show", "CP-M16", "--api", base)
            out["live"] = [meters_json(state) for state in server.csms.views.meters.all()]
        finally:
            for task, ws in ((task16, ws16), (task201, ws201)):
                task.cancel()
                await ws.close()
        return out

    with running_server(Settings(port=0, store=server_store, api_port=0)) as server:
        out = asyncio.run(scenario(server))

    def rows(document: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (r["connector_id"], r["measurand"], r["phase"], r["location"], r["value"], r["unit"])
            for r in document["readings"]
        ]

    assert rows(out["CP-M16"]) == [
        (0, "Energy.Active.Import.Register", None, "Outlet", 1234.5, "kWh"),
        (0, "Voltage", "L1-N", "Outlet", 230.1, "V"),
        (0, "Voltage", "L2-N", "Outlet", 229.8, "V"),
        (1, "Power.Active.Import", None, "Outlet", 7.2, "kW"),
    ]
    first = out["CP-M16"]["readings"][0]
    assert (first["timestamp"], first["context"], first["transaction_id"]) == (
        CLOCK,
        "Sample.Clock",
        None,
    )
    assert out["CP-M16"]["clock_aligned_at"] == CLOCK
    assert rows(out["connector"]) == rows(out["CP-M16"])[3:]
    assert rows(out["CP-M201"]) == [
        (0, "Energy.Active.Import.Register", None, "Outlet", 98.25, "kWh"),
        (0, "Frequency", None, "Outlet", 50.01, None),
        (2, "Current.Import", "L3", "Cable", 16000.0, "mA"),
    ]
    metrics = out["metrics"]
    for line in (
        'chargeledger_meter_reading{connector="0",location="Outlet",measurand="Voltage",'
        'phase="L1-N",station="CP-M16",unit="V"} 230.1',
        'chargeledger_meter_reading{connector="2",location="Cable",measurand="Current.Import",'
        'phase="L3",station="CP-M201",unit="mA"} 16000.0',
    ):
        assert line in metrics, line
    show = out["show"]
    assert show.returncode == 0, show.stderr
    assert "meter: 4 readings" in show.stdout
    for line in (
        "  connector 0  Energy.Active.Import.Register - Outlet  1234.5 kWh  Sample.Clock  " + CLOCK,
        "  connector 0  Voltage L1-N Outlet  230.1 V  -  " + CLOCK,
        "  meter                  /api/stations/CP-M16/meter",
    ):
        assert line in show.stdout.splitlines(), (line, show.stdout)
    replayed = Views.replay(recorded(server_store))
    assert [meters_json(state) for state in replayed.meters.all()] == out["live"]


MY_VIEWS = ("device_model", "problems", "meter", "display_messages")


def test_everything_about_one_station_over_http_and_the_cli(server_store: str) -> None:
    """The station view links every per-station view; the device model is paged, problems,
    meter and display messages are served; ``chargeledger station show`` prints them."""
    station = "CP-V"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        out: dict[str, Any] = {}
        cp, ws, task = await connect(server, station, DisplayStation)
        try:
            await cp.boot()
            await server.arun(server.csms.get_base_report, station)
            await cp.call(
                call.StatusNotification(
                    timestamp=test_e2e_v201.NOW,
                    connector_status="Faulted",
                    evse_id=1,
                    connector_id=1,
                )
            )
            await server.arun(server.csms.set_display_message, station, 1, "Out of order")
            base = f"http://127.0.0.1:{server.csms.api_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                out["view"] = (await client.get(f"/api/stations/{station}")).json()
                out["listed"] = (await client.get("/api/stations")).json()
                for name in MY_VIEWS:
                    out[name] = await client.get(out["view"]["links"][name])
                pages, after = [], None
                while True:
                    params: dict[str, Any] = {"limit": 2}
                    if after is not None:
                        params["after"] = after
                    page = (
                        await client.get(f"/api/stations/{station}/device-model", params=params)
                    ).json()
                    pages.append([variable["key"] for variable in page["variables"]])
                    after = page["next"]
                    if after is None:
                        break
                out["pages"] = pages
                out["evse"] = (
                    await client.get(
                        f"/api/stations/{station}/device-model", params={"component": "EVSE"}
                    )
                ).json()
                out["limit0"] = await client.get(
                    f"/api/stations/{station}/device-model", params={"limit": 0}
                )
                out["unknown"] = [
                    (await client.get(f"/api/stations/NOPE/{path}")).status_code
                    for path in ("device-model", "problems", "meter", "display-messages")
                ]
            out["show"] = await asyncio.to_thread(_cli, "station", "show", station, "--api", base)
            out["json"] = await asyncio.to_thread(
                _cli, "station", "show", station, "--json", "--api", base
            )
            out["nope"] = await asyncio.to_thread(_cli, "station", "show", "NOPE", "--api", base)
        finally:
            task.cancel()
            await ws.close()
        return out

    with running_server(Settings(port=0, store=server_store, api_port=0)) as server:
        out = asyncio.run(scenario(server))
    links = out["view"]["links"]
    assert links == {
        "self": "/api/stations/CP-V",
        "device_model": "/api/stations/CP-V/device-model",
        "problems": "/api/stations/CP-V/problems",
        "meter": "/api/stations/CP-V/meter",
        "display_messages": "/api/stations/CP-V/display-messages",
        "firmware": "/api/stations/CP-V/firmware",
        "logs": "/api/stations/CP-V/logs",
        "monitors": "/api/stations/CP-V/monitors",
        "customer_information": "/api/stations/CP-V/customer-information",
        "certificates": "/api/stations/CP-V/certificates",
        "security_events": "/api/stations/CP-V/security-events",
        "reservations": "/api/stations/CP-V/reservations",
        "firmware_campaigns": "/api/firmware/campaigns",
    }
    assert [view["links"]["self"] for view in out["listed"]] == ["/api/stations/CP-V"]
    for name in MY_VIEWS:
        assert out[name].status_code == 200, name
    model = out["device_model"].json()
    assert (model["station"], model["total"], len(model["variables"])) == (station, 5, 5)
    assert model["reports"][0]["complete"] and model["next"] is None
    assert out["pages"] == [
        ["AuthCtrlr.Enabled", "Connector@1/1.ConnectorType"],
        ["EVSE@1.Power", "OCPPCommCtrlr.HeartbeatInterval"],
        ["TxCtrlr.EVConnectionTimeOut"],
    ]
    [power] = out["evse"]["variables"]
    assert (power["key"], power["attributes"]["MaxSet"]["value"]) == ("EVSE@1.Power", "22000")
    assert out["limit0"].status_code == 400
    assert out["unknown"] == [404] * 4
    problems = out["problems"].json()
    assert [problem["key"] for problem in problems["active"]] == ["Connector@1/1.Problem"]
    assert [m["content"] for m in out["display_messages"].json()["messages"]] == ["Out of order"]
    show = out["show"]
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    assert lines[0].startswith("CP-V  ocpp2.0.1  connected  boot=Accepted  Acme EVC201")
    for line in (
        "device model: 5 variables, 1 reports, 0 unknown",
        "problems: 1 active, 1 recent",
        "  Connector@1/1.Problem  StatusNotification  Faulted",
        "display messages: 1",
        "  firmware               /api/stations/CP-V/firmware",
        "  customer_information   /api/stations/CP-V/customer-information",
    ):
        assert line in lines, (line, show.stdout)
    shown = json.loads(out["json"].stdout)
    assert sorted(shown) == sorted(("station", *MY_VIEWS))
    assert shown["device_model"]["total"] == 5
    nope = out["nope"]
    assert nope.returncode == 2 and "404" in nope.stderr and "NOPE" in nope.stderr


DEVICE_MD = Path(__file__).resolve().parent.parent / "docs" / "device-management.md"
MY_SECTIONS = (
    "Display messages",
    "Meter values outside transactions",
    "Everything about one station",
)


def walkthrough() -> list[tuple[str, int]]:
    """Each command of the ``sh`` blocks of this block's sections of
    docs/device-management.md, and the status under it."""
    text = DEVICE_MD.read_text()
    examples = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        if heading.strip() not in MY_SECTIONS:
            continue
        for block in re.findall(r"```sh\n(.*?)```", body, re.S):
            lines = block.splitlines()
            for line, following in zip(lines[::2], lines[1::2], strict=True):
                expected = re.fullmatch(r"# → (\d+)", following.strip())
                assert expected, f"no '# → STATUS' line under: {line}"
                examples.append((line, int(expected.group(1))))
    return examples


def test_device_management_walkthrough_runs_as_written(server_store: str) -> None:
    examples = walkthrough()
    assert len(examples) >= 15
    keys = {role: new_key() for role in ROLES}

    async def scenario(server: RunningServer) -> list[tuple[str, int, int, str]]:
        assert server.csms is not None
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "API": f"http://127.0.0.1:{server.csms.api_port}",
            **{f"{role.upper()}_KEY": key for role, key in keys.items()},
        }
        cp, ws, task = await connect(server, "CP-D", DisplayStation)
        cp16, ws16, task16 = await test_certificates.connect(server, "CP-M", OCPP16)
        results = []
        try:
            await cp.boot()
            volts = {"value": "230.1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"}
            clock = {"timestamp": CLOCK, "sampled_value": [{**volts, "context": "Sample.Clock"}]}
            await cp16.call(call16.MeterValues(connector_id=0, meter_value=[clock]))
            for command, expected in examples:
                curl = command.startswith("curl ")
                process = await asyncio.create_subprocess_exec(
                    "bash",
                    "-c",
                    f"{command} -o /dev/null -w '%{{http_code}}'" if curl else command,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await process.communicate()
                got = int(out.decode()) if curl else process.returncode
                results.append((command, expected, got, out.decode() + err.decode()))
        finally:
            for one_task, one_ws in ((task, ws), (task16, ws16)):
                one_task.cancel()
                await one_ws.close()
        return results

    with running_server(api_settings(server_store, keys)) as server:
        results = asyncio.run(scenario(server))
    wrong = [(c, expected, got, out) for c, expected, got, out in results if got != expected]
    assert not wrong, wrong
    shown = {command: out for command, _, _, out in results}
    show = next(out for command, out in shown.items() if "station show CP-D --api" in command)
    assert (
        "     1  InFront  any state  … → 2099-01-01T00:00:00.000Z  current  'Welcome to bay 4'"
        in (show.splitlines())
    ), show
