"""Site limits end to end: three 1.6 ``ocpp`` charge points in a site (within a feeder)
whose transactions start and stop, one going offline; the site_limits plugin's allocations,
sent as TxProfiles, never sum above the limit at any point of the log; raises wait for the
site's minimum interval (a recorded timer); replay folds the same decisions. And the
allocation rule itself, with nested sites, minimums and held allocations."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargeledger.core.commands import SendCall
from chargeledger.core.events import (
    CommandRequested,
    FrameLogged,
    Recorded,
    SessionClosed,
    SessionOpened,
    SiteDefined,
    SitePeriod,
    TimerStarted,
    decode_event,
)
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.core.site_decisions import (
    recorded_site_decisions,
    replayed_site_decisions,
    site_decisions_in,
)
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.projections.composite import TransactionContext
from chargeledger.projections.sites import (
    PHASES,
    Limits,
    SitesProjection,
    allocate,
    check_site_phases,
    limits_at,
    limits_within,
    next_change,
    parse_time_of_day,
    site_json,
    site_load,
    site_profile_id,
)
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
    # Replay folds the same decisions, and today's plugins take them again (B offline, the
    # raise's timer included).
    assert [site_json(views.sites, s) for s in views.sites.all()] == live
    decided = recorded_site_decisions(records)
    assert {d.kind for d in decided} == {"allocation", "timer"}
    assert replayed_site_decisions(records, PluginHost(settings)) == decided


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


def test_per_phase_limits_and_one_phase_stations() -> None:
    """A site limited per phase: a one-phase station loads only its phase, so the stations
    on a tight phase share it and the others are not held back by it."""
    sites = SitesProjection()
    _defined(
        sites,
        1,
        site="yard",
        stations=["A", "B", "C"],
        phase_limits={"L1": 16.0, "L2": 32.0, "L3": 32.0},
        station_phases={"B": ["L1"], "C": ["L2"]},
    )
    assert sites.phases_of("A") == ("L1", "L2", "L3")
    assert sites.phases_of("B") == ("L1",)
    running = {name: {1: TransactionContext(i, float(i))} for i, name in enumerate("ABC")}
    shares = allocate(sites, running, "ABC")
    # L1 carries A and B: 8 A each; C on L2 shares L2 with A only: 16 A.
    assert {key[0]: value for key, (value, _) in shares.items()} == {"A": 8, "B": 8, "C": 16}
    load = site_load(sites, "yard", shares)
    assert load.phases == {"L1": 16.0, "L2": 24.0, "L3": 8.0}
    # In W a three-phase transaction draws a third of its allocation on each phase.
    _defined(
        sites,
        2,
        site="yard",
        stations=["A", "B"],
        unit="W",
        phase_limits={"L1": 3680.0},
        station_phases={"B": ["L1"]},
    )
    shares = allocate(sites, {k: v for k, v in running.items() if k != "C"}, "AB")
    # Equal shares v: on L1 A draws v/3 and B v, so v = 3680 / (4/3) = 2760 W.
    assert [shares[(s, 1)][0] for s in "AB"] == [2760.0, 2760.0]
    assert site_load(sites, "yard", shares).phases == {"L1": 3680.0, "L2": 920.0, "L3": 920.0}
    # The total and the phases together: the lower wins.
    _defined(sites, 3, site="yard", stations=["A", "B"], limit=10.0, phase_limits={"L1": 16.0})
    shares = allocate(sites, {k: v for k, v in running.items() if k != "C"}, "AB")
    assert [shares[(s, 1)][0] for s in "AB"] == [5.0, 5.0]


def test_daily_periods_change_the_limit_ahead_of_time() -> None:
    """A lower limit 17:00-20:00 (UTC) every day: allocations decided within ``lead``
    seconds before 17:00 already respect it; after 20:00 the site's own limit is back."""
    sites = SitesProjection()
    _defined(
        sites,
        1,
        site="depot",
        stations=["A", "B"],
        limit=32.0,
        phase_limits={"L1": 30.0},
        periods=[SitePeriod(start="17:00", end="20:00", limit=20.0, phase_limits={"L1": 12.0})],
    )
    state = sites.get("depot")
    assert state is not None
    day = 20 * 86400.0
    at = {name: day + parse_time_of_day(name) for name in ("16:58", "16:59:30", "18:00", "20:00")}
    assert limits_at(state, at["16:58"]) == Limits(32.0, {"L1": 30.0})
    assert limits_at(state, at["18:00"]) == Limits(20.0, {"L1": 12.0})
    assert limits_at(state, at["20:00"]) == Limits(32.0, {"L1": 30.0})
    assert limits_within(state, at["16:59:30"], lead=60) == Limits(20.0, {"L1": 12.0})
    assert limits_within(state, at["16:58"], lead=60) == Limits(32.0, {"L1": 30.0})
    # The plugin's timer: 60 s before 17:00 (to go down), then at 20:00 (to go up).
    assert next_change(sites, at["16:58"], 60) == day + 17 * 3600 - 60
    assert next_change(sites, day + 17 * 3600 - 60, 60) == day + 17 * 3600
    assert next_change(sites, at["18:00"], 60) == day + 20 * 3600 - 60
    running = {name: {1: TransactionContext(i, day)} for i, name in enumerate("AB")}
    assert allocate(sites, running, "AB", at["16:58"], 60)[("A", 1)][0] == 15.0
    assert allocate(sites, running, "AB", at["16:59:30"], 60)[("A", 1)][0] == 6.0
    # Across midnight.
    _defined(
        sites,
        2,
        site="night",
        stations=["C"],
        limit=10.0,
        periods=[SitePeriod(start="22:00", end="06:00", limit=40.0)],
    )
    night = sites.get("night")
    assert night is not None
    assert limits_at(night, day + 23 * 3600).total == 40.0
    assert limits_at(night, day + 5 * 3600).total == 40.0
    assert limits_at(night, day + 12 * 3600).total == 10.0


def test_bad_phases_and_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="phases are L1, L2, L3, not 'L4'"):
        check_site_phases({"L4": 1.0}, {}, [])
    with pytest.raises(ValueError, match="name each of its phases once"):
        check_site_phases({}, {"A": ["L1", "L1"]}, [])
    with pytest.raises(ValueError, match="not a time of day"):
        check_site_phases({}, {}, [SitePeriod(start="25:00", end="06:00")])
    with pytest.raises(ValueError, match="no length"):
        check_site_phases({}, {}, [SitePeriod(start="06:00", end="06:00:00")])


def test_a_site_of_an_older_log_decodes_without_phases_or_periods() -> None:
    """SiteDefined as logs held it before per-phase and time-varying limits: it decodes,
    with no phase limits, every station on three phases, no periods."""
    old = (
        b'{"request_id":"r","at":1.0,"key":"k","site":"old","parent":null,'
        b'"stations":["A"],"limit":32.0,"unit":"A","min_allocation":0.0,"deadband":0.0,'
        b'"min_interval":0.0,"description":"","strategy":"equal","priorities":{},'
        b'"max_allocation":null}'
    )
    event = decode_event("SiteDefined", old)
    assert isinstance(event, SiteDefined)
    assert (event.phase_limits, event.station_phases, event.periods) == ({}, {}, [])
    sites = SitesProjection()
    sites.fold(Recorded(1, "site:x", 1, event), None)
    running = {"A": {1: TransactionContext(1, 0.0)}}
    assert allocate(sites, running, ["A"], at=1000.0, lead=60) == {("A", 1): (32.0, "A")}


@st.composite
def phase_sites(
    draw: Any,
) -> tuple[SitesProjection, dict[str, dict[int, TransactionContext]], float, float]:
    """Random nested sites with totals, per-phase limits, one-phase stations and daily
    periods; running transactions; an instant and a lead time."""
    sites = SitesProjection()
    stations = [f"S{i}" for i in range(draw(st.integers(1, 6)))]
    limit = st.one_of(st.none(), st.floats(0, 100).map(lambda x: round(x, 1)))
    phase_limits = st.dictionaries(
        st.sampled_from(PHASES), st.floats(0, 64).map(lambda x: round(x, 1)), max_size=3
    )
    clock = st.integers(0, 86399).map(lambda s: f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}")
    names: list[str] = []
    for index in range(draw(st.integers(1, 3))):
        members = draw(st.lists(st.sampled_from(stations), max_size=4, unique=True))
        periods = []
        for _ in range(draw(st.integers(0, 2))):
            start, end = draw(clock), draw(clock)
            if start != end:
                periods.append(
                    SitePeriod(
                        start=start, end=end, limit=draw(limit), phase_limits=draw(phase_limits)
                    )
                )
        _defined(
            sites,
            index + 1,
            site=f"site{index}",
            parent=draw(st.sampled_from([None, *names])),
            stations=members,
            limit=draw(limit),
            unit=draw(st.sampled_from(["A", "W"])),
            phase_limits=draw(phase_limits),
            station_phases={
                s: draw(st.lists(st.sampled_from(PHASES), min_size=1, max_size=3, unique=True))
                for s in members
                if draw(st.booleans())
            },
            periods=periods,
            min_allocation=draw(st.sampled_from([0.0, 6.0])),
            strategy=draw(st.sampled_from(["equal", "priority"])),
            priorities={s: draw(st.integers(0, 3)) for s in members},
            max_allocation=draw(st.sampled_from([None, 16.0])),
        )
        names.append(f"site{index}")
    running = {
        s: {place: TransactionContext(f"{s}-{place}", float(draw(st.integers(0, 100))))}
        for s in stations
        if draw(st.booleans())
        for place in range(1, draw(st.integers(1, 2)) + 1)
    }
    at = float(draw(st.integers(0, 3 * 86400)))
    return sites, running, at, float(draw(st.sampled_from([0, 60, 900])))


@settings(max_examples=300, deadline=None)
@given(phase_sites())
def test_no_phase_is_ever_above_its_limit(case: Any) -> None:
    """Allocations decided at ``at`` (the lowest limits of the next ``lead`` seconds) hold
    until the plugin's next timer: at every instant until then, each site's allocations
    sum to at most its limit in force, in total and on every phase."""
    sites, running, at, lead = case
    shares = allocate(sites, running, list(running), at, lead)
    assert all(value >= 0 for value, _ in shares.values())
    until = next_change(sites, at, lead)
    # Until the timer fires (then the plugin decides again) the limits change only where a
    # period begins or ends: those instants, and the last one before the timer.
    instants = [at] if until is None else [at, until - 1e-3]
    boundary = next_change(sites, at, 0)
    while until is not None and boundary is not None and boundary < until:
        instants.append(boundary)
        boundary = next_change(sites, boundary, 0)
    for site in sites.all():
        load = site_load(sites, site.site, shares)
        for instant in instants:
            limits = limits_at(site, instant)
            if limits.total is not None:
                assert load.total is not None and load.total <= limits.total + 1e-6
            for phase, value in limits.phases.items():
                assert load.phases[phase] <= value + 1e-6, (site.site, phase, instant)


def _in_force(views: Views) -> dict[tuple[str, int], tuple[float, str]]:
    """The allocations of the transactions running (those of ended ones no longer load)."""
    return {
        (station, place): (allocation.limit, allocation.unit)
        for (station, place), allocation in views.sites.allocations.items()
        if str(getattr(views.charging_profiles.running(station).get(place), "transaction_id", ""))
        == str(allocation.transaction_id)
    }


def test_a_lower_evening_limit_is_met_before_it_begins(tmp_path: Path) -> None:
    """Daily periods end to end: two 1.6 ``ocpp`` charge points share 32 A; a period of
    10 A (HH:MM:SS, UTC) begins a few seconds later. The plugin's recorded timer lowers the
    allocations ``lead`` seconds before it begins and raises them when it ends; at no
    instant of the log, the period's boundaries included, do they exceed the limit in
    force. A replay of the log takes the same allocation decisions; another stack level
    takes other ones, and ``replay --what-if --config`` says which."""
    store = f"sqlite:///{tmp_path / 'evening.db'}"
    begin = math.ceil(time.time()) + 6
    end = begin + 3

    def clock(at: float) -> str:
        return time.strftime("%H:%M:%S", time.gmtime(at))

    async def scenario(server: RunningServer) -> None:
        assert server.csms is not None
        csms = server.csms
        points = {name: await test_e2e_v16.connect(server, name) for name in STATIONS[:2]}
        try:
            for cp, _, _ in points.values():
                await cp.call(
                    call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
            await server.arun(
                partial(
                    csms.define_site,
                    "evening",
                    stations=list(STATIONS[:2]),
                    limit=LIMIT,
                    periods=[SitePeriod(start=clock(begin), end=clock(end), limit=10.0)],
                )
            )
            # Back to back: B's start may be reacted to before A's first allocation is
            # recorded; it waits for it (in flight), so the two never add up above 32 A.
            await asyncio.gather(*(_start(cp) for cp, _, _ in points.values()))
            await settle(server, {"CP-SA": 16.0, "CP-SB": 16.0}, "two share 32 A")
            await settle(server, {"CP-SA": 5.0, "CP-SB": 5.0}, "lowered for the period")
            await settle(server, {"CP-SA": 16.0, "CP-SB": 16.0}, "raised after it")
        finally:
            for _, ws, task in points.values():
                task.cancel()
                await ws.close()

    settings = Settings(port=0, store=store, api_port=0, plugins={"site_limits": {"lead": 1.0}})
    with running_server(settings) as server:
        asyncio.run(scenario(server))
        assert server.csms is not None
        records = list(server.csms.store.iter_all())
    # The timeline: at every event, and just as each boundary passes, the allocations in
    # force are within the limit in force.
    views = Views()
    boundaries = [float(begin), float(end)]
    lowest = math.inf
    for record in records:
        at = getattr(record.event, "at", None)
        while boundaries and at is not None and at > boundaries[0]:
            state = views.sites.get("evening")
            assert state is not None
            load = site_load(views.sites, "evening", _in_force(views))
            assert load.total is not None
            assert load.total <= (limits_at(state, boundaries.pop(0)).total or 0) + 1e-9
        views.apply(record)
        state = views.sites.get("evening")
        if state is not None and at is not None:
            load = site_load(views.sites, "evening", _in_force(views))
            assert load.total is not None and load.total <= (limits_at(state, at).total or 0)
            lowest = min(lowest, load.total) if _in_force(views) else lowest
    assert not boundaries and lowest == 10.0
    assert any(
        isinstance(r.event, TimerStarted) and r.event.name == "site-limits:period" for r in records
    )
    # Replay: the same allocation decisions, named after the events they reacted to.
    decided = recorded_site_decisions(records)
    assert sum(d.kind == "allocation" for d in decided) >= 6
    assert replayed_site_decisions(records, PluginHost(settings)) == decided
    other = msgspec.structs.replace(settings, plugins={"site_limits": {"stack_level": 9}})
    assert replayed_site_decisions(records, PluginHost(other)) != decided
    # `chargeledger replay --what-if`: the same today; with another stack level, they differ.
    config = tmp_path / "other.toml"
    config.write_text("[plugins.site_limits]\nlead = 1.0\n", encoding="utf-8")
    same = _cli("replay", "--what-if", "--store", store, "--config", str(config))
    assert f"site allocations: {len(decided)} decisions recorded" in same.stdout, same.stderr
    assert "taken again today: the same" in same.stdout and same.returncode == 0, same.stdout
    config.write_text("[plugins.site_limits]\nlead = 1.0\nstack_level = 9\n", encoding="utf-8")
    changed = _cli("replay", "--what-if", "--store", store, "--config", str(config))
    assert changed.returncode == 1
    assert "site allocations:" in changed.stdout and "they differ" in changed.stdout
    assert '"stackLevel":9' in changed.stdout and '"stackLevel":8' in changed.stdout


def test_phases_and_periods_over_the_api_and_the_cli(tmp_path: Path) -> None:
    """Per-phase limits, one-phase stations and daily periods set with ``chargeledger sites
    set`` and ``PUT /api/sites/{site}``, shown back; bad ones refused with the reason and
    nothing recorded."""
    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'api.db'}", api_port=0)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        base = f"http://127.0.0.1:{server.csms.api_port}"
        seen: dict[str, Any] = {}
        shown = await asyncio.to_thread(
            _cli,
            *("sites", "set", "yard", "--station", "CP-1", "--station", "CP-2"),
            *("--limit", "63", "--phase-limit", "L1=40", "--phase-limit", "L2=63"),
            *("--station-phases", "CP-2=L1", "--period", "17:00-20:00=32,L1=20"),
            *("--api", base, "--json"),
        )
        assert shown.returncode == 0, shown.stderr
        seen["cli"] = json.loads(shown.stdout)
        bad_cli = await asyncio.to_thread(
            _cli, "sites", "set", "yard", "--period", "17:00=32", "--api", base
        )
        seen["bad_cli"] = (bad_cli.returncode, bad_cli.stderr)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for body in (
                {"phase_limits": {"L4": 16}},
                {"station_phases": {"CP-1": []}},
                {"periods": [{"start": "25:00", "end": "06:00", "limit": 10}]},
                {"periods": [{"start": "17:00", "end": "20:00", "limt": 10}]},
                {"phase_limits": {"L1": -1}},
            ):
                answer = await client.put("/api/sites/other", json=body)
                seen.setdefault("refused", []).append((answer.status_code, answer.text))
            seen["other"] = (await client.get("/api/sites/other")).status_code
        return seen

    with running_server(settings) as server:
        seen = asyncio.run(scenario(server))
    assert seen["cli"]["phase_limits"] == {"L1": 40.0, "L2": 63.0}
    assert seen["cli"]["station_phases"] == {"CP-2": ["L1"]}
    assert seen["cli"]["periods"] == [
        {"start": "17:00", "end": "20:00", "limit": 32.0, "phase_limits": {"L1": 20.0}}
    ]
    assert seen["bad_cli"][0] == 2 and "expected START-END=LIMIT" in seen["bad_cli"][1]
    refused = seen["refused"]
    assert [status for status, _ in refused] == [400] * 5
    assert "not 'L4'" in refused[0][1] and "name each of its phases once" in refused[1][1]
    assert "not a time of day" in refused[2][1] and "limt" in refused[3][1]
    assert "phase_limits L1 must not be negative" in refused[4][1]
    assert seen["other"] == 404


class _Log:
    """A log written by hand, folded as it grows, reacted to by today's plugins as the
    dispatcher does: for the orderings a live run produces only by chance."""

    def __init__(self) -> None:
        self.views = Views()
        self.plugins = PluginHost(Settings())
        self.position = 0
        self.at = 1_000_000.0

    def add(self, event: Any) -> list[Any]:
        self.position += 1
        self.at += 1
        recorded = Recorded(self.position, f"s:{self.position}", 1, event)
        self.views.apply(recorded)
        return site_decisions_in(self.plugins.react(recorded, self.views))

    def frame(self, station: str, direction: str, frame: list[Any]) -> list[Any]:
        text = json.dumps(frame)
        event = FrameLogged(
            station=station, session=station, at=self.at, direction=direction, text=text
        )  # type: ignore[arg-type]
        return self.add(event)

    def start(self, station: str, transaction_id: int) -> list[Any]:
        request = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": rfc3339(self.at)}
        self.frame(station, "in", [2, f"s{transaction_id}", "StartTransaction", request])
        answer = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
        return self.frame(station, "out", [3, f"s{transaction_id}", answer])

    def send(self, decision: Any) -> list[Any]:
        """The dispatcher records the decision, sends it, and the station accepts it."""
        requested = CommandRequested(
            request_id=decision.name,
            station=decision.station,
            at=self.at,
            key="plugins",
            role="operator",
            mode="message",
            command=decision.action,
            payload=decision.payload,
        )
        self.add(requested)
        message = f"m{self.position}"
        self.frame(decision.station, "out", [2, message, decision.action, decision.payload])
        return self.frame(decision.station, "in", [3, message, {"status": "Accepted"}])


def _limits(decisions: list[Any]) -> dict[str, float]:
    return {
        d.station: d.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
            "limit"
        ]
        for d in decisions
        if d.kind == "allocation"
    }


def test_a_decision_not_yet_recorded_holds_back_the_next() -> None:
    """B starts right after A, before the dispatcher has recorded A's first allocation (one
    commit batch): B's decision already sees A's in flight and sends nothing (A's 32 A and
    a 16 A for B could otherwise both be in force). A's answer brings the decrease to 16 A,
    its answer B's 16 A: at no point could the sum exceed 32 A, in whatever order the
    station receives them."""
    log = _Log()
    for station in ("A", "B"):
        log.add(SessionOpened(station=station, session=station, at=log.at, protocol="ocpp1.6"))
    log.add(
        SiteDefined(request_id="d", at=log.at, key="k", site="s", stations=["A", "B"], limit=32.0)
    )
    first = log.start("A", 1)
    assert _limits(first) == {"A": 32.0}
    assert log.start("B", 2) == []  # A's 32 A is in flight, noted but not recorded yet
    down = log.send(first[0])
    assert _limits(down) == {"A": 16.0}  # answered: now the decrease, alone
    up = log.send(down[0])
    assert _limits(up) == {"B": 16.0}
    assert log.send(up[0]) == []
    assert {k: a.limit for k, a in log.views.sites.allocations.items()} == {
        ("A", 1): 16.0,
        ("B", 1): 16.0,
    }
    # A decision lost before it was recorded holds its place only so long.
    log.add(SessionClosed(station="B", session="B", at=log.at, code=1000))
    log.views.sites.note(
        [SendCall("A", "SetChargingProfile", first[0].payload, "site-limits:lost:A:1")], log.at
    )
    assert log.views.sites.in_flight(log.at, 120) == {("A", 1): 32.0}
    assert log.views.sites.in_flight(log.at + 121, 120) == {}


def test_a_one_phase_station_is_told_its_phases() -> None:
    """The allocation of a one-phase station says ``numberPhases`` 1, and it shares only its
    phase: with L1 at 16 A, A (three phases) and B (on L1) get 8 A each, not 16 each."""
    log = _Log()
    for station in ("A", "B"):
        log.add(SessionOpened(station=station, session=station, at=log.at, protocol="ocpp1.6"))
    log.add(
        SiteDefined(
            request_id="d",
            at=log.at,
            key="k",
            site="s",
            stations=["A", "B"],
            phase_limits={"L1": 16.0},
            station_phases={"B": ["L1"]},
        )
    )
    first = log.start("A", 1)
    assert _limits(first) == {"A": 16.0}
    assert log.start("B", 2) == []  # A's allocation is in flight
    down = log.send(first[0])
    assert _limits(down) == {"A": 8.0}
    (up,) = log.send(down[0])
    assert _limits([up]) == {"B": 8.0}
    period = up.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]
    assert period == {"startPeriod": 0, "limit": 8.0, "numberPhases": 1}
    assert (
        "numberPhases"
        not in down[0].payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][
            0
        ]
    )
