"""The CSMS's composite schedule (projections/composite.py): the worked examples of OCPP 1.6
section 3.13 (the daily default profile of 3.13.4; stacking as the 1.6 compliance test
"Stacking Charging Profiles" builds it; purposes combined: a station maximum over a default
and a transaction profile), relative profiles from the transaction start, recurrence,
validity, unit conversion, and two properties: the composite never exceeds an applicable
maximum, and with one purpose it is the highest-stack-level profile's limit."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.projections.composite import (
    ChargingPeriod,
    ChargingProfile,
    TransactionContext,
    compare_schedules,
    composite_schedule,
    convert,
    limit_at,
    parse_profile,
    schedule_svg,
    schedule_table,
)
from chargeledger.projections.reservations import parse_time

T0 = parse_time("2026-04-01T00:00:00Z")
assert T0 is not None
HOUR = 3600


def profile(wire: dict[str, Any], place: int = 1, at: float = T0) -> ChargingProfile:
    parsed = parse_profile(wire, station="CP", place=place, at=at, position=1)
    assert parsed is not None, wire
    return parsed


def wire16(
    profile_id: int,
    purpose: str,
    periods: list[tuple[int, float]],
    *,
    stack_level: int = 0,
    kind: str = "Absolute",
    unit: str = "W",
    **extra: Any,
) -> dict[str, Any]:
    schedule = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": v} for s, v in periods],
    }
    for key in ("duration", "startSchedule"):
        if key in extra:
            schedule[key] = extra.pop(key)
    return {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
        **extra,
    }


def shape(schedule: Any) -> list[tuple[int, float | None]]:
    return [(p.start, p.limit) for p in schedule.periods]


def test_the_daily_default_profile_of_section_3_13_4() -> None:
    """OCPP 1.6 3.13.4: a daily TxDefaultProfile limiting to 6 kW between 08:00 and 20:00,
    11 kW otherwise, recurring from 2013-01-01; any later day looks the same."""
    daily = profile(
        wire16(
            100,
            "TxDefaultProfile",
            [(0, 11000), (28800, 6000), (72000, 11000)],
            kind="Recurring",
            recurrencyKind="Daily",
            duration=86400,
            startSchedule="2013-01-01T00:00:00Z",
        ),
        place=0,
    )
    day = composite_schedule([daily], "CP", 1, T0, 86400, "W")
    assert shape(day) == [(0, 11000), (8 * HOUR, 6000), (20 * HOUR, 11000)]
    # A window starting mid-day, across midnight.
    evening = composite_schedule([daily], "CP", 1, T0 + 19 * HOUR, 14 * HOUR, "W")
    assert shape(evening) == [(0, 6000), (HOUR, 11000), (13 * HOUR, 6000)]


def test_stacking_the_higher_level_wins_where_it_covers() -> None:
    """Two absolute TxDefaultProfiles from the same start (the 1.6 compliance test's
    stacking case): level 0 for 400 s (6, 8, 10 A from 0, 100, 200 s), level 1 for 150 s
    (10 A, 6 A from 100 s): level 1 rules its 150 s, level 0 the rest."""
    start = "2026-04-01T00:00:00Z"
    low = profile(
        wire16(
            1,
            "TxDefaultProfile",
            [(0, 6), (100, 8), (200, 10)],
            unit="A",
            duration=400,
            startSchedule=start,
        )
    )
    high = profile(
        wire16(
            2,
            "TxDefaultProfile",
            [(0, 10), (100, 6)],
            stack_level=1,
            unit="A",
            duration=150,
            startSchedule=start,
        )
    )
    composite = composite_schedule([low, high], "CP", 1, T0, 400, "A")
    assert shape(composite) == [(0, 10), (100, 6), (150, 8), (200, 10)]
    # Past both durations nothing applies.
    assert shape(composite_schedule([low, high], "CP", 1, T0, 500, "A"))[-1] == (400, None)


def test_purposes_combined_max_caps_tx_replaces_default() -> None:
    """A station maximum (connector 0) of 10 A caps everything; the TxProfile of the
    running transaction replaces the TxDefaultProfile; the composite is the minimum."""
    start = "2026-04-01T00:00:00Z"
    maximum = profile(
        wire16(1, "ChargePointMaxProfile", [(0, 10)], unit="A", startSchedule=start), 0
    )
    default = profile(
        wire16(2, "TxDefaultProfile", [(0, 16), (300, 8)], unit="A", startSchedule=start), 0
    )
    tx = profile(
        wire16(3, "TxProfile", [(0, 6), (200, 12)], unit="A", kind="Relative", transactionId=7)
    )
    running = TransactionContext(7, T0 + 100)
    without = composite_schedule([maximum, default, tx], "CP", 1, T0, 600, "A")
    assert shape(without) == [(0, 10), (300, 8)]  # no transaction: no TxProfile
    with_tx = composite_schedule([maximum, default, tx], "CP", 1, T0, 600, "A", transaction=running)
    # Before the transaction began the relative TxProfile does not cover: the default rules.
    assert shape(with_tx) == [(0, 10), (100, 6), (300, 10)]
    other = TransactionContext(8, T0)  # a TxProfile of another transaction is ignored
    assert shape(
        composite_schedule([maximum, default, tx], "CP", 1, T0, 600, "A", transaction=other)
    ) == shape(without)
    # The station itself (connector 0): its own profiles only.
    assert shape(composite_schedule([maximum, default, tx], "CP", 0, T0, 600, "A")) == [
        (0, 10),
        (300, 8),
    ]


def test_connector_default_replaces_the_station_default() -> None:
    station_default = profile(
        wire16(1, "TxDefaultProfile", [(0, 20)], unit="A", startSchedule="2026-04-01T00:00:00Z"), 0
    )
    connector_default = profile(
        wire16(
            2,
            "TxDefaultProfile",
            [(0, 12)],
            unit="A",
            startSchedule="2026-04-01T00:10:00Z",
            duration=600,
        ),
        2,
    )
    profiles = [station_default, connector_default]
    assert shape(composite_schedule(profiles, "CP", 2, T0, 1800, "A")) == [
        (0, 20),
        (600, 12),
        (1200, 20),
    ]
    assert shape(composite_schedule(profiles, "CP", 1, T0, 1800, "A")) == [(0, 20)]


def test_validity_weekly_recurrence_and_units() -> None:
    weekly = profile(
        wire16(
            5,
            "ChargePointMaxProfile",
            [(0, 32)],
            unit="A",
            kind="Recurring",
            recurrencyKind="Weekly",
            startSchedule="2026-03-30T08:00:00Z",  # a Monday
            duration=2 * HOUR,
            validFrom="2026-04-05T00:00:00Z",
            validTo="2026-04-14T00:00:00Z",
        ),
        0,
    )
    monday = parse_time("2026-04-06T00:00:00Z")
    assert monday is not None
    day = composite_schedule([weekly], "CP", 1, monday, 86400, "W")
    assert shape(day) == [(0, None), (8 * HOUR, 32 * 230 * 3), (10 * HOUR, None)]
    # A week later it is no longer valid; before validFrom neither.
    assert shape(composite_schedule([weekly], "CP", 1, monday + 14 * 86400, 86400, "A")) == [
        (0, None)
    ]
    assert shape(composite_schedule([weekly], "CP", 1, monday - 7 * 86400, 86400, "A")) == [
        (0, None)
    ]
    # Conversion with the given voltage and the period's phases.
    one_phase = profile(
        wire16(6, "TxDefaultProfile", [(0, 7360)], startSchedule="2026-04-01T00:00:00Z")
    )
    assert limit_at([one_phase], 1, T0, "A", voltage=230, phases=1) == 32
    assert convert(16, "A", "W", 1, voltage=240) == 3840


def test_compare_finds_what_the_station_does_otherwise() -> None:
    default = profile(
        wire16(
            1, "TxDefaultProfile", [(0, 11000), (600, 6000)], startSchedule="2026-04-01T00:00:00Z"
        )
    )
    ours = composite_schedule([default], "CP", 1, T0, 1200, "W")
    assert compare_schedules(ours, [ChargingPeriod(0, 11000), ChargingPeriod(600, 6000)], T0) == []
    assert compare_schedules(ours, [ChargingPeriod(0, 11050), ChargingPeriod(600, 6030)], T0) == []
    found = compare_schedules(ours, [ChargingPeriod(0, 11000), ChargingPeriod(600, 11000)], T0)
    assert [(d.at - T0, d.station_limit, d.csms_limit) for d in found] == [(600, 11000, 6000)]
    assert "limit W" in schedule_table(ours) and "6000" in schedule_table(ours)


PURPOSE = st.sampled_from(["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"])


@st.composite
def profiles(draw: Any) -> list[ChargingProfile]:
    found = []
    for index in range(draw(st.integers(1, 5))):
        starts = sorted(draw(st.sets(st.integers(1, 3000), max_size=3)))
        periods = [(s, draw(st.integers(0, 64))) for s in [0, *starts]]
        purpose = draw(PURPOSE)
        place = 0 if purpose == "ChargePointMaxProfile" else draw(st.integers(0, 1))
        if purpose == "TxProfile":
            place = 1
        extra: dict[str, Any] = {
            "startSchedule": f"2026-04-01T00:{draw(st.integers(0, 59)):02d}:00Z"
        }
        if draw(st.booleans()):
            extra["duration"] = draw(st.integers(1, 4000))
        found.append(
            profile(
                wire16(
                    index + 1,
                    purpose,
                    periods,
                    stack_level=draw(st.integers(0, 3)),
                    unit="A",
                    **extra,
                ),
                place,
            )
        )
    # As a station holds them: a profile replaces the one of the same place, purpose and level.
    kept = {(p.place, p.purpose, p.stack_level): p for p in found}
    return list(kept.values())


@settings(max_examples=150, deadline=None)
@given(profiles(), st.integers(0, 5000))
def test_never_above_an_applicable_maximum(found: list[ChargingProfile], offset: int) -> None:
    running = TransactionContext(1, T0)
    composite = composite_schedule(found, "CP", 1, T0, 6000, "A", transaction=running)
    t = T0 + offset
    value = composite.limit_at(t)
    maxima = [p for p in found if p.purpose == "ChargingStationMaxProfile"]
    cap = limit_at(maxima, 1, t, "A", transaction=running)  # the maximum in force at t
    if cap is not None:
        assert value is not None and value <= cap


@settings(max_examples=150, deadline=None)
@given(profiles(), st.integers(0, 5000))
def test_one_purpose_is_its_highest_stack_level(found: list[ChargingProfile], offset: int) -> None:
    found = [p for p in found if p.purpose == "TxDefaultProfile"]
    found = list({p.stack_level: msgspec.structs.replace(p, place=1) for p in found}.values())
    t = T0 + offset
    value = composite_schedule(found, "CP", 1, T0, 6000, "A").limit_at(t)
    covering = [(p.stack_level, limit_at([p], 1, t, "A")) for p in found]
    covering = [(level, limit) for level, limit in covering if limit is not None]
    if not covering:
        assert value is None
    else:
        assert value == max(covering)[1]


def test_the_plot_is_svg_with_a_step_per_period() -> None:
    default = profile(
        wire16(
            1, "TxDefaultProfile", [(0, 11000), (600, 6000)], startSchedule="2026-04-01T00:00:00Z"
        )
    )
    schedule = composite_schedule([default], "CP", 1, T0, 1200, "W")
    root = ElementTree.fromstring(schedule_svg(schedule))
    namespace = "{http://www.w3.org/2000/svg}"
    steps = root.findall(f"{namespace}line")
    assert len(steps) == 2
    # The second step is lower on the plot (larger y) than the first: 6 kW after 11 kW.
    assert float(steps[1].get("y1", 0)) > float(steps[0].get("y1", 0))
    assert "11000 W" in "".join(root.itertext())
