"""Smart charging end to end with the ``ocpp`` charge points (1.6 and 2.0.1): profiles set
through the one door (checked first), replaced, bound to and ended with their transaction,
cleared by criteria; the station's composite schedule compared with the CSMS's own (a
mismatch is an audit finding); 2.0.1 GetChargingProfiles awaited over ReportChargingProfiles
parts, external limits (NotifyChargingLimit / ClearedChargingLimit), ISO 15118 charging
needs met with a TxProfile and EV schedules checked; and replay folds the same state."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargeledger.core.audit.findings import Auditor
from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.events import CommandRequested
from chargeledger.core.settings import Settings
from chargeledger.core.times import rfc3339
from chargeledger.core.usecases import UseCaseResult
from chargeledger.core.usecases_smart_charging import ProfilePeriod
from chargeledger.projections import Views
from chargeledger.projections.charging_profiles import charging_profiles_json
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, chargeledger_cli, running_server
from tests.test_e2e_v201 import until


async def run(
    server: RunningServer, use_case: str, station: str, **arguments: Any
) -> UseCaseResult:
    assert server.csms is not None
    result: UseCaseResult = await server.arun(
        partial(getattr(server.csms, use_case), station, **arguments)
    )
    return result


def live_and_replayed(server: RunningServer, station: str) -> tuple[Any, Any]:
    assert server.csms is not None

    async def read() -> Any:
        return charging_profiles_json(server.csms.views.charging_profiles, station)  # type: ignore[union-attr]

    live = server.run(read)
    replayed = Views.replay(server.csms.store.iter_all())
    return live, charging_profiles_json(replayed.charging_profiles, station)


def findings(server: RunningServer) -> list[Any]:
    assert server.csms is not None
    auditor = Auditor()
    for recorded in server.csms.store.iter_all():
        auditor.feed(recorded)
    return auditor.findings()


def commands(server: RunningServer) -> int:
    assert server.csms is not None
    return sum(isinstance(r.event, CommandRequested) for r in server.csms.store.iter_all())


def test_v16_set_check_replace_tx_clear_composite(tmp_path: Path) -> None:
    station = "CP-SC16"
    hour_ago = rfc3339(time.time() - 3600)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        views = server.csms.views
        cp, ws, task = await test_e2e_v16.connect(server, station)
        seen: dict[str, Any] = {}
        try:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            default = await run(
                server,
                "set_charging_profile",
                station,
                purpose="TxDefaultProfile",
                connector_id=1,
                start_schedule=hour_ago,
                periods=[ProfilePeriod(0, 11000)],
            )
            assert (default.accepted, default.action) == (True, "SetChargingProfile")
            first_id = default.values["profile_id"]
            held = views.charging_profiles.profiles(station, 1)
            assert [(p.id, p.purpose, p.unit) for p in held] == [
                (first_id, "TxDefaultProfile", "W")
            ]
            assert cp.profiles[first_id][1]["charging_profile_kind"] == "Absolute"

            # Checked before anything is recorded or sent.
            before = commands(server)
            with pytest.raises(InvalidUseCaseArguments, match="ascend strictly from 0"):
                await run(
                    server,
                    "set_charging_profile",
                    station,
                    purpose="TxDefaultProfile",
                    start_schedule=hour_ago,
                    periods=[ProfilePeriod(60, 10), ProfilePeriod(30, 5)],
                )
            with pytest.raises(InvalidUseCaseArguments, match="on the station"):
                await run(
                    server,
                    "set_charging_profile",
                    station,
                    purpose="ChargePointMaxProfile",
                    connector_id=1,
                    start_schedule=hour_ago,
                    periods=[ProfilePeriod(0, 10)],
                )
            with pytest.raises(InvalidUseCaseArguments, match="no transaction is running"):
                await run(
                    server,
                    "set_charging_profile",
                    station,
                    purpose="TxProfile",
                    kind="Relative",
                    connector_id=1,
                    periods=[ProfilePeriod(0, 10)],
                )
            # What the station says it supports (read into the projection first).
            cp.configuration["ChargingScheduleMaxPeriods"] = "1"
            cp.configuration["ChargingScheduleAllowedChargingRateUnit"] = "Current"
            await run(server, "read_configuration", station)
            with pytest.raises(InvalidUseCaseArguments) as refused:
                await run(
                    server,
                    "set_charging_profile",
                    station,
                    purpose="TxDefaultProfile",
                    start_schedule=hour_ago,
                    periods=[ProfilePeriod(0, 10), ProfilePeriod(60, 5)],
                )
            assert "at most 1 periods" in str(refused.value)
            assert "in Current only, not W" in str(refused.value)
            assert commands(server) == before + 1  # only the read_configuration
            cp.configuration["ChargingScheduleAllowedChargingRateUnit"] = "Current,Power"
            cp.configuration["ChargingScheduleMaxPeriods"] = "5"
            await run(server, "read_configuration", station)

            # Same stack level and purpose on the connector: replaced, as the station does.
            replaced = await run(
                server,
                "set_charging_profile",
                station,
                purpose="TxDefaultProfile",
                connector_id=1,
                start_schedule=hour_ago,
                periods=[ProfilePeriod(0, 9000)],
            )
            second_id = replaced.values["profile_id"]
            assert [p.id for p in views.charging_profiles.profiles(station, 1)] == [second_id]

            # The station's composite equals ours: nothing to report.
            same = await run(
                server, "get_composite_schedule", station, duration=600, connector_id=1
            )
            assert same.accepted and same.values["periods"] == [{"start": 0, "limit": 9000}]
            assert not views.charging_profiles.anomalies
            # The station applies something else: an anomaly, and an audit finding.
            cp.composite = [(0, 16000)]
            other = await run(
                server, "get_composite_schedule", station, duration=600, connector_id=1
            )
            assert other.accepted
            seen["mismatch"] = list(views.charging_profiles.anomalies)
            cp.composite = None

            # A transaction: the TxProfile is bound to it and ends with it.
            started = await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="TAG-1", meter_start=0, timestamp=rfc3339(time.time())
                )
            )
            tx = await run(
                server,
                "set_charging_profile",
                station,
                purpose="TxProfile",
                kind="Relative",
                connector_id=1,
                stack_level=1,
                unit="A",
                periods=[ProfilePeriod(0, 16), ProfilePeriod(1800, 10)],
            )
            assert tx.accepted
            bound = views.charging_profiles.get(station, tx.values["profile_id"])
            assert bound is not None and bound.transaction_id == started.transaction_id
            composite = views.charging_profiles.composite(station, 1, time.time(), 600, "A")
            assert [p.limit for p in composite.periods] == [16]
            await cp.call(
                call16.StopTransaction(
                    transaction_id=started.transaction_id,
                    meter_stop=100,
                    timestamp=rfc3339(time.time()),
                )
            )
            await until(
                server,
                lambda: (
                    views.charging_profiles.get(station, tx.values["profile_id"]) is None or None
                ),
                "the TxProfile to end with its transaction",
            )

            # Cleared by criteria, as the station applies it.
            cleared = await run(
                server,
                "clear_charging_profile",
                station,
                connector_id=1,
                purpose="TxDefaultProfile",
            )
            assert cleared.status == "Accepted"
            assert views.charging_profiles.profiles(station) == []
            assert [p["charging_profile_purpose"] for _, p in cp.profiles.values()] == ["TxProfile"]
            unknown = await run(server, "clear_charging_profile", station, profile_id=424242)
            assert unknown.status == "Unknown"
            with pytest.raises(UnsupportedUseCase):
                await run(server, "get_charging_profiles", station)
        finally:
            task.cancel()
            await ws.close()
        return seen

    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'sc16.db'}")
    with running_server(settings) as server:
        seen = asyncio.run(scenario(server))
        live, replayed = live_and_replayed(server, station)
        found = [f for f in findings(server) if f.kind == "composite_mismatch"]
    [mismatch] = seen["mismatch"]
    assert mismatch.kind == "composite_mismatch" and mismatch.place == 1
    assert "16000 W" in mismatch.detail and "9000 W" in mismatch.detail
    assert [(f.station, f.source, f.detail) for f in found] == [
        (station, "projection", mismatch.detail)
    ]
    assert live == replayed
    assert live["comparisons"][0]["matches"] is False
    # The CLI folds the store: every profile left, and our composite as a table.
    store = settings.store
    assert chargeledger_cli("profiles", "list", "--station", station, store=store) == [
        {**profile, "station": station} for profile in live["profiles"]
    ]
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargeledger.core.cli",
            "profiles",
            "composite",
            station,
            "--connector",
            "1",
            "--duration",
            "600",
            "--store",
            store,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert table[0].split() == ["from", "until", "limit", "W"] and len(table) == 2


def test_v201_report_limits_iso15118_and_clear(tmp_path: Path) -> None:
    station = "CP-SC201"
    now = time.time()
    hour_ago = rfc3339(now - 3600)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        views = server.csms.views
        cp, ws, task = await test_e2e_v201.connect(server, station)
        seen: dict[str, Any] = {}
        try:
            await cp.boot()
            default = await run(
                server,
                "set_charging_profile",
                station,
                purpose="TxDefaultProfile",
                evse_id=1,
                start_schedule=hour_ago,
                periods=[ProfilePeriod(0, 11000)],
            )
            assert default.accepted
            maximum = await run(
                server,
                "set_charging_profile",
                station,
                purpose="ChargingStationMaxProfile",
                kind="Recurring",
                recurrency="Daily",
                start_schedule=hour_ago,
                unit="A",
                periods=[ProfilePeriod(0, 32)],
            )
            assert maximum.accepted
            assert cp.profiles[maximum.values["profile_id"]][1]["recurrency_kind"] == "Daily"

            # The station's profiles, including an EMS's, in ReportChargingProfiles parts.
            cp.ems_profiles = [
                {
                    "id": 900,
                    "stack_level": 0,
                    "charging_profile_purpose": "ChargingStationExternalConstraints",
                    "charging_profile_kind": "Absolute",
                    "charging_schedule": [
                        {
                            "id": 900,
                            "start_schedule": hour_ago,
                            "charging_rate_unit": "W",
                            "charging_schedule_period": [{"start_period": 0, "limit": 20000}],
                        }
                    ],
                }
            ]
            report = await run(server, "get_charging_profiles", station)
            assert (report.status, report.accepted) == ("Accepted", True)
            reported = {(p["id"], p["source"], p["purpose"]) for p in report.values["profiles"]}
            assert reported == {
                (default.values["profile_id"], "CSO", "TxDefaultProfile"),
                (maximum.values["profile_id"], "CSO", "ChargingStationMaxProfile"),
                (900, "EMS", "ChargingStationExternalConstraints"),
            }
            composite = views.charging_profiles.composite(station, 1, time.time(), 600, "W")
            assert [p.limit for p in composite.periods] == [11000]

            # A local limit the station reports, and its end.
            await cp.call(
                call201.NotifyChargingLimit(
                    charging_limit={"charging_limit_source": "SO", "is_grid_critical": True},
                    evse_id=1,
                    charging_schedule=[
                        {
                            "id": 1,
                            "charging_rate_unit": "W",
                            "charging_schedule_period": [{"start_period": 0, "limit": 7000}],
                        }
                    ],
                )
            )
            limited = views.charging_profiles.composite(station, 1, time.time(), 600, "W")
            assert [p.limit for p in limited.periods] == [7000]
            await cp.call(call201.ClearedChargingLimit(charging_limit_source="SO", evse_id=1))
            freed = views.charging_profiles.composite(station, 1, time.time(), 600, "W")
            assert [p.limit for p in freed.periods] == [11000]

            # ISO 15118: the EV's needs are answered and met with a TxProfile of its transaction.
            await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=rfc3339(time.time()),
                    trigger_reason="CablePluggedIn",
                    seq_no=0,
                    transaction_info={"transaction_id": "TX-15118"},
                    evse={"id": 1, "connector_id": 1},
                )
            )
            with pytest.raises(InvalidUseCaseArguments, match="'TX-15118' runs on EVSE 1"):
                await run(
                    server,
                    "set_charging_profile",
                    station,
                    purpose="TxProfile",
                    kind="Relative",
                    evse_id=1,
                    periods=[ProfilePeriod(0, 10)],
                )
            needs = await cp.call(
                call201.NotifyEVChargingNeeds(
                    evse_id=1,
                    charging_needs={
                        "requested_energy_transfer": "AC_three_phase",
                        "departure_time": rfc3339(now + 7200),
                        "ac_charging_parameters": {
                            "energy_amount": 20000,
                            "ev_min_current": 6,
                            "ev_max_current": 40,
                            "ev_max_voltage": 400,
                        },
                    },
                )
            )
            assert needs.status == "Accepted"

            def proposed() -> Any:
                found = [
                    p
                    for p in views.charging_profiles.profiles(station, 1)
                    if p.purpose == "TxProfile"
                ]
                return found[0] if found else None

            tx_profile = await until(server, proposed, "the proposed TxProfile")
            # The EV's 40 A capped by the station maximum of 32 A and the EMS's 20 kW (on
            # three phases of 230 V); the default profile is what the TxProfile replaces.
            assert (tx_profile.transaction_id, tx_profile.unit) == ("TX-15118", "A")
            assert [round(p.limit, 2) for p in tx_profile.periods] == [round(20000 / 690, 2)]

            def ev_schedule(limit: float) -> Any:
                return call201.NotifyEVChargingSchedule(
                    time_base=rfc3339(time.time()),
                    evse_id=1,
                    charging_schedule={
                        "id": 1,
                        "charging_rate_unit": "A",
                        "charging_schedule_period": [{"start_period": 0, "limit": limit}],
                    },
                )

            seen["within"] = (await cp.call(ev_schedule(25))).status
            seen["above"] = (await cp.call(ev_schedule(48))).status

            # Cleared by criteria: the EVSE's TxDefaultProfile only.
            cleared = await run(
                server,
                "clear_charging_profile",
                station,
                evse_id=1,
                purpose="TxDefaultProfile",
            )
            assert cleared.status == "Accepted"
            left = {p.purpose for p in views.charging_profiles.profiles(station)}
            assert left == {
                "ChargingStationMaxProfile",
                "ChargingStationExternalConstraints",
                "TxProfile",
            }

            # The station says it applies 40 A where we installed at most 29 A.
            cp.composite = [(0, 40)]
            await run(server, "get_composite_schedule", station, duration=300, evse_id=1, unit="A")
            seen["anomalies"] = [a.kind for a in views.charging_profiles.anomalies]
        finally:
            task.cancel()
            await ws.close()
        return seen

    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'sc201.db'}")
    with running_server(settings) as server:
        seen = asyncio.run(scenario(server))
        live, replayed = live_and_replayed(server, station)
        kinds = [f.kind for f in findings(server)]
    assert (seen["within"], seen["above"]) == ("Accepted", "Rejected")
    assert seen["anomalies"] == ["ev_schedule_above_limit", "composite_mismatch"]
    assert "composite_mismatch" in kinds and "ev_schedule_above_limit" in kinds
    assert live == replayed
    assert live["ev_charging_needs"][0]["max_current"] == 40
