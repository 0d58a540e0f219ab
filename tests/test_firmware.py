"""Firmware end to end with the ``ocpp`` charge points: a campaign over four 1.6 stations (one
fails, one boots into its old version: the finding), its rollout rate and its decisions
replayed, a campaign stopped by its failure ratio and one cancelled, a signed 1.6 update
(SignedUpdateFirmware / SignedFirmwareStatusNotification), the 2.0.1 UpdateFirmware status
flow and a local controller's PublishFirmware / UnpublishFirmware; the firmware projection
rebuilt by replay equals the live one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, get_args

import httpx
import msgspec
import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from chargeledger.core.api import Caller
from chargeledger.core.audit.findings import Auditor
from chargeledger.core.commands import SendCall, StartTimer
from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.events import (
    CampaignCancelled,
    CampaignCreated,
    CampaignPaused,
    CampaignResumed,
    CommandRequested,
    Recorded,
    SiteDefined,
    TimerFired,
)
from chargeledger.core.firmware import (
    CampaignRequest,
    recorded_decisions,
    replayed_decisions,
    select_stations,
)
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.core.times import rfc3339
from chargeledger.core.usecases_firmware import UpdateFirmwareArgs, update_firmware
from chargeledger.plugins.firmware import campaign_step
from chargeledger.projections import Views
from chargeledger.projections.firmware import (
    PHASES,
    CampaignState,
    campaign_json,
    campaign_timer,
    firmware_json,
)
from chargeledger.schemas import OCPP16, OCPP201, v16, v201
from tests import test_e2e_v16, test_e2e_v201, test_projections
from tests.harness import RunningServer, running_server
from tests.polling import eventually
from tests.test_audit import chargeledger, json_lines

T = TypeVar("T")

LOCATION = "https://fw.example/acme-2.0.bin"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIBfirmwaresigner\n-----END CERTIFICATE-----\n"
SIGNATURE = "c2lnbmF0dXJlIG9mIHRoZSBmaXJtd2FyZQ=="
CHECKSUM = "0123456789abcdef0123456789abcdef"

OK = ["Downloading", "Downloaded", "Installing", "Installed", "reboot"]
FAILS = ["Downloading", "DownloadFailed"]
SIGNED = [
    "DownloadScheduled",
    "Downloading",
    "Downloaded",
    "SignatureVerified",
    "InstallScheduled",
    "Installing",
    "InstallRebooting",
    "reboot",
    "Installed",
]


class Station16(test_e2e_v16.Station):
    """A 1.6 charge point that plays ``script`` after an (Signed)UpdateFirmware: each
    status notified in turn, ``reboot`` a BootNotification with ``version_after``."""

    vendor = "ACME"
    model = "X1"
    script = OK
    version_after = "2.0"
    signed_answer = "Accepted"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = "1.0"
        self.requests: list[dict[str, Any]] = []

    async def boot(self) -> None:
        answer = await self.call(
            call16.BootNotification(
                charge_point_model=self.model,
                charge_point_vendor=self.vendor,
                firmware_version=self.version,
            )
        )
        assert answer.status == "Accepted"

    async def play(self, request_id: int | None) -> None:
        for step in self.script:
            if step == "reboot":
                self.version = self.version_after
                await self.boot()
            elif request_id is None:
                answer = await self.call(call16.FirmwareStatusNotification(status=step))
                assert answer == result16.FirmwareStatusNotification()
            else:
                answer = await self.call(
                    call16.SignedFirmwareStatusNotification(status=step, request_id=request_id)
                )
                assert answer == result16.SignedFirmwareStatusNotification()

    @on(Action16.update_firmware)
    def on_update_firmware(self, **request: Any) -> Any:
        self.requests.append(request)
        return result16.UpdateFirmware()

    @after(Action16.update_firmware)
    async def after_update_firmware(self, **_: Any) -> None:
        await self.play(None)

    @on(Action16.signed_update_firmware)
    def on_signed_update_firmware(self, **request: Any) -> Any:
        self.requests.append(request)
        return result16.SignedUpdateFirmware(status=self.signed_answer)

    @after(Action16.signed_update_firmware)
    async def after_signed_update_firmware(self, request_id: int, **_: Any) -> None:
        if self.signed_answer == "Accepted":
            await self.play(request_id)


class Station201(test_e2e_v201.Station):
    """A 2.0.1 station that installs with a reboot (Installed after the BootNotification
    with the new version) and, as a local controller, publishes firmware."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = "1.0"
        self.requests: list[dict[str, Any]] = []

    async def boot(self, reason: str = "PowerUp") -> str:
        station = {"model": "M201", "vendor_name": "ACME", "firmware_version": self.version}
        answer = await self.call(call201.BootNotification(charging_station=station, reason=reason))
        return str(answer.status)

    async def notify(self, status: str, request_id: int) -> None:
        answer = await self.call(
            call201.FirmwareStatusNotification(status=status, request_id=request_id)
        )
        assert answer == result201.FirmwareStatusNotification()

    @on(Action201.update_firmware)
    def on_update_firmware(self, **request: Any) -> Any:
        self.requests.append(request)
        return result201.UpdateFirmware(status="Accepted")

    @after(Action201.update_firmware)
    async def after_update_firmware(self, request_id: int, **_: Any) -> None:
        for status in ("Downloading", "Downloaded", "SignatureVerified", "InstallRebooting"):
            await self.notify(status, request_id)
        self.version = "2.0"
        assert await self.boot("FirmwareUpdate") == "Accepted"
        await self.notify("Installed", request_id)

    @on(Action201.publish_firmware)
    def on_publish_firmware(self, **request: Any) -> Any:
        self.requests.append(request)
        return result201.PublishFirmware(status="Accepted")

    @after(Action201.publish_firmware)
    async def after_publish_firmware(self, request_id: int, **_: Any) -> None:
        for status in ("Downloading", "Downloaded", "ChecksumVerified", "Published"):
            location = ["http://lc.local/acme-2.0.bin"] if status == "Published" else None
            await self.call(
                call201.PublishFirmwareStatusNotification(
                    status=status, request_id=request_id, location=location
                )
            )

    @on(Action201.unpublish_firmware)
    def on_unpublish_firmware(self, checksum: str) -> Any:
        return result201.UnpublishFirmware(status="Unpublished")


DOC = Path(__file__).resolve().parent.parent / "docs" / "device-management.md"


def _walkthrough(block: int, base: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``sh`` block ``block`` of the firmware section of docs/device-management.md as
    written (its ``export`` of the API's address aside: the test server's is given), with
    ``chargeledger`` the CLI of this checkout."""
    text = DOC.read_text()
    start = text.index("## Firmware updates and campaigns")
    end = text.find("\n## ", start)
    blocks = re.findall(r"```sh\n(.*?)```", text[start : end if end > 0 else None], re.S)
    script = "\n".join(line for line in blocks[block].splitlines() if not line.startswith("export"))
    cli = f'"{sys.executable}" -m chargeledger.core.cli'
    shim = f'set -eo pipefail\nchargeledger() {{ {cli} "$@"; }}\n'
    return subprocess.run(
        ["bash", "-c", shim + script],
        cwd=cwd,
        env={**os.environ, "CHARGELEDGER_API_URL": base, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _cli(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", "firmware", *args, "--api", base],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _connect16(
    server: RunningServer, name: str, **behaviour: Any
) -> tuple[Station16, Any, asyncio.Task[None]]:
    ws = await websockets.connect(f"{server.url}/{name}", subprotocols=["ocpp1.6"])
    station = Station16(name, ws)
    for attribute, value in behaviour.items():
        setattr(station, attribute, value)
    task = asyncio.create_task(station.start())
    await station.boot()
    return station, ws, task


async def _read(probe: Callable[[], T]) -> T:
    return probe()


async def until(server: RunningServer, probe: Callable[[], T | None], what: str) -> T:
    """Poll ``probe`` on the server's loop (where the views live) until it gives a value:
    at most 30 s, since a campaign takes several steps and the suite shares its cores."""
    return await eventually(lambda: server.arun(_read, probe), what=what, timeout=30)


def _campaign(server: RunningServer, campaign_id: str) -> CampaignState:
    assert server.csms is not None
    campaign = server.csms.views.firmware.campaign(campaign_id)
    assert campaign is not None
    return campaign


def _live_and_replayed(server: RunningServer) -> tuple[Any, Any]:
    """The live firmware projection and a replay of the store up to the same position (a
    station's last frames may still be arriving)."""
    assert server.csms is not None

    async def read() -> tuple[int, Any]:
        views = server.csms.views  # type: ignore[union-attr]
        return views.position, _shown(views)

    position, live = server.run(read)
    records = [r for r in server.csms.store.iter_all() if r.position <= position]
    return live, _shown(Views.replay(records))


def _max_in_flight(server: RunningServer, campaign_id: str) -> int:
    """The most stations of the campaign in progress at once, over a replay of the log."""
    assert server.csms is not None
    views, most = Views(), 0
    for recorded in server.csms.store.iter_all():
        views.apply(recorded)
        campaign = views.firmware.campaign(campaign_id)
        if campaign is not None:
            most = max(most, campaign.counts()["in_progress"])
    return most


def test_a_campaign_over_four_stations_with_a_failure_and_an_old_version(tmp_path: Path) -> None:
    """Four ACME stations (and one of another vendor, not selected): two install, one
    fails to download, one reports Installed and boots into 1.0 again (a finding). Two at
    most in flight; created and read with the CLI through the API."""
    store = f"sqlite:///{tmp_path / 'campaign.db'}"
    behaviours: dict[str, dict[str, Any]] = {
        "CP-F1": {},
        "CP-F2": {"script": FAILS},
        "CP-F3": {"version_after": "1.0"},
        "CP-F4": {},
        "CP-OTHER": {"vendor": "Other"},
    }

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        base = f"http://127.0.0.1:{server.csms.api_port}"
        connected = [await _connect16(server, name, **b) for name, b in behaviours.items()]
        facts: dict[str, Any] = {}
        try:
            # The walkthrough of docs/device-management.md, as written.
            walked = await asyncio.to_thread(_walkthrough, 0, base, tmp_path)
            assert walked.returncode == 0, walked.stderr
            facts["walked"] = walked.stdout
            (made,) = server.csms.views.firmware.campaigns()
            campaign_id = made.campaign_id

            def done() -> CampaignState | None:
                campaign = _campaign(server, campaign_id)
                firmware = server.csms.views.firmware.get("CP-F3")  # type: ignore[union-attr]
                finding = firmware is not None and firmware.current is not None
                finding = finding and firmware.current.finding is not None  # type: ignore[union-attr]
                return campaign if campaign.status != "running" and finding else None

            await until(server, done, "the campaign done and the finding made")
            shown = await asyncio.to_thread(_cli, base, "campaign", "show", campaign_id, "--json")
            assert shown.returncode == 0, shown.stderr
            facts["shown"] = json.loads(shown.stdout)
            listed = await asyncio.to_thread(_cli, base, "campaign", "show", "--json")
            facts["listed"] = json.loads(listed.stdout)
            status = await asyncio.to_thread(_cli, base, "status", "CP-F3", "--json")
            facts["status"] = json.loads(status.stdout)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                facts["http_f1"] = (await client.get("/api/stations/CP-F1/firmware")).json()
                facts["http_404"] = await client.get("/api/stations/CP-NOWHERE/firmware")
                facts["http_campaign_404"] = await client.get("/api/firmware/campaigns/nope")
                facts["http_bad"] = await client.post(
                    "/api/firmware/campaigns", json={"location": LOCATION, "vendor": "Nobody"}
                )
                facts["http_site"] = await client.post(
                    "/api/firmware/campaigns", json={"location": LOCATION, "site": "Depot 7"}
                )
            facts["requests"] = {cp.id: cp.requests for cp, _, _ in connected}
        finally:
            for _, ws, task in connected:
                task.cancel()
                await ws.close()
        return facts

    settings = Settings(port=0, store=store, api_port=0)
    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))
        assert server.csms is not None
        records = list(server.csms.store.iter_all())
        (campaign,) = server.csms.views.firmware.campaigns()
        campaign_id = campaign.campaign_id
        assert _max_in_flight(server, campaign_id) == 2
        live, replayed = _live_and_replayed(server)
        assert live == replayed

    assert list(campaign.stations) == ["CP-F1", "CP-F2", "CP-F3", "CP-F4"]
    assert campaign.created.name == "ACME 2.0" and campaign.created.max_in_flight == 2
    assert campaign.created.selection == {"vendor": "ACME", "firmware_version": "1.0"}
    assert f'"campaign_id": "{campaign_id}"' in facts["walked"]
    assert campaign.status == "completed"
    assert campaign.counts() == {
        "pending": 0,
        "in_progress": 0,
        "installed": 2,
        "failed": 2,
        "stopped": 0,
    }
    reasons = {s.station: (s.status, s.reason) for s in campaign.stations.values()}
    assert reasons == {
        "CP-F1": ("installed", None),
        "CP-F2": ("failed", "DownloadFailed"),
        "CP-F3": ("failed", "version_unchanged"),
        "CP-F4": ("installed", None),
    }
    assert facts["shown"]["counts"] == campaign.counts()
    assert [c["campaign_id"] for c in facts["listed"]] == [campaign_id]
    # Every selected station got the URL it was given, once; the other vendor none.
    requests = facts["requests"]
    assert requests["CP-OTHER"] == []
    for name in ("CP-F1", "CP-F2", "CP-F3", "CP-F4"):
        assert [r["location"] for r in requests[name]] == [LOCATION]
    current = facts["status"]["current"]
    assert (current["phase"], current["finding"]) == ("installed", "version_unchanged")
    assert (current["version_before"], current["version_after"]) == ("1.0", "1.0")
    assert [s["status"] for s in current["statuses"]] == OK[:-1]
    f1 = facts["http_f1"]
    assert (f1["version"], f1["current"]["version_before"], f1["current"]["version_after"]) == (
        "2.0",
        "1.0",
        "2.0",
    )
    assert f1["current"]["status"] == "Installed" and f1["current"]["status_at"]
    assert facts["http_404"].status_code == 404
    assert facts["http_campaign_404"].status_code == 404
    assert facts["http_bad"].status_code == 400
    assert "no station matches" in facts["http_bad"].json()["detail"]
    assert facts["http_site"].status_code == 400
    assert "no site 'Depot 7'" in facts["http_site"].json()["detail"]

    # The finding is the audit's too, with its evidence.
    auditor = Auditor()
    for recorded in records:
        auditor.feed(recorded)
    findings = [f for f in auditor.findings() if f.kind == "version_unchanged"]
    assert [(f.station, f.source) for f in findings] == [("CP-F3", "projection")]
    assert len(findings[0].positions) == 3

    # Every decision is a recorded command, and a replay through the plugins takes the same.
    decided = recorded_decisions(records)
    updates = [d for d in decided if d.kind == "update"]
    assert sorted(d.station or "" for d in updates) == ["CP-F1", "CP-F2", "CP-F3", "CP-F4"]
    assert {d.action for d in updates} == {"UpdateFirmware"}
    assert len([d for d in decided if d.kind == "step"]) >= 2
    assert replayed_decisions(records, PluginHost(Settings())) == decided
    # ... and a replay through other rules would show: one in flight at a time decides
    # differently.
    changed = [
        msgspec.structs.replace(
            recorded, event=msgspec.structs.replace(recorded.event, max_in_flight=1)
        )
        if isinstance(recorded.event, CampaignCreated)
        else recorded
        for recorded in records
    ]
    assert replayed_decisions(changed, PluginHost(Settings())) != decided
    # The same through the CLI: `chargeledger replay --what-if` takes them again, and says
    # so; without the firmware plugin, nothing would have been decided.
    code, out, err = chargeledger("replay", "--what-if", "--store", store)
    assert code == 0, out + err
    assert f"firmware campaigns: {len(decided)} decisions recorded" in out
    assert "taken again today: the same" in out
    code, out, _ = chargeledger(
        "replay", "--what-if", "--store", store, "--disable-plugin", "firmware"
    )
    assert code == 1 and "0 taken again today: they differ" in out
    code, out, err = chargeledger(
        "audit", "--store", store, "--kind", "version_unchanged", "--json"
    )
    assert [row["station"] for row in json_lines(out) if "kind" in row] == ["CP-F3"], err


def test_a_campaign_stops_on_its_failure_ratio_and_one_is_cancelled(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'stop.db'}"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        csms = server.csms
        base = f"http://127.0.0.1:{csms.api_port}"
        connected = [
            await _connect16(server, "CP-S1", script=FAILS),
            await _connect16(server, "CP-S2"),
            await _connect16(server, "CP-S3"),
        ]
        facts: dict[str, Any] = {}
        try:
            request = CampaignRequest(
                location=LOCATION,
                stations=["CP-S1", "CP-S2", "CP-S3"],
                interval=1,
                max_failure_ratio=0,
            )
            made = await server.arun(partial(csms.create_campaign, request))
            stopped = await until(
                server,
                lambda: (c := _campaign(server, made.campaign_id)).status == "stopped" and c,
                "the campaign stopped",
            )
            facts["stopped"] = campaign_json(stopped)
            # A slow campaign: the first station updates at once, the next step is a minute
            # away; cancelled in between.
            slow = CampaignRequest(
                location=LOCATION, stations=["CP-S2", "CP-S3"], interval=600, retries=2
            )
            made = await server.arun(partial(csms.create_campaign, slow))
            await until(
                server,
                lambda: _campaign(server, made.campaign_id).counts()["installed"] == 1 or None,
                "the first station installed",
            )
            cancelled = await asyncio.to_thread(_cli, base, "campaign", "cancel", made.campaign_id)
            assert cancelled.returncode == 0, cancelled.stderr
            facts["cancelled"] = json.loads(cancelled.stdout)
            again = await asyncio.to_thread(_cli, base, "campaign", "cancel", made.campaign_id)
            facts["again"] = json.loads(again.stdout)
            facts["requests"] = {cp.id: len(cp.requests) for cp, _, _ in connected}
            facts["retries"] = connected[1][0].requests[-1].get("retries")
            # Paused after its first station, resumed: the next step is due at once. (CP-S2
            # runs 2.0 now: booting into 2.0 again would be a finding.)
            for cp, _, _ in connected:
                cp.version_after = "3.0"
            made = await server.arun(partial(csms.create_campaign, slow))
            await until(
                server,
                lambda: _campaign(server, made.campaign_id).counts()["installed"] == 1 or None,
                "the first station installed",
            )
            paused = await asyncio.to_thread(_cli, base, "campaign", "pause", made.campaign_id)
            assert paused.returncode == 0, paused.stderr
            facts["paused"] = json.loads(paused.stdout)["status"]
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                answer = await client.post(f"/api/firmware/campaigns/{made.campaign_id}/resume")
                facts["resumed"] = (answer.status_code, answer.json()["status"])
            resumed = await until(
                server,
                lambda: (c := _campaign(server, made.campaign_id)).status == "completed" and c,
                "the resumed campaign completed",
            )
            facts["completed"] = campaign_json(resumed)
            ended = await server.arun(partial(csms.pause_campaign, made.campaign_id))
            facts["pause_ended"] = None if ended is None else ended.status
            with pytest.raises(PermissionError):
                await server.arun(
                    partial(
                        csms.create_campaign,
                        request,
                        caller=Caller("reader", "read"),
                    )
                )
        finally:
            for _, ws, task in connected:
                task.cancel()
                await ws.close()
        return facts

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        facts = asyncio.run(scenario(server))
        live, replayed = _live_and_replayed(server)
        assert live == replayed
        assert server.csms is not None
        records = list(server.csms.store.iter_all())
    stopped = facts["stopped"]
    assert stopped["counts"] == {
        "pending": 0,
        "in_progress": 0,
        "installed": 0,
        "failed": 1,
        "stopped": 2,
    }
    assert facts["cancelled"]["status"] == "cancelled"
    assert facts["cancelled"]["cancelled_by"] == "local"
    assert facts["cancelled"]["counts"]["stopped"] == 1
    assert facts["again"]["status"] == "cancelled"  # cancelling twice records nothing new
    # The stopped and the cancelled stations were never sent an update.
    assert facts["requests"] == {"CP-S1": 1, "CP-S2": 1, "CP-S3": 0}
    assert facts["retries"] == 2
    assert facts["paused"] == "paused" and facts["resumed"] == (200, "running")
    completed = facts["completed"]
    assert completed["counts"]["installed"] == 2 and completed["steps"] == 2
    assert facts["pause_ended"] == "completed"  # an ended campaign is left as it is
    paused = [r.event for r in records if type(r.event).__name__ == "CampaignPaused"]
    assert len(paused) == 1  # pausing the completed campaign recorded nothing
    assert replayed_decisions(records, PluginHost(Settings())) == recorded_decisions(records)


def test_signed_firmware_in_16(tmp_path: Path) -> None:
    """SignedUpdateFirmware through the CLI, its SignedFirmwareStatusNotifications with the
    request id folded to installed with the version after the reboot; a refused signature
    fails the update."""
    store = f"sqlite:///{tmp_path / 'signed.db'}"
    (tmp_path / "signer.pem").write_text(CERTIFICATE)
    (tmp_path / "acme-2.0.sig").write_text(SIGNATURE)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        csms = server.csms
        base = f"http://127.0.0.1:{csms.api_port}"
        cp, ws, task = await _connect16(server, "CP-SIGNED", script=SIGNED)
        facts: dict[str, Any] = {}
        try:
            # The walkthrough of docs/device-management.md, as written.
            walked = await asyncio.to_thread(_walkthrough, 1, base, tmp_path)
            assert walked.returncode == 0, walked.stderr
            facts["answer"] = json.loads(walked.stdout[: walked.stdout.index("\n}\n") + 2])
            request_id = facts["answer"]["values"]["request_id"]

            def installed() -> Any:
                state = csms.views.firmware.get("CP-SIGNED")
                update = None if state is None else state.current
                ready = update is not None and update.phase == "installed"
                return firmware_json(state) if ready and state else None

            facts["installed"] = await until(server, installed, "the signed update installed")
            facts["request"] = cp.requests[-1]
            facts["request_id"] = request_id
            half = await asyncio.to_thread(
                _cli, base, "update", "CP-SIGNED", "--location", LOCATION, "--signature", "x"
            )
            facts["half"] = (half.returncode, half.stderr)
            unsigned_install = await asyncio.to_thread(
                _cli,
                base,
                "update",
                "CP-SIGNED",
                "--location",
                LOCATION,
                "--install-date",
                "2026-12-01T03:00:00Z",
            )
            facts["unsigned_install"] = (unsigned_install.returncode, unsigned_install.stderr)
            cp.signed_answer = "InvalidCertificate"
            refused = await server.arun(
                partial(
                    csms.update_firmware,
                    "CP-SIGNED",
                    LOCATION,
                    rfc3339(time.time()),
                    signing_certificate=CERTIFICATE,
                    signature=SIGNATURE,
                )
            )
            facts["refused"] = refused
            facts["after_refusal"] = firmware_json(csms.views.firmware.get("CP-SIGNED"))  # type: ignore[arg-type]
        finally:
            task.cancel()
            await ws.close()
        return facts

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        facts = asyncio.run(scenario(server))
        live, replayed = _live_and_replayed(server)
        assert live == replayed
    assert facts["answer"]["action"] == "SignedUpdateFirmware"
    assert facts["answer"]["status"] == "Accepted"
    request = facts["request"]
    assert request["request_id"] == facts["request_id"]
    firmware = request["firmware"]
    assert firmware["signing_certificate"] == CERTIFICATE
    assert firmware["signature"] == SIGNATURE
    assert firmware["install_date_time"] == "2026-12-01T02:00:00.000Z"
    current = facts["installed"]["current"]
    assert current["action"] == "SignedUpdateFirmware" and current["signed"] is True
    assert current["request_id"] == facts["request_id"]
    assert [s["status"] for s in current["statuses"]] == [s for s in SIGNED if s != "reboot"]
    assert (current["version_before"], current["version_after"], current["finding"]) == (
        "1.0",
        "2.0",
        None,
    )
    assert current["rebooted_at"] and current["location"] == LOCATION
    assert facts["half"][0] == 2 and "needs both" in facts["half"][1]
    assert facts["unsigned_install"][0] == 2
    assert "no install time" in facts["unsigned_install"][1]
    refused = facts["refused"]
    assert (refused.accepted, refused.status) == (False, "InvalidCertificate")
    after = facts["after_refusal"]
    assert (after["current"]["phase"], after["current"]["answer"]) == (
        "failed",
        "InvalidCertificate",
    )
    assert after["history"][-1]["phase"] == "installed"


def test_201_update_firmware_and_local_controller_publishing(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'v201.db'}"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        csms = server.csms
        cp, ws, task = await test_e2e_v201.connect(server, "CP-201", Station201)
        facts: dict[str, Any] = {}
        try:
            assert await cp.boot() == "Accepted"
            facts["update"] = await server.arun(
                partial(
                    csms.update_firmware,
                    "CP-201",
                    LOCATION,
                    "2026-12-01T01:00:00Z",
                    retries=3,
                    retry_interval=60,
                    install_date="2026-12-01T02:00:00Z",
                )
            )

            def installed() -> Any:
                state = csms.views.firmware.get("CP-201")
                update = None if state is None else state.current
                done = update is not None and update.phase == "installed"
                return firmware_json(state) if done and state else None

            facts["installed"] = await until(server, installed, "the 2.0.1 update installed")
            facts["published"] = await server.arun(
                partial(csms.publish_firmware, "CP-201", LOCATION, CHECKSUM)
            )

            def published() -> Any:
                state = csms.views.firmware.get("CP-201")
                publish = None if state is None else state.publish
                if publish is None or publish.status != "Published":
                    return None
                return firmware_json(state)["publish"]  # type: ignore[arg-type]

            facts["publish"] = await until(server, published, "the firmware published")
            facts["unpublished"] = await server.arun(
                partial(csms.unpublish_firmware, "CP-201", CHECKSUM)
            )
            facts["after"] = firmware_json(csms.views.firmware.get("CP-201"))  # type: ignore[arg-type]
            facts["request"] = cp.requests[0]
        finally:
            task.cancel()
            await ws.close()
        return facts

    with running_server(Settings(port=0, store=store)) as server:
        facts = asyncio.run(scenario(server))
        live, replayed = _live_and_replayed(server)
        assert live == replayed
    update = facts["update"]
    assert (update.action, update.status, update.accepted) == ("UpdateFirmware", "Accepted", True)
    request = facts["request"]
    assert request["request_id"] == update.values["request_id"]
    assert (request["retries"], request["retry_interval"]) == (3, 60)
    assert request["firmware"]["location"] == LOCATION
    assert request["firmware"]["install_date_time"] == "2026-12-01T02:00:00.000Z"
    current = facts["installed"]["current"]
    assert current["request_id"] == update.values["request_id"]
    assert [s["status"] for s in current["statuses"]] == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallRebooting",
        "Installed",
    ]
    assert (current["version_before"], current["version_after"]) == ("1.0", "2.0")
    assert facts["installed"]["version"] == "2.0" and current["finding"] is None
    published = facts["published"]
    assert (published.action, published.accepted) == ("PublishFirmware", True)
    publish = facts["publish"]
    assert (publish["request_id"], publish["checksum"]) == (
        published.values["request_id"],
        CHECKSUM,
    )
    assert (publish["location"], publish["answer"]) == (LOCATION, "Accepted")
    assert publish["locations"] == ["http://lc.local/acme-2.0.bin"]
    assert (facts["unpublished"].status, facts["unpublished"].accepted) == ("Unpublished", True)
    assert facts["after"]["publish"]["status"] == "Unpublished"
    assert facts["after"]["publish"]["locations"] == []


def test_every_firmware_status_of_both_versions_has_a_phase() -> None:
    """Each status a station may notify, 1.6 (with its security extension) and 2.0.1, moves
    an update to a phase; only Idle moves none."""
    statuses = {
        *get_args(v16.FirmwareStatusNotificationRequest.__annotations__["status"]),
        *get_args(v16.FirmwareStatusEnumType),
        *get_args(v201.FirmwareStatusEnumType),
    }
    assert statuses - set(PHASES) == {"Idle"}
    assert set(PHASES) <= statuses


@pytest.mark.parametrize(
    ("protocol", "fields", "error"),
    [
        (OCPP16, {"install_date": "2026-12-01T00:00:00Z"}, UnsupportedUseCase),
        (OCPP16, {"signature": SIGNATURE}, InvalidUseCaseArguments),
        (OCPP201, {"retrieve_date": "tomorrow"}, InvalidUseCaseArguments),
    ],
)
def test_update_firmware_refuses_what_the_version_cannot_say(
    protocol: str, fields: dict[str, Any], error: type[Exception]
) -> None:
    args = UpdateFirmwareArgs(
        **{"location": LOCATION, "retrieve_date": "2026-12-01T00:00:00Z", **fields}
    )
    with pytest.raises(error):
        update_firmware(protocol, args, 7)


# -- the fold on its own: any log of firmware frames ------------------------------------------

_STATIONS = ("CP-A", "CP-B", "CP-C")
_STATUSES = sorted({*PHASES, "Idle"})

firmware_operation = st.one_of(
    st.tuples(st.just("boot"), st.sampled_from(_STATIONS), st.sampled_from(["1.0", "2.0"])),
    st.tuples(
        st.just("request"),
        st.sampled_from(_STATIONS),
        st.sampled_from(["UpdateFirmware", "SignedUpdateFirmware"]),
        st.sampled_from(["Accepted", "Rejected", "InvalidCertificate", "error", "none"]),
    ),
    st.tuples(
        st.just("notify"),
        st.sampled_from(_STATIONS),
        st.sampled_from(_STATUSES),
        st.sampled_from([None, 1, 2]),
    ),
    st.tuples(
        st.just("campaign"),
        st.lists(st.sampled_from(_STATIONS), min_size=1, max_size=3, unique=True),
        st.sampled_from([0.0, 0.34, 1.0]),
    ),
    st.tuples(
        st.just("dispatch"),
        st.integers(0, 2),
        st.sampled_from(["none", "Installed", "DownloadFailed"]),
        st.sampled_from(["1.0", "2.0"]),
    ),
    st.tuples(st.just("step"), st.sampled_from([1.0, 5000.0])),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("pause"), st.booleans()),
)


def _firmware_log(operations: list[tuple[Any, ...]]) -> list[Any]:
    log = test_projections.Log()
    for station in _STATIONS:
        log.open(station)
    campaigns: list[str] = []
    members: list[list[str]] = []
    request_ids = iter(range(1, 10_000))

    def add(event: Any) -> None:
        log.records.append(Recorded(len(log.records) + 1, "firmware", 0, event))

    for operation in operations:
        kind, *rest = operation
        if kind == "boot":
            station, version = rest
            boot = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": version}
            log.call(station, "BootNotification", boot, {"status": "Accepted"})
        elif kind == "request":
            station, action, answer = rest
            payload: dict[str, Any] = {"location": LOCATION, "retrieveDate": "2026-12-01T00:00Z"}
            if action == "SignedUpdateFirmware":
                payload = {
                    "requestId": next(request_ids) % 3,
                    "firmware": {
                        "location": LOCATION,
                        "retrieveDateTime": "2026-12-01T00:00:00Z",
                        "signingCertificate": CERTIFICATE,
                        "signature": SIGNATURE,
                    },
                }
            result = None if answer in ("none", "error") else {"status": answer}
            if action == "UpdateFirmware" and result is not None:
                result = {}
            log.call(station, action, payload, result, error=answer == "error", by="out")
        elif kind == "notify":
            station, status, request_id = rest
            payload = (
                {"status": status}
                if request_id is None
                else {
                    "status": status,
                    "requestId": request_id,
                }
            )
            action = (
                "FirmwareStatusNotification"
                if request_id is None
                else ("SignedFirmwareStatusNotification")
            )
            log.call(station, action, payload, {})
        elif kind == "campaign":
            stations, ratio = rest
            campaign_id = f"c{len(campaigns)}"
            campaigns.append(campaign_id)
            members.append(stations)
            add(
                CampaignCreated(
                    request_id=campaign_id,
                    at=log.at,
                    key="op",
                    campaign_id=campaign_id,
                    location=LOCATION,
                    stations=stations,
                    max_failure_ratio=ratio,
                    station_timeout=100.0,
                )
            )
        elif kind == "dispatch" and campaigns:
            index, outcome, version = rest
            station = members[-1][index % len(members[-1])]
            add(
                CommandRequested(
                    request_id=f"campaign:{campaigns[-1]}:{station}",
                    station=station,
                    at=log.at,
                    key="plugins",
                    role="operator",
                    mode="message",
                    command="UpdateFirmware",
                    payload={},
                )
            )
            log.call(
                station,
                "UpdateFirmware",
                {"location": LOCATION, "retrieveDate": "2026-12-01T00:00:00Z"},
                {},
                by="out",
            )
            if outcome != "none":
                for status in ("Downloading", outcome):
                    log.call(station, "FirmwareStatusNotification", {"status": status}, {})
                boot = {"chargePointVendor": "V", "chargePointModel": "M"}
                log.call(
                    station,
                    "BootNotification",
                    {**boot, "firmwareVersion": version},
                    {"status": "Accepted"},
                )
        elif kind == "step" and campaigns:
            (later,) = rest
            name = campaign_timer(campaigns[-1], len(log.records))
            add(TimerFired(name=name, due=log.at + later, at=log.at + later))
        elif kind == "pause" and campaigns:
            (pause,) = rest
            change = CampaignPaused if pause else CampaignResumed
            add(change(request_id="x", at=log.at, key="op", campaign_id=campaigns[-1]))
        elif kind == "cancel" and campaigns:
            add(CampaignCancelled(request_id="x", at=log.at, key="op", campaign_id=campaigns[-1]))
    return log.records


def _shown(views: Views) -> Any:
    return (
        [firmware_json(state) for state in views.firmware.all()],
        [campaign_json(campaign) for campaign in views.firmware.campaigns()],
        views.firmware.anomalies,
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(firmware_operation, min_size=1, max_size=60))
def test_the_fold_of_any_firmware_log(operations: list[tuple[Any, ...]]) -> None:
    """Live (read after every event) equals replay; every station's phase is its last
    phase-moving status's (or its refusal's); a finding is an update reported installed that
    booted into its version before; every campaign's counts cover its stations, a running one is
    within its failure ratio, an ended one has nothing pending."""
    records = _firmware_log(operations)
    live = Views()
    for recorded in records:
        live.apply(recorded)
        _shown(live)
    assert _shown(live) == _shown(Views.replay(records))
    for state in live.firmware.all():
        for update in [state.current, *state.history]:
            if update is None:
                continue
            moved = [PHASES[r.status] for r in update.statuses if r.status in PHASES]
            refused = update.answer is not None and update.answer not in (
                "Accepted",
                "AcceptedCanceled",
            )
            if moved:
                assert update.phase == moved[-1]
            else:
                assert update.phase == ("failed" if refused else "requested")
            if update.finding is not None:  # it said Installed, and booted into the old version
                assert "Installed" in [r.status for r in update.statuses]
                assert update.version_after == update.version_before is not None
    for campaign in live.firmware.campaigns():
        counts = campaign.counts()
        assert sum(counts.values()) == len(campaign.stations)
        if campaign.status == "running":
            assert counts["failed"] <= campaign.created.max_failure_ratio * len(campaign.stations)
            assert counts["stopped"] == 0
        elif campaign.status != "paused":
            assert counts["pending"] == 0 and campaign.ended_at is not None
    findings = {(a.station, a.position) for a in live.firmware.anomalies}
    assert len(findings) == len(live.firmware.anomalies)


def test_a_step_skips_a_station_whose_version_cannot_say_the_update() -> None:
    """A station that reconnected in a version that cannot say the campaign's update (an
    install time, unsigned, in 1.6) is left pending; the rollout goes on."""
    log = test_projections.Log()
    log.open("CP-16")
    log.open("CP-201", "ocpp2.0.1")
    created = CampaignCreated(
        request_id="r",
        at=log.at,
        key="op",
        campaign_id="c1",
        location=LOCATION,
        install_date="2026-12-01T00:00:00Z",
        stations=["CP-16", "CP-201"],
        max_in_flight=2,
    )
    log.records.append(Recorded(len(log.records) + 1, "firmware", 0, created))
    views = Views.replay(log.records)
    campaign = views.firmware.campaign("c1")
    assert campaign is not None
    commands = campaign_step(campaign, views, 0, 1000.0, 7)
    sent = [c for c in commands if isinstance(c, SendCall)]
    assert [(c.station, c.action, c.request_id) for c in sent] == [
        ("CP-201", "UpdateFirmware", "campaign:c1:CP-201")
    ]
    assert sent[0].payload["requestId"] == 7
    assert sent[0].payload["firmware"]["installDateTime"] == "2026-12-01T00:00:00.000Z"
    assert commands[-1] == StartTimer(campaign_timer("c1", 1), 1000.0 + created.interval)


def test_a_campaign_selects_the_stations_of_a_site_and_its_sub_sites() -> None:
    log = test_projections.Log()
    for station in ("CP-A", "CP-B", "CP-C"):
        log.open(station)
        test_projections._boot(log, station)
    for site, parent, stations in (("DEPOT", None, ["CP-A"]), ("BAY", "DEPOT", ["CP-B"])):
        log.add(
            SiteDefined(
                request_id=site, at=log.at, key="k", site=site, parent=parent, stations=stations
            )
        )
    views = log.views()
    depot = CampaignRequest(location=LOCATION, site="DEPOT")
    assert select_stations(views, depot) == ["CP-A", "CP-B"]  # CP-C is in no site
    bay = CampaignRequest(location=LOCATION, site="BAY", stations=["CP-A", "CP-B"])
    assert select_stations(views, bay) == ["CP-B"]
    with pytest.raises(ValueError, match="no site 'NOPE'"):
        select_stations(views, CampaignRequest(location=LOCATION, site="NOPE"))
