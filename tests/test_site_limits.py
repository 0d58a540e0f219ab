"""Site limits end to end: three 1.6 ``ocpp`` charge points in a site (within a feeder)
whose transactions start and stop, one going offline; the site_limits plugin's allocations,
sent as TxProfiles, never sum above the limit at any point of the log; raises wait for the
site's minimum interval (a recorded timer); replay folds the same decisions. And the
allocation rule itself, with nested sites, minimums and held allocations."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargeledger.core.events import Recorded, SiteDefined, TimerStarted
from chargeledger.core.settings import Settings
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.projections.composite import TransactionContext
from chargeledger.projections.sites import SitesProjection, allocate, site_json, site_profile_id
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, running_server
from tests.test_e2e_v201 import until

STATIONS = ("CP-SA", "CP-SB", "CP-SC")
LIMIT = 32.0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _defined(sites: SitesProjection, position: int, **fields: Any) -> None:
    event = SiteDefined(request_id=str(position), at=0.0, key="test", **fields)
    sites.fold(Recorded(position, "site:x", 1, event), None)


def test_allocation_rule_nested_minimums_and_held() -> None:
    sites = SitesProjection()
    _defined(sites, 1, site="feeder", limit=40.0)
    _defined(sites, 2, site="garage", parent="feeder", stations=["A", "B", "C"], limit=32.0)
    _defined(sites, 3, site="kiosk", parent="feeder", stations=["D"], min_allocation=6.0)
    assert sites.sites_of("A") == ["garage", "feeder"]
    assert sites.sites_of("D") == ["kiosk", "feeder"]
    assert sites.stations_in("feeder") == ["A", "B", "C", "D"]
    running = {
        name: {1: TransactionContext(index, float(index))}
        for index, name in enumerate(["A", "B", "C", "D"])
    }
    shares = allocate(sites, running, ["A", "B", "C", "D"])
    # garage: 32/3 each; feeder: 40/4 = 10 each, the smaller share wins.
    assert {key: value for key, (value, _) in shares.items()} == {
        ("A", 1): 10.0,
        ("B", 1): 10.0,
        ("C", 1): 10.0,
        ("D", 1): 10.0,
    }
    # Minimums: 14 A for three transactions at least 6 A each: the last started gets none,
    # the other two share (7 A each).
    _defined(sites, 4, site="small", stations=["A", "B", "C"], limit=14.0, min_allocation=6.0)
    shares = allocate(sites, {k: v for k, v in running.items() if k != "D"}, ["A", "B", "C"])
    assert [shares[(s, 1)][0] for s in "ABC"] == [7.0, 7.0, 0.0]
    # ... unless C has priority: then C and A (the earlier start of the rest) are served.
    _defined(
        sites,
        5,
        site="small",
        stations=["A", "B", "C"],
        limit=14.0,
        min_allocation=6.0,
        priorities={"C": 1},
    )
    shares = allocate(sites, {k: v for k, v in running.items() if k != "D"}, ["A", "B", "C"])
    assert [shares[(s, 1)][0] for s in "ABC"] == [7.0, 0.0, 7.0]
    # By priority: B first up to 16, then A with what remains (4 A, below the minimum: 0),
    # C nothing.
    sites = SitesProjection()  # a site of its own: no garage around it
    _defined(
        sites,
        6,
        site="small",
        stations=["A", "B", "C"],
        limit=20.0,
        strategy="priority",
        priorities={"B": 5},
        max_allocation=16.0,
        min_allocation=6.0,
    )
    shares = allocate(sites, {k: v for k, v in running.items() if k != "D"}, ["A", "B", "C"])
    assert [shares[(s, 1)][0] for s in "ABC"] == [0.0, 16.0, 0.0]


async def _start(cp: Any) -> int:
    started = await cp.call(
        call16.StartTransaction(
            connector_id=1, id_tag="TAG-S", meter_start=0, timestamp=rfc3339(time.time())
        )
    )
    return int(started.transaction_id)


async def settle(server: RunningServer, expected: dict[str, float], what: str) -> None:
    def probe() -> bool | None:
        assert server.csms is not None
        views = server.csms.views
        got = {
            station: round(allocation.limit, 1)
            for (station, _), allocation in views.sites.allocations.items()
            if views.charging_profiles.running(station)
            # answered by the station (or held by one offline)
            and (allocation.accepted or not views.stations.get(station).connected)  # type: ignore[union-attr]
        }
        return True if got == expected else None

    await until(server, probe, what)


def test_three_stations_share_the_site_limit(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'sites.db'}"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        csms = server.csms
        base = f"http://127.0.0.1:{csms.api_port}"
        points = {name: await test_e2e_v16.connect(server, name) for name in STATIONS}
        seen: dict[str, Any] = {}
        try:
            for cp, _, _ in points.values():
                await cp.call(
                    call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
            # The feeder with the CLI (through the API), the garage over HTTP.
            feeder = await asyncio.to_thread(
                _cli, "sites", "set", "feeder", "--limit", "100", "--api", base, "--json"
            )
            assert feeder.returncode == 0, feeder.stderr
            assert json.loads(feeder.stdout)["limit"] == 100
            nowhere = await asyncio.to_thread(
                _cli, "sites", "set", "loop", "--parent", "nowhere", "--api", base
            )
            assert nowhere.returncode == 2
            assert "400 no site 'nowhere' to be the parent" in nowhere.stderr
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                garage = await client.put(
                    "/api/sites/garage",
                    json={
                        "parent": "feeder",
                        "stations": list(STATIONS),
                        "limit": LIMIT,
                        "unit": "A",
                        "min_allocation": 6,
                        "deadband": 1,
                    },
                )
                cycle = await client.put("/api/sites/feeder", json={"parent": "garage"})
                assert garage.status_code == 200, garage.text
                assert cycle.status_code == 400 and "cycle" in cycle.json()["detail"]
            a, b, c = (points[name][0] for name in STATIONS)
            tx_a = await _start(a)
            await settle(server, {"CP-SA": 32.0}, "A alone gets the limit")
            assert a.profiles[site_profile_id(1)][1]["transaction_id"] == tx_a
            tx_b = await _start(b)
            await settle(server, {"CP-SA": 16.0, "CP-SB": 16.0}, "A and B share")
            await _start(c)
            await settle(server, {"CP-SA": 10.6, "CP-SB": 10.6, "CP-SC": 10.6}, "three share")
            await a.call(
                call16.StopTransaction(
                    transaction_id=tx_a, meter_stop=10, timestamp=rfc3339(time.time())
                )
            )
            await settle(server, {"CP-SB": 16.0, "CP-SC": 16.0}, "B and C after A stopped")
            # B goes offline: it holds its 16 A; A starts again and shares what remains.
            _, ws_b, task_b = points["CP-SB"]
            task_b.cancel()
            await ws_b.close()
            await until(
                server,
                lambda: not csms.views.stations.get("CP-SB").connected or None,  # type: ignore[union-attr]
                "B offline",
            )
            await _start(a)
            await settle(
                server, {"CP-SA": 8.0, "CP-SB": 16.0, "CP-SC": 8.0}, "A and C share B's rest"
            )
            # Raises wait for the minimum interval: a timer, not a SetChargingProfile.
            await server.arun(
                partial(
                    csms.define_site,
                    "garage",
                    parent="feeder",
                    stations=list(STATIONS),
                    limit=LIMIT,
                    min_allocation=6,
                    deadband=1,
                    min_interval=3600,
                )
            )
            await c.call(
                call16.StopTransaction(
                    transaction_id=int(
                        csms.views.charging_profiles.running("CP-SC")[1].transaction_id
                    ),
                    meter_stop=10,
                    timestamp=rfc3339(time.time()),
                )
            )

            def timer() -> Any:
                return next(
                    (
                        r.event
                        for r in csms.store.iter_all()
                        if isinstance(r.event, TimerStarted)
                        and r.event.name == "site-limits:CP-SA:1"
                    ),
                    None,
                )

            started = await until(server, timer, "the raise's timer")
            seen["timer_due"] = started.due
            seen["a_after"] = csms.views.sites.allocations[("CP-SA", 1)].limit
            seen["tx_b"] = tx_b
            shown = await asyncio.to_thread(
                _cli, "sites", "show", "garage", "--api", base, "--json"
            )
            seen["shown"] = json.loads(shown.stdout)
        finally:
            for _, ws, task in points.values():
                task.cancel()
                await ws.close()
        return seen

    settings = Settings(port=0, store=store, api_port=0)
    with running_server(settings) as server:
        seen = asyncio.run(scenario(server))
        assert server.csms is not None
        records = list(server.csms.store.iter_all())
        live = [site_json(server.csms.views.sites, s) for s in server.csms.views.sites.all()]
    assert seen["a_after"] == 8.0  # not raised yet
    assert seen["shown"]["parent"] == "feeder"
    assert {(a["station"], a["limit"]) for a in seen["shown"]["allocations"]} >= {
        ("CP-SA", 8.0),
        ("CP-SB", 16.0),
    }
    assert seen["timer_due"] > time.time() + 3000
    # At no point of the log do the allocations of running transactions exceed the limit.
    views = Views()
    peak = 0.0
    for recorded in records:
        views.apply(recorded)
        total = sum(
            allocation.limit
            for (station, place), allocation in views.sites.allocations.items()
            if str(
                getattr(views.charging_profiles.running(station).get(place), "transaction_id", "")
            )
            == str(allocation.transaction_id)
        )
        peak = max(peak, total)
        assert total <= LIMIT + 1e-9, (recorded.position, total)
    assert peak == pytest.approx(32.0)
    # Replay folds the same decisions.
    assert [site_json(views.sites, s) for s in views.sites.all()] == live


def test_a_v201_station_gets_its_allocation_as_a_txprofile(tmp_path: Path) -> None:
    """2.0.1: the allocation names the station's transaction (a string) and its EVSE."""
    station = "CP-S201"

    async def scenario(server: RunningServer) -> Any:
        assert server.csms is not None
        csms = server.csms
        cp, ws, task = await test_e2e_v201.connect(server, station)
        try:
            await cp.boot()
            await server.arun(
                partial(csms.define_site, "solo", stations=[station], limit=11000.0, unit="W")
            )
            await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=rfc3339(time.time()),
                    trigger_reason="CablePluggedIn",
                    seq_no=0,
                    transaction_info={"transaction_id": "TX-SITE"},
                    evse={"id": 1, "connector_id": 1},
                )
            )

            def accepted() -> Any:
                allocation = csms.views.sites.allocations.get((station, 1))
                return allocation if allocation is not None and allocation.accepted else None

            allocation = await until(server, accepted, "the 2.0.1 allocation")
            return allocation, cp.profiles[site_profile_id(1)]
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=f"sqlite:///{tmp_path / 's201.db'}")) as server:
        allocation, (place, profile) = asyncio.run(scenario(server))
    assert (allocation.limit, allocation.unit, allocation.transaction_id) == (
        11000.0,
        "W",
        "TX-SITE",
    )
    assert place == 1 and profile["transaction_id"] == "TX-SITE"
    assert profile["charging_profile_purpose"] == "TxProfile"


@st.composite
def site_trees(
    draw: Any,
) -> tuple[SitesProjection, dict[str, dict[int, TransactionContext]], list[str]]:
    """Random nested sites over up to six stations, running transactions, some offline
    stations holding earlier allocations."""
    sites = SitesProjection()
    stations = [f"S{i}" for i in range(draw(st.integers(1, 6)))]
    names: list[str] = []
    for index in range(draw(st.integers(1, 4))):
        name = f"site{index}"
        members = draw(st.lists(st.sampled_from(stations), max_size=4, unique=True))
        _defined(
            sites,
            index + 1,
            site=name,
            parent=draw(st.sampled_from([None, *names])),
            stations=members,
            limit=draw(st.one_of(st.none(), st.floats(0, 100).map(lambda x: round(x, 1)))),
            min_allocation=draw(st.sampled_from([0.0, 6.0])),
            strategy=draw(st.sampled_from(["equal", "priority"])),
            priorities={s: draw(st.integers(0, 3)) for s in members},
            max_allocation=draw(st.sampled_from([None, 16.0])),
        )
        names.append(name)
    running = {
        s: {1: TransactionContext(i, float(draw(st.integers(0, 100))))}
        for i, s in enumerate(stations)
        if draw(st.booleans())
    }
    connected = [s for s in stations if draw(st.booleans())]
    return sites, running, connected


@settings(max_examples=200, deadline=None)
@given(site_trees())
def test_no_site_sums_above_its_limit(tree: Any) -> None:
    """With every station online, each site's allocations sum to at most its limit."""
    sites, running, _ = tree
    shares = allocate(sites, running, list(running))
    for site in sites.all():
        if site.limit is None:
            continue
        members = sites.stations_in(site.site)
        total = sum(value for (station, _), (value, _) in shares.items() if station in members)
        assert total <= site.limit + 1e-9
        assert all(value >= 0 for value, _ in shares.values())
