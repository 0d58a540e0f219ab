"""Diagnostics and logs, monitoring and customer information end to end with the ``ocpp``
charge points (1.6 and 2.0.1): uploads asked through the one door and their status folded per
request, a multi-part monitoring report, monitors set and cleared, a NotifyEvent linked to its
monitor, a customer report and clear with who asked; over Python, HTTP and the CLI; and the
projections rebuilt by replay equal the live ones."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import websockets

from chargeledger.core.api import Caller
from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.http.keys import new_key
from chargeledger.core.settings import Settings
from chargeledger.core.usecases import UseCaseResult
from chargeledger.core.usecases_diagnostics import (
    CustomerCertificate,
    CustomerInformationArgs,
    MonitorSetting,
    SetMonitoringLevelArgs,
    customer_information,
    get_diagnostics,
    get_log,
)
from chargeledger.projections import Views, problems_json
from chargeledger.projections.customer_information import customer_information_json
from chargeledger.projections.logs import logs_json
from chargeledger.projections.monitors import monitors_json
from chargeledger.schemas import OCPP16
from tests import test_e2e_v16, test_e2e_v201
from tests.conftest import on_sqlite_and_postgres
from tests.diagnostics_station import Diagnostics16, Diagnostics201
from tests.harness import RunningServer, chargeledger_cli, running_server
from tests.test_e2e_v201 import until
from tests.test_http_api import ROLES, api_settings


class Station16(Diagnostics16, test_e2e_v16.Station):
    """The 1.6 test charge point that uploads diagnostics and logs."""


class Station201(Diagnostics201, test_e2e_v201.Station):
    """The 2.0.1 test station with logs, monitors and customer information."""


def shown(views: Views) -> dict[str, Any]:
    """Everything this block folds, as the API shows it."""
    return {
        "logs": [logs_json(state) for state in views.logs.all()],
        "monitors": [monitors_json(state) for state in views.monitors.all()],
        "customers": [customer_information_json(s) for s in views.customer_information.all()],
        "problems": [problems_json(state) for state in views.problems.all()],
    }


def live_equals_replay(server: RunningServer) -> dict[str, Any]:
    """The live views' state, checked equal to a replay of the store's log."""
    assert server.csms is not None

    async def read() -> dict[str, Any]:
        return shown(server.csms.views)  # type: ignore[union-attr]

    live = server.run(read)
    assert live == shown(Views.replay(server.csms.store.iter_all()))
    return live


async def run(server: RunningServer, use_case: str, station: str, **kw: Any) -> UseCaseResult:
    assert server.csms is not None
    result: UseCaseResult = await server.arun(
        partial(getattr(server.csms, use_case), station, **kw)
    )
    return result


def _uploads(server: RunningServer, station: str) -> list[dict[str, Any]]:
    assert server.csms is not None
    state = server.csms.views.logs.get(station)
    return [] if state is None else logs_json(state)["requests"]


async def finished(server: RunningServer, station: str, count: int) -> list[dict[str, Any]]:
    """The station's upload requests once ``count`` of them are finished."""

    def probe() -> list[dict[str, Any]] | None:
        requests = _uploads(server, station)
        return requests if sum(r["finished"] for r in requests) >= count else None

    return await until(server, probe, f"{count} finished uploads of {station}")


def _statuses(request: dict[str, Any]) -> list[str]:
    return [upload["status"] for upload in request["uploads"]]


def test_v16_diagnostics_and_logs(tmp_path: Path) -> None:
    """1.6 GetDiagnostics (no request id: its notifications go to the latest one) and the
    security extension's GetLog, from Python and from the CLI through the API."""
    store = f"sqlite:///{tmp_path / 'diag16.db'}"
    station = "CP-D16"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        ws = await websockets.connect(f"{server.url}/{station}", subprotocols=[OCPP16])
        cp = Station16(station, ws)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(
                test_e2e_v16.call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
            first = await run(
                server,
                "get_diagnostics",
                station,
                location="ftp://logs.example/fail",
                start_time="2026-11-20T10:00:00+01:00",
                stop_time="2026-11-21T10:00:00Z",
                retries=2,
                retry_interval=30,
            )
            assert (first.action, first.status, first.accepted) == (
                "GetDiagnostics",
                "Accepted",
                True,
            )
            assert first.values == {"file_name": "diagnostics-CP.zip"}
            await finished(server, station, 1)
            second = await run(server, "get_diagnostics", station, location="ftp://logs.example/")
            assert second.accepted
            await finished(server, station, 2)
            # Idle (a triggered notification, nothing uploading) names no upload.
            await cp.call(test_e2e_v16.call.DiagnosticsStatusNotification("Idle"))
            log = await run(
                server,
                "get_log",
                station,
                remote_location="https://logs.example/security",
                log_type="SecurityLog",
                oldest_timestamp="2026-11-01T00:00:00Z",
            )
            assert (log.action, log.status, log.accepted) == ("GetLog", "Accepted", True)
            request_id = log.values["request_id"]
            assert log.values["file_name"] == f"SecurityLog-{request_id}.log"
            await finished(server, station, 3)
            with pytest.raises(InvalidUseCaseArguments, match="not an RFC 3339 time"):
                await run(server, "get_diagnostics", station, location="x", start_time="May")
            # The CLI asks through the API, recorded as the API's caller.
            base = f"http://127.0.0.1:{server.csms.api_port}"
            cli = await asyncio.to_thread(
                partial(
                    _cli,
                    "command",
                    station,
                    "get_log",
                    "--arg",
                    "remote_location=https://logs.example/cli/fail",
                    "--api",
                    base,
                    "--json",
                )
            )
            assert cli.returncode == 0, cli.stderr
            assert json.loads(cli.stdout)["status"] == "Accepted"
            await finished(server, station, 4)
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                shown_http = (await client.get(f"/api/stations/{station}/logs")).json()
                missing = await client.get("/api/stations/CP-NEVER/logs")
            assert missing.status_code == 404
            return {"request_id": request_id, "http": shown_http}
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        outcome = asyncio.run(scenario(server))
        live = live_equals_replay(server)

    (logs,) = live["logs"]
    assert logs == outcome["http"]
    first, second, security, from_cli = logs["requests"]
    assert (first["action"], first["request_id"], first["log_type"]) == (
        "GetDiagnostics",
        None,
        "DiagnosticsLog",
    )
    assert first["location"] == "ftp://logs.example/fail"
    assert (first["oldest"], first["latest"]) == (
        "2026-11-20T09:00:00.000Z",
        "2026-11-21T10:00:00.000Z",
    )
    assert (first["retries"], first["retry_interval"]) == (2, 30)
    assert _statuses(first) == ["Uploading", "UploadFailed"]
    assert _statuses(second) == ["Uploading", "Uploaded"]  # the latest GetDiagnostics's
    assert second["file_name"] == "diagnostics-CP.zip" and second["finished"]
    assert logs["idle"]["status"] == "Idle"
    assert security["request_id"] == outcome["request_id"]
    assert (security["action"], security["log_type"], security["status"]) == (
        "GetLog",
        "SecurityLog",
        "Accepted",
    )
    assert security["oldest"] == "2026-11-01T00:00:00.000Z"
    assert _statuses(security) == ["Uploading", "Uploaded"]
    assert security["upload_status"] == "Uploaded"
    assert (from_cli["log_type"], _statuses(from_cli)) == (
        "DiagnosticsLog",
        ["Uploading", "UploadFailure"],
    )
    (row,) = chargeledger_cli("logs", "--station", station, store=store)
    assert row == logs
    text = _cli("logs", "--store", store, "--station", station).stdout.splitlines()
    assert len(text) == 4 and "SecurityLog" in text[2] and "UploadFailure" in text[3]


@on_sqlite_and_postgres
def test_v201_logs_monitors_and_customer_information(server_store: str) -> None:
    store = server_store
    station = "CP-D201"
    keys = {role: new_key() for role in ROLES}
    privacy = Caller("privacy-officer", "operator")

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        cp, ws, task = await test_e2e_v201.connect(server, station, Station201)
        out: dict[str, Any] = {}
        base = f"http://127.0.0.1:{server.csms.api_port}"
        headers = {"Authorization": f"Bearer {keys['operator']}"}
        try:
            assert await cp.boot() == "Accepted"
            # -- logs: uploaded, failed, and one cancelled by the next ----------------------
            security = await run(
                server,
                "get_log",
                station,
                remote_location="https://logs.example/s",
                log_type="SecurityLog",
                latest_timestamp="2026-11-21T10:00:00Z",
            )
            diagnostics = await run(
                server, "get_diagnostics", station, location="https://logs.example/fail"
            )
            assert (diagnostics.action, diagnostics.status) == ("GetLog", "Accepted")
            await finished(server, station, 2)
            held = await run(server, "get_log", station, remote_location="https://x/hold")
            await until(
                server,
                lambda: _uploads(server, station)[-1]["upload_status"] == "Uploading",
                "the held upload",
            )
            replacing = await run(server, "get_log", station, remote_location="https://x/next")
            assert (replacing.status, replacing.accepted) == ("AcceptedCanceled", True)
            await finished(server, station, 4)
            out["log_ids"] = [
                r.values["request_id"] for r in (security, diagnostics, held, replacing)
            ]

            # -- monitors: set (one refused), a two-part report, an event, a clear ----------
            set_result = await run(
                server,
                "set_variable_monitoring",
                station,
                monitors=[
                    MonitorSetting(
                        key="EVSE@1.Power", type="UpperThreshold", value=20000, severity=4
                    ),
                    MonitorSetting(key="Nope.Thing", type="Delta", value=1, severity=9),
                    MonitorSetting(
                        key="OCPPCommCtrlr.HeartbeatInterval", type="Periodic", value=60, severity=8
                    ),
                ],
            )
            out["set"] = set_result
            report = await run(server, "get_monitoring_report", station)
            out["report"] = report
            out["event_answer"] = await cp.fire(100, "21500")
            cleared = await run(server, "clear_variable_monitoring", station, ids=[101, 999])
            out["cleared"] = cleared
            base_result = await run(server, "set_monitoring_base", station, base="All")
            level = await run(server, "set_monitoring_level", station, severity=5)
            assert (base_result.status, level.status) == ("Accepted", "Accepted")
            filtered = await run(
                server,
                "get_monitoring_report",
                station,
                criteria=["ThresholdMonitoring"],
                keys=["EVSE@1.Power"],
            )
            assert filtered.accepted

            # -- customer information: a report (Python), a clear (HTTP) --------------------
            customer = await run(
                server, "customer_information", station, id_token="TAG-C", caller=privacy
            )
            out["customer"] = customer
            with pytest.raises(ValueError, match="exactly one of"):
                CustomerInformationArgs(report=True)
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
                cleared_http = await client.post(
                    f"/api/stations/{station}/commands",
                    json={
                        "use_case": "customer_information",
                        "id_token": "TAG-C",
                        "report": False,
                        "clear": True,
                    },
                )
                out["clear_http"] = cleared_http
                out["bad_http"] = await client.post(
                    f"/api/stations/{station}/commands",
                    json={"use_case": "customer_information", "report": True},
                )
                out["monitors_http"] = (
                    await client.get(f"/api/stations/{station}/monitors")
                ).json()
                out["customers_http"] = (
                    await client.get(f"/api/stations/{station}/customer-information")
                ).json()
                request_id = customer.values["request_id"]
                out["one_http"] = (
                    await client.get(f"/api/stations/{station}/customer-information/{request_id}")
                ).json()
                out["none_http"] = await client.get(
                    f"/api/stations/{station}/customer-information/987654"
                )
            # the customer's data is gone: a new report is empty
            again = await run(server, "customer_information", station, id_token="TAG-C")
            out["again"] = again
        finally:
            task.cancel()
            await ws.close()
        with pytest.raises(UnsupportedUseCase, match=r"2\.0\.1 only"):
            await _v16_refuses(server)
        return out

    settings = api_settings(store, keys)
    with running_server(settings) as server:
        out = asyncio.run(scenario(server))
        live = live_equals_replay(server)

    # logs
    (logs,) = live["logs"]
    security, diagnostics, held, replacing = logs["requests"]
    assert [r["request_id"] for r in logs["requests"]] == out["log_ids"]
    assert (security["log_type"], _statuses(security)) == ("SecurityLog", ["Uploading", "Uploaded"])
    assert security["latest"] == "2026-11-21T10:00:00.000Z"
    assert (diagnostics["log_type"], _statuses(diagnostics)) == (
        "DiagnosticsLog",
        ["Uploading", "UploadFailure"],
    )
    assert _statuses(held) == ["Uploading", "AcceptedCanceled"]
    assert held["canceled_by"] == replacing["request_id"] and held["finished"]
    assert (replacing["status"], _statuses(replacing)) == (
        "AcceptedCanceled",
        ["Uploading", "Uploaded"],
    )

    # monitors
    set_result = out["set"]
    assert (set_result.status, set_result.accepted) == ("UnknownComponent", False)
    assert [(m["key"], m["status"], m["id"]) for m in set_result.values["monitors"]] == [
        ("EVSE@1.Power", "Accepted", 100),
        ("Nope.Thing", "UnknownComponent", None),
        ("OCPPCommCtrlr.HeartbeatInterval", "Accepted", 101),
    ]
    report = out["report"]
    assert (report.status, report.accepted) == ("Accepted", True)
    assert sorted(report.values) == ["1", "100", "101"]
    assert report.values["100"]["key"] == "EVSE@1.Power"
    assert report.values["1"]["source"] == "report"
    assert out["cleared"].status == "NotFound"
    assert out["cleared"].values == {"101": "Accepted", "999": "NotFound"}
    (monitors,) = live["monitors"]
    assert monitors == out["monitors_http"]
    assert (monitors["base"], monitors["level"]) == ("All", 5)
    assert [m["id"] for m in monitors["monitors"]] == [1, 100]
    fired = monitors["monitors"][1]
    assert (fired["type"], fired["value"], fired["severity"]) == ("UpperThreshold", 20000.0, 4)
    assert fired["events"] == 1 and fired["last_event"]["actual_value"] == "21500"
    assert monitors["refused"] == [
        {"key": "Nope.Thing", "type": "Delta", "severity": 9, "status": "UnknownComponent"}
    ]
    full, filtered = monitors["reports"]
    assert (full["seq_nos"], full["complete"], full["monitor_ids"]) == ([0, 1], True, [1, 100, 101])
    assert (filtered["criteria"], filtered["keys"]) == (["ThresholdMonitoring"], ["EVSE@1.Power"])
    (problems,) = live["problems"]
    (event,) = [p for p in problems["recent"] if p["source"] == "NotifyEvent"]
    assert (event["monitor_id"], event["key"], event["actual_value"]) == (
        100,
        "EVSE@1.Power",
        "21500",
    )

    # customer information
    customer = out["customer"]
    assert (customer.status, customer.accepted) == ("Accepted", True)
    assert customer.values["data"] == "name=Ada Lovelace;card=TAG-C;sessions=12"
    assert out["clear_http"].status_code == 200, out["clear_http"].text
    assert out["clear_http"].json()["status"] == "Accepted"
    assert out["bad_http"].status_code == 400
    assert "exactly one of" in out["bad_http"].text
    assert out["again"].values["data"] == ""
    (customers,) = live["customers"]
    reported, clear, again = customers["requests"]
    assert out["customers_http"]["requests"] == [reported, clear]  # asked before "again"
    assert reported == out["one_http"]
    assert (reported["report"], reported["clear"], reported["status"]) == (True, False, "Accepted")
    assert reported["id_token"] == {"idToken": "TAG-C", "type": "Central"}
    assert (reported["seq_nos"], reported["complete"]) == ([0, 1], True)
    assert reported["asked_by"]["key"] == "privacy-officer"
    assert (clear["report"], clear["clear"], clear["asked_by"]["key"]) == (False, True, "operator")
    assert clear["asked_by"]["command_request_id"] == out["clear_http"].headers["X-Request-Id"]
    assert clear["data"] == "" and again["asked_by"]["key"] == "python"
    assert out["none_http"].status_code == 404

    (row,) = chargeledger_cli("monitors", "--station", station, store=store)
    assert row == monitors
    (row,) = chargeledger_cli("customer-information", store=store)
    assert row == customers
    text = _cli("customer-information", "--store", store).stdout
    assert "by=privacy-officer" in text and "by=operator" in text


async def _v16_refuses(server: RunningServer) -> None:
    """A 2.0.1 monitoring use case for a 1.6 station is refused before anything is sent."""
    station = "CP-D16-MON"
    cp, ws, task = await test_e2e_v16.connect(server, station)
    try:
        await cp.call(
            test_e2e_v16.call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        )
        await run(server, "get_monitoring_report", station)
    finally:
        task.cancel()
        await ws.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_requests_of_each_version() -> None:
    """What the builders send: a customer named by certificate or identifier, the 2.0.1
    GetLog that stands for GetDiagnostics, windows in UTC; 2.0.1-only use cases refused for
    1.6 and wrong arguments refused before anything is built."""
    certificate = CustomerCertificate(
        issuer_name_hash="aa", issuer_key_hash="bb", serial_number="01"
    )
    request = customer_information("ocpp2.0.1", 7, True, True, customer_certificate=certificate)
    assert request.payload == {
        "requestId": 7,
        "report": True,
        "clear": True,
        "customerCertificate": {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": "aa",
            "issuerKeyHash": "bb",
            "serialNumber": "01",
        },
    }
    assert request.report is not None
    clear_only = customer_information("ocpp2.0.1", 8, False, True, customer_identifier="C-9")
    assert clear_only.payload == {
        "requestId": 8,
        "report": False,
        "clear": True,
        "customerIdentifier": "C-9",
    }
    assert clear_only.report is None  # nothing to wait for
    diagnostics = get_diagnostics("ocpp2.0.1", 9, "ftp://x", "2026-11-20T12:00:00+02:00")
    assert (diagnostics.action, diagnostics.payload) == (
        "GetLog",
        {
            "log": {"remoteLocation": "ftp://x", "oldestTimestamp": "2026-11-20T10:00:00.000Z"},
            "logType": "DiagnosticsLog",
            "requestId": 9,
        },
    )
    assert get_diagnostics(OCPP16, 9, "ftp://x").result({}).status == "NoDiagnostics"
    with pytest.raises(UnsupportedUseCase, match=r"CustomerInformation exists in OCPP 2\.0\.1"):
        customer_information(OCPP16, 1, True, False, id_token="A")
    with pytest.raises(InvalidUseCaseArguments, match="latest_timestamp 'soon'"):
        get_log("ocpp2.0.1", 1, "SecurityLog", "u", latest_timestamp="soon")
    for wrong in (
        {"id_token": "A", "customer_identifier": "B"},
        {"id_token": "A", "report": False},
    ):
        with pytest.raises(ValueError):
            CustomerInformationArgs(**wrong)
    with pytest.raises(msgspec.ValidationError, match="Expected `int` <= 9"):
        msgspec.convert(
            {"use_case": "set_monitoring_level", "severity": 10}, SetMonitoringLevelArgs
        )
