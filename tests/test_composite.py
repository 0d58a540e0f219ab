"""The CSMS's composite schedule (projections/composite.py) against the worked examples of
the specifications, with their own figures: OCPP 1.6 edition 2 section 3.13.7 (the daily
default profile; the same structure in 2.0.1 form), section 3.13.2 (stacking: a weekly
calendar with a holiday exception), the 1.6 compliance test TC_072_CS (stacking with a
duration), the 2.0.1 test tool's TC_K_41_CS (combining purposes; the station's wrong answer
found), relative profiles from the transaction start; and purposes combined, recurrence,
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


def test_the_example_data_structure_of_section_3_13_7() -> None:
    """OCPP 1.6 edition 2, section 3.13.7 "Example data structure for smart charging"
    (informative), verbatim: "The following data structure describes a daily default
    profile that limits the power to 6 kW between 08:00h and 20:00h": chargingProfileId 100,
    stackLevel 0, TxDefaultProfile, Recurring, Daily; duration 86400, startSchedule
    2013-01-01T00:00Z, W; periods 0 (=00:00) 11000, 28800 (=08:00) 6000, 72000 (=20:00)
    11000, numberPhases 3 each. Any later day looks the same, across midnight too."""
    periods = [(0, 11000), (28800, 6000), (72000, 11000)]
    wire = wire16(
        100,
        "TxDefaultProfile",
        periods,
        kind="Recurring",
        recurrencyKind="Daily",
        duration=86400,
        startSchedule="2013-01-01T00:00Z",
    )
    for period in wire["chargingSchedule"]["chargingSchedulePeriod"]:
        period["numberPhases"] = 3
    daily = profile(wire, place=0)
    day = composite_schedule([daily], "CP", 1, T0, 86400, "W")
    assert shape(day) == [(0, 11000), (8 * HOUR, 6000), (20 * HOUR, 11000)]
    evening = composite_schedule([daily], "CP", 1, T0 + 19 * HOUR, 14 * HOUR, "W")
    assert shape(evening) == [(0, 6000), (HOUR, 11000), (13 * HOUR, 6000)]
    # In A with the spec's three phases at 230 V: 6000 W is 8.7 A.
    assert limit_at([daily], 1, T0 + 9 * HOUR, "A") == 6000 / (3 * 230)
    # The same structure as a 2.0.1 chargingProfile (id, chargingSchedule a list of one
    # schedule with its own id): the OCPP 2.0.1 part 2 edition 2 repeats this example in
    # block K (p. 240, as EVerest libocpp's baseline composite test data cites it).
    v201 = {
        "id": 100,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Recurring",
        "recurrencyKind": "Daily",
        "chargingSchedule": [{"id": 1, **wire["chargingSchedule"]}],
    }
    assert shape(composite_schedule([profile(v201, 0)], "CP", 1, T0, 86400, "W")) == shape(day)


MONDAY = parse_time("2026-03-30T00:00:00Z")
assert MONDAY is not None


def test_stacking_a_weekly_calendar_with_a_holiday_of_section_3_13_2() -> None:
    """OCPP 1.6 edition 2, section 3.13.2 "Stacking charging profiles", its example: "a
    charging profile of purpose TxDefaultProfile with a duration and recurrence of one week
    that allows full power or current charging on weekdays from 23:00h to 06:00h and from
    00:00h to 24:00h in weekends and reduced power or current charging at other times. On
    top of that, one can define other TxDefaultProfiles that define exception to this rule,
    for example for holidays", and "the prevailing charging profile SHALL be the charging
    profile with the highest stackLevel among the profiles that are valid at that point in
    time". The spec gives no figures there: full and reduced are those of its 3.13.7 example
    (11 kW, 6 kW); the holiday is Good Friday 2026 (3 April), a stack level 1 profile of one
    day at full power."""
    full, reduced = 11000, 6000
    week = [(0, full), (6 * HOUR, reduced)]
    for day in range(1, 5):  # Tuesday to Friday: full from 23:00 the day before until 06:00
        week += [((24 * day - 1) * HOUR, full), ((24 * day + 6) * HOUR, reduced)]
    week.append((119 * HOUR, full))  # Friday 23:00 to Monday 06:00 (the next week)
    weekly = profile(
        wire16(
            1,
            "TxDefaultProfile",
            week,
            kind="Recurring",
            recurrencyKind="Weekly",
            duration=7 * 24 * HOUR,
            startSchedule="2026-03-30T00:00:00Z",
        ),
        place=0,
    )
    holiday = profile(
        wire16(
            2,
            "TxDefaultProfile",
            [(0, full)],
            stack_level=1,
            duration=24 * HOUR,
            startSchedule="2026-04-03T00:00:00Z",
        ),
        place=0,
    )
    thursday, friday, saturday = (MONDAY + day * 24 * HOUR for day in (3, 4, 5))
    workday = [(0, full), (6 * HOUR, reduced), (23 * HOUR, full)]
    assert shape(composite_schedule([weekly], "CP", 1, thursday, 24 * HOUR)) == workday
    assert shape(composite_schedule([weekly], "CP", 1, friday, 24 * HOUR)) == workday
    assert shape(composite_schedule([weekly], "CP", 1, saturday, 24 * HOUR)) == [(0, full)]
    both = [weekly, holiday]
    assert shape(composite_schedule(both, "CP", 1, thursday, 24 * HOUR)) == workday
    assert shape(composite_schedule(both, "CP", 1, friday, 24 * HOUR)) == [(0, full)]
    # A week later the exception is over: the weekly calendar rules again.
    later = composite_schedule(both, "CP", 1, friday + 7 * 24 * HOUR, 24 * HOUR)
    assert shape(later) == workday


def test_stacking_where_the_higher_level_ends_the_lower_applies() -> None:
    """The first profile of the 1.6 compliance test TC_072_CS "Stacking Charging Profiles"
    (OCPP 1.6 Compliancy Testing Tool test case document): TxDefaultProfile, Absolute,
    stack level 0, 400 s, 6, 8, 10 A from 0, 100, 200 s; over it a stack level 1 profile
    of 150 s, as that test has (its periods here are ours: 10 A, 6 A from 100 s). Level 1
    rules its 150 s, level 0 the rest; past both nothing applies ("If you use Stacking
    without a duration, on the highest stack level, the Charge Point will never fall back
    to a lower stack level profile", 1.6 section 3.13.2: with one it does)."""
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
    assert shape(composite_schedule([low, high], "CP", 1, T0, 500, "A"))[-1] == (400, None)


# OCPP 2.0.1 test tool (OCTT) test case TC_K_41_CS "Get Composite Schedule - Combining
# chargingProfilePurposes", its three SetChargingProfile requests verbatim as a run of it
# logged them (EVerest libocpp, tests/lib/ocpp/v201/json/OCCT_TC_K_41_CS).
K41_START = "2024-08-21T12:24:36Z"
K41_TRANSACTION = "e23889e3-0fc7-424a-b2e9-dce774521b83"
K41_MAX = {
    "chargingProfileKind": "Absolute",
    "chargingProfilePurpose": "ChargingStationMaxProfile",
    "chargingSchedule": [
        {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"limit": 10.0, "numberPhases": 3, "startPeriod": 0}],
            "duration": 86404,
            "id": 1,
            "startSchedule": K41_START,
        }
    ],
    "id": 1,
    "stackLevel": 0,
}


def _k41_periods(pairs: list[tuple[int, float]]) -> list[dict[str, Any]]:
    return [{"limit": limit, "numberPhases": 3, "startPeriod": start} for start, limit in pairs]


K41_DEFAULT = {
    "chargingProfileKind": "Absolute",
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingSchedule": [
        {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": _k41_periods(
                [(0, 6.0), (60, 10.0), (120, 8.0), (180, 15.0), (260, 8.0)]
            ),
            "duration": 304,
            "id": 1,
            "startSchedule": K41_START,
        }
    ],
    "id": 2,
    "stackLevel": 0,
    "validFrom": K41_START,
    "validTo": "2024-08-21T12:31:25Z",
}
K41_TX = {
    "chargingProfileKind": "Absolute",
    "chargingProfilePurpose": "TxProfile",
    "chargingSchedule": [
        {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": _k41_periods(
                [(0, 8.0), (50, 11.0), (140, 16.0), (200, 6.0), (240, 12.0)]
            ),
            "duration": 264,
            "id": 1,
            "startSchedule": K41_START,
        }
    ],
    "id": 2,
    "stackLevel": 0,
    "transactionId": K41_TRANSACTION,
}


def test_combining_purposes_as_the_201_test_tool_tc_k_41_cs() -> None:
    """OCTT TC_K_41_CS with its own figures: a station maximum of 10 A (EVSE 0, 86404 s),
    a TxDefaultProfile (6, 10, 8, 15, 8 A; 304 s) and a TxProfile of the running
    transaction (8, 11, 16, 6, 12 A; 264 s) on EVSE 1, all from 12:24:36; then
    GetCompositeSchedule for EVSE 1, 400 s, in A, at 12:24:40. The tool expects six
    periods ("CompositeSchedule should have had 6 periods"): the TxProfile capped at 10 A
    while it lasts, the TxDefaultProfile's last 8 A after it, then the maximum alone (the
    2.0.1 rule as 1.6 section 3.13.3 words it: "the minimum value for each time
    interval"). The station of that logged run answered one period of 10 A: compared with
    ours, that is the difference the composite_mismatch finding reports."""
    window = parse_time("2024-08-21T12:24:40Z")
    started = parse_time("2024-08-21T12:24:38.561Z")
    assert window is not None and started is not None
    found = [
        profile(K41_MAX, place=0, at=window),
        profile(K41_DEFAULT, place=1, at=window),
        profile(K41_TX, place=1, at=window),
    ]
    running = TransactionContext(K41_TRANSACTION, started)
    ours = composite_schedule(found, "CP", 1, window, 400, "A", transaction=running)
    assert shape(ours) == [(0, 8), (46, 10), (196, 6), (236, 10), (260, 8), (300, 10)]
    assert len(ours.periods) == 6
    # Without the transaction the TxProfile does not apply: default under the maximum.
    idle = composite_schedule(found, "CP", 1, window, 400, "A")
    assert shape(idle) == [(0, 6), (56, 10), (116, 8), (176, 10), (256, 8), (300, 10)]
    # The station's answer in that run: one period of 10 A.
    differences = compare_schedules(ours, [ChargingPeriod(0, 10.0, 3)], window)
    assert [(d.at - window, d.station_limit, d.csms_limit) for d in differences] == [
        (0, 10.0, 8.0),
        (196, 10.0, 6.0),
        (260, 10.0, 8.0),
    ]


def test_a_relative_profile_runs_from_the_transaction_start() -> None:
    """A Relative profile: "Schedule periods are relative to a situation-specific start
    point (such as the start of a Transaction) that is determined by the Charge Point" (1.6
    section 7.9 ChargingProfileKindType; 2.0.1 ChargingProfileKindEnumType). TC_K_41_CS's
    TxProfile as Relative, for a transaction that started at 12:24:38: the same periods
    shifted to the start, under the same maximum and followed by the same default."""
    window = parse_time("2024-08-21T12:24:40Z")
    started = parse_time("2024-08-21T12:24:38Z")
    assert window is not None and started is not None
    relative = {**K41_TX, "chargingProfileKind": "Relative"}
    relative["chargingSchedule"] = [
        {k: v for k, v in K41_TX["chargingSchedule"][0].items() if k != "startSchedule"}  # type: ignore[index]
    ]
    found = [
        profile(K41_MAX, place=0, at=window),
        profile(K41_DEFAULT, place=1, at=window),
        profile(relative, place=1, at=window),
    ]
    running = TransactionContext(K41_TRANSACTION, started)
    ours = composite_schedule(found, "CP", 1, window, 400, "A", transaction=running)
    assert shape(ours) == [(0, 8), (48, 10), (198, 6), (238, 10), (262, 8), (300, 10)]
    # A transaction starting later shifts it: from 12:25:00 the TxProfile begins then.
    later = TransactionContext(K41_TRANSACTION, window + 20)
    shifted = composite_schedule(found, "CP", 1, window, 400, "A", transaction=later)
    assert shape(shifted)[:3] == [(0, 6), (20, 8), (70, 10)]


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
