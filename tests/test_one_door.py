"""One door, one table: every use case on every surface, every request recorded with its caller.

The use-case table (``chargeledger.core.usecases.USE_CASES``) is the only declaration of a use
case; these tests fail when a use case is missing from the Python API, the HTTP API's request
union and OpenAPI document, the CLI's ``command``, or docs/api.md, and they run every use case
over HTTP against real charge points of both versions.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from ocpp.routing import after, on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from chargeledger.core import usecases
from chargeledger.core.api import PLUGINS, Caller, CentralSystem
from chargeledger.core.events import CommandRequested, FrameLogged
from chargeledger.core.remote import parse_arguments
from chargeledger.core.settings import BootPolicy, Settings
from chargeledger.core.usecases import USE_CASES
from chargeledger.schemas import OCPP16, OCPP201
from tests import test_certificates, test_display_meter, test_e2e_v201
from tests.diagnostics_station import Diagnostics201
from tests.harness import RunningServer, running_server

DOCS = Path(__file__).resolve().parent.parent / "docs"

ONLY_201 = {
    "get_base_report",
    "get_report",
    "set_variables",
    "get_transaction_status",
    "set_display_message",
    "get_display_messages",
    "clear_display_message",
    "set_variable_monitoring",
    "get_monitoring_report",
    "clear_variable_monitoring",
    "set_monitoring_base",
    "set_monitoring_level",
    "customer_information",
    "get_charging_profiles",
    "publish_firmware",
    "unpublish_firmware",
}

SAMPLES: dict[str, dict[str, Any]] = {
    "remote_start": {"id_token": "TAG-H", "evse_id": 1},
    "remote_stop": {},  # the transaction the remote start started, filled in by the test
    "reset": {"kind": "on_idle"},
    "change_availability": {"operative": False, "evse_id": 1},
    "unlock_connector": {"connector_id": 1, "evse_id": 1},
    "read_configuration": {"keys": ["HeartbeatInterval"]},
    "change_configuration": {"key": "HeartbeatInterval", "value": "120"},
    "trigger_message": {"message": "StatusNotification", "evse_id": 1},
    "clear_cache": {},
    "data_transfer": {"vendor_id": "com.example"},
    "get_base_report": {"report_base": "FullInventory"},
    "get_report": {"keys": ["HeartbeatInterval"]},
    "set_variables": {"values": {"HeartbeatInterval": "90"}},
    "get_transaction_status": {},
    "change_station_password": {"password": "0123456789abcdef0123"},
    "set_security_profile": {"profile": 2, "csms_url": "wss://csms.example/ocpp"},
    "install_certificate": {
        "certificate_type": "CSMSRootCertificate",
        "certificate": test_certificates.ROOT_PEM,
    },
    "get_installed_certificate_ids": {"certificate_types": ["CSMSRootCertificate"]},
    "reserve_now": {"id_token": "TAG-R", "expiry": "2099-01-01T00:00:00Z", "connector_id": 1},
    "cancel_reservation": {"reservation_id": 1},
    "delete_certificate": {
        "issuer_name_hash": test_certificates.ROOT_HASH["issuerNameHash"],
        "issuer_key_hash": test_certificates.ROOT_HASH["issuerKeyHash"],
        "serial_number": test_certificates.ROOT_HASH["serialNumber"],
    },
    "send_local_list": {"version": 1, "entries": [{"id_token": "TAG-L", "type": "ISO14443"}]},
    "get_local_list_version": {},
    "set_display_message": {"id": 1, "content": "Welcome", "priority": "InFront"},
    "get_display_messages": {},
    "clear_display_message": {"id": 1},
    "get_diagnostics": {"location": "ftp://logs.example/"},
    "get_log": {"remote_location": "https://logs.example/", "log_type": "SecurityLog"},
    "set_variable_monitoring": {
        "monitors": [
            {"key": "EVSE@1.Power", "type": "UpperThreshold", "value": 20000, "severity": 4}
        ]
    },
    "get_monitoring_report": {},
    "clear_variable_monitoring": {"ids": [100]},
    "set_monitoring_base": {"base": "All"},
    "set_monitoring_level": {"severity": 5},
    "customer_information": {"id_token": "TAG-C", "clear": True},
    "cost_updated": {
        "transaction_id": 1,
        "total_cost": "1.50",
        "timestamp": "2026-11-21T10:00:00Z",
        "meter_wh": 1500,
    },
    "set_charging_profile": {
        "purpose": "ChargingStationMaxProfile",
        "start_schedule": "2026-01-01T00:00:00Z",
        "periods": [{"start": 0, "limit": 22000}],
    },
    "clear_charging_profile": {"purpose": "TxDefaultProfile"},
    "get_composite_schedule": {"duration": 600, "connector_id": 1},
    "get_charging_profiles": {},
    "pnc_install_certificate": {
        "certificate_type": "V2GRootCertificate",
        "certificate": test_certificates.ROOT_PEM,
    },
    "pnc_get_installed_certificate_ids": {"certificate_types": ["V2GRootCertificate"]},
    "pnc_delete_certificate": {
        "issuer_name_hash": test_certificates.ROOT_HASH["issuerNameHash"],
        "issuer_key_hash": test_certificates.ROOT_HASH["issuerKeyHash"],
        "serial_number": test_certificates.ROOT_HASH["serialNumber"],
    },
    "pnc_trigger_sign_certificate": {},
    "update_firmware": {
        "location": "https://fw.example/f.bin",
        "retrieve_date": "2026-12-01T00:00:00Z",
    },
    "publish_firmware": {
        "location": "https://fw.example/f.bin",
        "checksum": "0123456789abcdef0123456789abcdef",
    },
    "unpublish_firmware": {"checksum": "0123456789abcdef0123456789abcdef"},
}
"""Arguments for each use case; a use case added to the table without a sample fails here."""

STATUS: dict[str | tuple[str, str], str] = {
    "unlock_connector": "Unlocked",
    "data_transfer": "Rejected",
    "get_transaction_status": "NoMessagesInQueue",
    ("cost_updated", OCPP16): "Rejected",  # DataTransfer: the test charge point refuses all
    "clear_charging_profile": "Unknown",
    "unpublish_firmware": "Unpublished",
}
"""The status the test stations answer with, where it is not ``Accepted``."""

STATUS_16 = {name: "Rejected" for name in SAMPLES if name.startswith("pnc_")}
"""The 1.6 test station rejects every DataTransfer, so the Plug & Charge use cases too
(tests/test_plug_and_charge.py runs them against a 1.6 station that speaks them)."""


class Station201(test_display_meter.Displays, Diagnostics201, test_certificates.Station201):
    """The 2.0.1 test station (with certificates, a display, logs, monitors and customer
    information), which also answers GetReport with its variables."""

    @on(Action.set_network_profile)
    def on_set_network_profile(self, configuration_slot: int, connection_data: Any) -> Any:
        return call_result.SetNetworkProfile(status="Accepted")

    @on(Action.cost_updated)
    def on_cost_updated(self, total_cost: float, transaction_id: str) -> Any:
        return call_result.CostUpdated()

    @on(Action.update_firmware)
    def on_update_firmware(self, **_: Any) -> Any:
        return call_result.UpdateFirmware(status="Accepted")

    @on(Action.publish_firmware)
    def on_publish_firmware(self, **_: Any) -> Any:
        return call_result.PublishFirmware(status="Accepted")

    @on(Action.unpublish_firmware)
    def on_unpublish_firmware(self, **_: Any) -> Any:
        return call_result.UnpublishFirmware(status="Unpublished")

    @on(Action.get_report)
    def on_get_report(self, request_id: int, **_: Any) -> Any:
        return call_result.GetReport(status="Accepted")

    @after(Action.get_report)
    async def send_partial_report(self, request_id: int, **_: Any) -> None:
        data = [
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "variableAttribute": [{"value": value}],
            }
            for (component, variable), value in sorted(self.variables.items())
        ]
        await self.call(
            call.NotifyReport(
                request_id=request_id,
                generated_at=test_e2e_v201.NOW,
                seq_no=0,
                report_data=data,
                tbc=False,
            )
        )


def test_every_use_case_has_a_sample() -> None:
    assert SAMPLES.keys() == USE_CASES.keys()
    for name, sample in SAMPLES.items():
        if name != "remote_stop":
            assert parse_arguments(name, [f"{k}={json.dumps(v)}" for k, v in sample.items()])


def test_every_use_case_is_on_every_surface() -> None:
    """Python method, HTTP request union and OpenAPI, CLI, docs: all from the table."""
    with running_server(Settings(port=0, store="memory://", api_port=0)) as server:
        assert server.csms is not None
        document = httpx.get(
            f"http://127.0.0.1:{server.csms.api_port}/api/schema/openapi.json", timeout=10
        ).json()
    listed = _cli("command", "--list").stdout
    body = document["paths"]["/api/stations/{station_id}/commands"]["post"]["requestBody"]
    text = json.dumps(body) + json.dumps(document["components"]["schemas"])
    api_md = (DOCS / "api.md").read_text()
    for name, use_case in USE_CASES.items():
        method = getattr(CentralSystem, name)
        assert method.__doc__ == use_case.args.__doc__, name
        assert f'"{name}"' in text, f"{name} missing from the OpenAPI request body"
        assert any(line.startswith(f"{name} ") or line == name for line in listed.splitlines())
        assert f"| `{name}` |" in api_md, f"{name} missing from docs/api.md"
    assert usecases.markdown_table() in api_md, "docs/api.md's use-case table is stale"


def test_cli_arguments_are_checked_before_anything_is_sent() -> None:
    assert parse_arguments("reset", ["kind=hard"]) == usecases.ResetArgs(kind="hard")
    assert parse_arguments("unlock_connector", ["connector_id=2"]).connector_id == 2  # type: ignore[attr-defined]
    assert parse_arguments("read_configuration", ['keys=["A","B"]']) == (
        usecases.ReadConfigurationArgs(keys=["A", "B"])
    )
    for use_case, pairs, message in (
        ("reboot", [], "unknown use case 'reboot'"),
        ("reset", ["kind"], "expected NAME=VALUE"),
        ("reset", ["kind=sideways"], "reset: Invalid enum value 'sideways'"),
        ("reset", ["colour=blue"], "unknown field `colour`"),
        ("unlock_connector", [], "missing required field `connector_id`"),
    ):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            parse_arguments(use_case, pairs)


def _recorded_commands(server: RunningServer) -> list[CommandRequested]:
    assert server.csms is not None
    return [
        recorded.event
        for recorded in server.csms.store.iter_all()
        if isinstance(recorded.event, CommandRequested)
    ]


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_every_use_case_over_http(tmp_path: Path, protocol: str) -> None:
    """Each use case of the table, posted to the API, reaches a real charge point of the
    version and comes back with its answer; 2.0.1-only ones are 501 for a 1.6 station. Each
    is recorded first, as asked by the API's caller."""
    station = f"CP-HTTP-{protocol}"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        if protocol == OCPP201:
            cp, ws, task = await test_e2e_v201.connect(server, station, Station201)
            await cp.boot()
        else:
            cp, ws, task = await test_certificates.connect(server, station, protocol)
        answers: dict[str, Any] = {}
        base = f"http://127.0.0.1:{server.csms.api_port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for name, sample in SAMPLES.items():
                    if name == "remote_stop":
                        sample = {"transaction_id": await _started(server, station, protocol)}
                    answers[name] = await client.post(
                        f"/api/stations/{station}/commands", json={"use_case": name, **sample}
                    )
            cli = partial(_cli, "command", station, "reset", "--arg", "kind=hard", "--api", base)
            answers["cli"] = await asyncio.to_thread(cli)
            answers["cli_bad"] = await asyncio.to_thread(
                partial(_cli, "command", station, "reset", "--arg", "kind=sideways")
            )
        finally:
            task.cancel()
            await ws.close()
        return answers

    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'http.db'}", api_port=0)
    with running_server(settings) as server:
        answers = asyncio.run(scenario(server))
        recorded = _recorded_commands(server)

    cli, cli_bad = answers.pop("cli"), answers.pop("cli_bad")
    assert (cli.returncode, json.loads(cli.stdout)["status"]) == (0, "Accepted"), cli.stderr
    assert cli_bad.returncode == 2 and "reset: Invalid enum value 'sideways'" in cli_bad.stderr
    for name, response in answers.items():
        if protocol == OCPP16 and name in ONLY_201:
            assert response.status_code == 501, (name, response.text)
            assert response.json()["type"].endswith("unsupported-use-case")
            continue
        assert response.status_code == 200, (name, response.text)
        result = response.json()
        assert result["protocol"] == protocol
        expected = STATUS_16.get(name) if protocol == OCPP16 else None
        expected = expected or STATUS.get((name, protocol), STATUS.get(name, "Accepted"))
        assert result["status"] == expected, (name, result)
        assert response.headers["X-Request-Id"] in {c.request_id for c in recorded}
    if protocol == OCPP201:
        assert answers["get_base_report"].json()["values"]["OCPPCommCtrlr.HeartbeatInterval"]
        assert answers["get_report"].json()["values"]["OCPPCommCtrlr.HeartbeatInterval"] == "120"
        shown = answers["get_display_messages"].json()["values"]["messages"]
        assert [(m["id"], m["content"]) for m in shown] == [(1, "Welcome")]
    assert answers["read_configuration"].json()["values"] == {"HeartbeatInterval": "300"}
    mine = [c for c in recorded if c.station == station]
    assert [c.command for c in mine] == [*SAMPLES, "reset"]  # the last one from the CLI
    assert {(c.key, c.role, c.mode) for c in mine} == {("local", "admin", "use_case")}


def _cli(*args: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _started(server: RunningServer, station: str, protocol: str) -> int | str:
    """The id of the station's transaction a remote start began (2.0.1), or a 1.6 id (the
    1.6 test charge point accepts any remote stop)."""
    if protocol == OCPP16:
        return 1

    def active() -> Any:
        assert server.csms is not None
        found = [
            t.transaction_id
            for t in server.csms.views.transactions.all()
            if t.station == station and t.status == "active"
        ]
        return found[-1] if found else None

    transaction_id: int | str = await test_e2e_v201.until(server, active, "the remote start")
    return transaction_id


def test_python_callers_name_themselves_and_plugins_are_recorded(tmp_path: Path) -> None:
    """A command from Python is recorded with the name the program gives (``python`` when it
    gives none), a plugin's ``SendCall`` as asked by ``plugins``, before the CALL is sent."""
    station = "CP-PY"
    billing = Caller("billing-sync", "operator")

    async def scenario(server: RunningServer) -> list[Any]:
        csms = server.csms
        assert csms is not None
        cp, ws, task = await test_e2e_v201.connect(server, station)
        try:
            await cp.boot()  # Pending: the provisioning plugin configures, then triggers a boot
            await test_e2e_v201.until(server, lambda: "Accepted" in cp.boots, "the second boot")
            return [
                await server.arun(partial(csms.reset, station, "hard", caller=billing)),
                await server.arun(partial(csms.clear_cache, station)),
                await server.arun(partial(csms.call, station, "ClearCache", {}, caller=billing)),
            ]
        finally:
            task.cancel()
            await ws.close()

    settings = Settings(
        port=0,
        store=f"sqlite:///{tmp_path / 'py.db'}",
        boot=BootPolicy(status="Pending"),
        plugins={"provisioning": {"pending_configuration": {"HeartbeatInterval": "60"}}},
    )
    with running_server(settings) as server:
        results = asyncio.run(scenario(server))
        assert server.csms is not None
        log = list(server.csms.store.iter_all())

    assert [r["status"] if isinstance(r, dict) else r.status for r in results] == ["Accepted"] * 3
    commands = [(r.position, r.event) for r in log if isinstance(r.event, CommandRequested)]
    callers = [(e.key, e.role, e.mode, e.command) for _, e in commands]
    assert callers[-3:] == [
        ("billing-sync", "operator", "use_case", "reset"),
        ("python", "admin", "use_case", "clear_cache"),
        ("billing-sync", "operator", "message", "ClearCache"),
    ]
    by_plugins = [e for _, e in commands if e.key == PLUGINS.name]
    assert {e.command for e in by_plugins} >= {"SetVariables", "TriggerMessage"}
    # Each request is in the log before the CALL that carries it out.
    for position, event in commands:
        action = event.command if event.mode == "message" else None
        sent = [
            r.position
            for r in log
            if isinstance(r.event, FrameLogged)
            and r.event.direction == "out"
            and r.event.station == station
            and r.event.text.startswith("[2,")
            and (action is None or f'"{action}"' in r.event.text)
            and r.position > position
        ]
        assert sent, f"no CALL after {event.command} was recorded"


def test_a_use_case_above_the_callers_role_is_refused_before_recording(tmp_path: Path) -> None:
    reader = Caller("auditor", "read")
    with running_server(Settings(port=0, store="memory://")) as server:
        csms = server.csms
        assert csms is not None
        with pytest.raises(PermissionError, match="needs the 'operator' role"):
            server.run(partial(csms.reset, "CP-X", caller=reader))
        with pytest.raises(PermissionError, match="needs the 'admin' role"):
            server.run(partial(csms.register_station, "CP-X", caller=reader))
        assert _recorded_commands(server) == []
