"""The cost function (projections/cost.py) across band boundaries, rounding and tax; its
properties (monotone in energy and time, independent of how the readings are chunked);
the tariff registry and which tariff a transaction gets (projections/tariffs.py,
projections/metering.py); docs/tariffs.md's worked example."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.errors import InvalidUseCaseArguments
from chargeledger.core.events import (
    Event,
    Recorded,
    SiteDefined,
    TariffAssigned,
    TariffDefined,
    TariffRemoved,
    TariffUnassigned,
    TokenRegistered,
    tariff_stream,
)
from chargeledger.core.tariff import Tariff, check_target, check_tariff
from chargeledger.core.usecases_tariffs import (
    COSTMSG_VENDOR,
    CostUpdatedArgs,
    cost_updated,
    final_cost,
)
from chargeledger.projections import Views
from chargeledger.projections.cost import Cost, Reading, StateChange, Usage, cost, price_text
from chargeledger.projections.rating import rerate, summary
from chargeledger.schemas import OCPP16, OCPP201
from tests.test_projections import Log

__all__: list[str] = []

DOC = Path(__file__).resolve().parent.parent / "docs" / "tariffs.md"
SATURDAY = datetime.fromisoformat("2026-11-21T00:00:00+00:00")
"""A Saturday, midnight UTC."""


def tariff(**fields: Any) -> Tariff:
    made = msgspec.convert({"id": "T", "currency": "EUR", **fields}, Tariff)
    check_tariff(made)
    return made


def at(hours: float) -> datetime:
    """``hours`` after :data:`SATURDAY`."""
    return SATURDAY + timedelta(hours=hours)


def linear(start: float, end: float, kwh_per_hour: float, steps: int = 1) -> tuple[Reading, ...]:
    """Readings from ``start`` to ``end`` (hours after SATURDAY) at a constant power."""
    return tuple(
        Reading(
            at(start + (end - start) * i / steps),
            Decimal(round(kwh_per_hour * 1000 * (end - start) * i / steps)),
        )
        for i in range(steps + 1)
    )


def test_band_wrapping_midnight_counts_the_calendar_day_of_each_moment() -> None:
    # 1 kWh an hour from Saturday 21:00 to Sunday 01:00 UTC.
    usage = Usage(start=at(21), end=at(25), readings=linear(21, 25, 1))
    weekend = tariff(
        energy_per_kwh="0.30",
        bands=[
            {"days": ["Sat", "Sun"], "start": "22:00", "end": "06:00", "energy_per_kwh": "0.10"}
        ],
    )
    assert cost(weekend, usage).energy == Decimal("0.60")  # 1 x 0.30 + 3 x 0.10
    saturday = tariff(
        energy_per_kwh="0.30",
        bands=[{"days": ["Sat"], "start": "22:00", "end": "06:00", "energy_per_kwh": "0.10"}],
    )
    assert cost(saturday, usage).energy == Decimal("0.80")  # Sunday 00:00-01:00 at 0.30
    # One reading pair across the boundary is split in proportion to time.
    two = Usage(start=at(21), end=at(25), readings=linear(21, 25, 1, steps=1))
    assert cost(weekend, two) == cost(weekend, usage)


def test_bands_are_read_in_the_tariffs_time_zone_across_daylight_saving() -> None:
    # Europe/Berlin leaves summer time on 2026-10-25 at 01:00 UTC (03:00 CEST -> 02:00 CET).
    night = tariff(
        timezone="Europe/Berlin",
        time_per_hour="1",
        bands=[{"start": "00:00", "end": "06:00", "time_per_hour": "0"}],
    )
    start = datetime.fromisoformat("2026-10-24T20:00:00+00:00")  # 22:00 CEST
    end = datetime.fromisoformat("2026-10-25T08:00:00+00:00")  # 09:00 CET
    found = cost(night, Usage(start=start, end=end))
    # 22:00-24:00 CEST (2 h) and 06:00-09:00 CET (3 h) are priced; the night lasted 7 h.
    assert found.charging_hours == Decimal("12.0000")
    assert found.time == Decimal("5.00")


def test_charging_time_and_parking_follow_the_charging_state_and_bands() -> None:
    prices = tariff(
        time_per_hour="2.00",
        parking_per_hour="6.00",
        bands=[{"start": "11:00", "end": "12:00", "parking_per_hour": "12.00"}],
    )
    usage = Usage(
        start=at(10),
        end=at(11.25),
        states=(StateChange(at(10), True), StateChange(at(10.75), False)),
    )
    found = cost(prices, usage)
    assert (found.charging_hours, found.parking_hours) == (Decimal("0.7500"), Decimal("0.5000"))
    assert found.time == Decimal("1.50")
    assert found.parking == Decimal("4.50")  # 0.25 h x 6 + 0.25 h x 12
    # Without any state change the whole transaction is charging.
    assert cost(prices, Usage(start=at(10), end=at(11.25))).time == Decimal("2.50")


def test_rounding_is_half_up_per_line_and_in_the_currencys_minor_unit() -> None:
    usage = Usage(start=at(1), end=at(2), readings=linear(1, 2, 1))
    found = cost(tariff(energy_per_kwh="0.125", tax_rate="0.5"), usage)
    assert found.energy == Decimal("0.13")  # half up, not half even (0.12)
    assert found.tax == Decimal("0.07")  # 0.065
    assert found.total == Decimal("0.20")
    yen = cost(tariff(currency="JPY", energy_per_kwh="33.5"), usage)
    assert yen.energy == Decimal("34") and yen.total == Decimal("34")
    dinar = cost(tariff(currency="KWD", energy_per_kwh="0.0625"), usage)
    assert dinar.energy == Decimal("0.063")
    # Lines are rounded before they are added: the breakdown adds up to the total.
    three = Usage(
        start=at(1), end=at(2), states=(StateChange(at(1.5), False),), readings=linear(1, 2, 1)
    )
    odd = cost(
        tariff(
            energy_per_kwh="0.333",
            time_per_hour="0.333",
            parking_per_hour="0.333",
            session_fee="0.005",
            tax_rate="0.07",
        ),
        three,
    )
    assert (odd.energy, odd.time, odd.parking, odd.session_fee) == tuple(
        map(Decimal, ("0.33", "0.17", "0.17", "0.01"))
    )
    assert odd.net == Decimal("0.68") and odd.tax == Decimal("0.05")
    assert odd.total == odd.energy + odd.time + odd.parking + odd.session_fee + odd.tax


def test_minimum_and_maximum_price_before_tax() -> None:
    small = Usage(start=at(1), end=at(2), readings=linear(1, 2, 1))
    floor = cost(tariff(energy_per_kwh="0.30", min_price="2.00", tax_rate="0.10"), small)
    assert (floor.net, floor.adjustment, floor.tax, floor.total) == tuple(
        map(Decimal, ("2.00", "1.70", "0.20", "2.20"))
    )
    large = Usage(start=at(1), end=at(2), readings=linear(1, 2, 100))
    ceiling = cost(tariff(energy_per_kwh="0.30", max_price="5", tax_rate="0.19"), large)
    assert (ceiling.energy, ceiling.adjustment, ceiling.net, ceiling.total) == tuple(
        map(Decimal, ("30.00", "-25.00", "5.00", "5.95"))
    )


def test_a_register_that_drops_adds_nothing_and_is_not_counted_twice() -> None:
    readings = tuple(
        Reading(at(hour), Decimal(wh)) for hour, wh in ((0, 0), (1, 1000), (2, 500), (3, 1500))
    )
    found = cost(tariff(energy_per_kwh="1"), Usage(start=at(0), end=at(3), readings=readings))
    assert found.energy_wh == Decimal("1500.000") and found.energy == Decimal("1.50")


def test_invalid_tariffs_and_targets_are_refused() -> None:
    for fields, message in (
        ({"currency": "euro"}, "ISO 4217"),
        ({"energy_per_kwh": "-1"}, "not below 0"),
        ({"tax_rate": "19"}, "fraction"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"valid_from": "2027-01-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"}, "before"),
        ({"valid_from": "2027-01-01"}, "offset"),
        ({"min_price": "5", "max_price": "1"}, "above"),
        ({"bands": [{"start": "10:00", "end": "10:00"}]}, "empty window"),
        ({"bands": [{"start": "25:00"}]}, "clock time"),
        ({"energy_per_kwh": "NaN"}, "finite"),
    ):
        with pytest.raises(ValueError, match=message):
            tariff(**fields)
    check_target("default")
    check_target("station:CP-1")
    for target in ("station:", "site", "planet:earth"):
        with pytest.raises(ValueError, match="assignment target"):
            check_target(target)


# -- properties ------------------------------------------------------------------------------

TARIFFS = [
    tariff(energy_per_kwh="0.30", session_fee="1", tax_rate="0.19"),
    tariff(
        timezone="Europe/Berlin",
        energy_per_kwh="0.29",
        time_per_hour="0.60",
        parking_per_hour="2.40",
        bands=[
            {
                "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                "start": "07:00",
                "end": "19:00",
                "energy_per_kwh": "0.41",
                "parking_per_hour": "4.80",
            },
            {"start": "23:00", "end": "05:30", "energy_per_kwh": "0.17", "time_per_hour": "0"},
        ],
        min_price="0.50",
        max_price="80",
        tax_rate="0.077",
    ),
]
BASE = datetime.fromisoformat("2026-10-24T18:00:00+00:00")
"""Two days around the end of summer time in Europe/Berlin."""

increments = st.lists(
    st.tuples(st.integers(1, 3 * 3600), st.integers(0, 25_000)), min_size=1, max_size=12
)


def _usage(steps: list[tuple[int, int]], idle_at: int | None = None, extra: int = 0) -> Usage:
    moment, wh = BASE, Decimal("123456.789")
    readings = [Reading(moment, wh)]
    for seconds, energy in steps:
        moment += timedelta(seconds=seconds)
        wh += energy
        readings.append(Reading(moment, wh))
    states = () if idle_at is None else (StateChange(BASE + timedelta(seconds=idle_at), False),)
    end = moment + timedelta(seconds=extra)
    return Usage(start=BASE, end=end, readings=tuple(readings), states=states)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(TARIFFS),
    increments,
    st.integers(0, 10),
    st.integers(1, 5000),
    st.integers(0, 20_000),
)
def test_cost_is_monotone_in_energy(
    prices: Tariff, steps: list[tuple[int, int]], index: int, more: int, idle_at: int
) -> None:
    before = cost(prices, _usage(steps, idle_at))
    index %= len(steps)
    seconds, energy = steps[index]
    after = cost(
        prices, _usage([*steps[:index], (seconds, energy + more), *steps[index + 1 :]], idle_at)
    )
    assert after.energy >= before.energy and after.total >= before.total


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TARIFFS), increments, st.integers(0, 20_000), st.integers(0, 48 * 3600))
def test_cost_is_monotone_in_time(
    prices: Tariff, steps: list[tuple[int, int]], idle_at: int, extra: int
) -> None:
    before = cost(prices, _usage(steps, idle_at))
    after = cost(prices, _usage(steps, idle_at, extra))
    assert after.time >= before.time and after.parking >= before.parking
    assert after.total >= before.total


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TARIFFS), increments, st.data())
def test_a_reading_on_the_straight_line_between_two_changes_nothing(
    prices: Tariff, steps: list[tuple[int, int]], data: st.DataObject
) -> None:
    usage = _usage(steps)
    index = data.draw(st.integers(0, len(usage.readings) - 2))
    first, second = usage.readings[index], usage.readings[index + 1]
    seconds = (second.at - first.at) // timedelta(seconds=1)
    # A reading in between, where a constant power puts it, to the milliwatt-hour: at a
    # multiple of the seconds in which the register rises by a whole mWh.
    milli = int((second.wh - first.wh) * 1000)
    step = seconds // math.gcd(seconds, milli)
    cut = step * data.draw(st.integers(0, seconds // step))
    rise = Decimal(milli * cut // seconds) / 1000
    middle = Reading(first.at + timedelta(seconds=cut), first.wh + rise)
    chunked = msgspec.structs.replace(
        usage, readings=(*usage.readings[: index + 1], middle, *usage.readings[index + 1 :])
    )
    assert cost(prices, chunked) == cost(prices, usage)


def _event(
    transaction_id: str, event_type: str, seq_no: int, readings: list[Reading], **info: Any
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "timestamp": readings[0 if event_type == "Started" else -1].at.isoformat(),
        "triggerReason": "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": transaction_id, **info},
        "idToken": {"idToken": "CARD", "type": "ISO14443"},
        "meterValue": [
            {
                "timestamp": reading.at.isoformat(),
                "sampledValue": [
                    {"value": float(reading.wh) / 1000, "unitOfMeasure": {"unit": "kWh"}}
                ],
            }
            for reading in readings
        ],
    }


def add(log: Log, event: Event) -> None:
    """Append a tariff (or token) change to a hand-built log."""
    position = len(log.records) + 1
    log.records.append(Recorded(position, tariff_stream(str(position)), 1, event))


def defined(log: Log, prices: Tariff, target: str = "default", group: str | None = None) -> None:
    add(log, TariffDefined(request_id="d", at=log.at, key="k", tariff=prices))
    add(
        log,
        TariffAssigned(
            request_id="a", at=log.at, key="k", target=target, tariff_id=prices.id, group=group
        ),
    )


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TARIFFS), increments, st.data())
def test_the_cost_does_not_depend_on_how_the_readings_are_sent(
    prices: Tariff, steps: list[tuple[int, int]], data: st.DataObject
) -> None:
    """The same readings, in TransactionEvents grouped in any way, fold to the same cost
    (each reading with its own timestamp, not only the last of each message)."""
    readings = list(_usage([(s, e * 1000) for s, e in steps]).readings)  # whole Wh in kWh
    costs = []
    for attempt in range(2):
        cuts = sorted(data.draw(st.sets(st.integers(1, len(readings) - 1))) if attempt else set())
        groups = [readings[a:b] for a, b in zip([0, *cuts], [*cuts, len(readings)], strict=True)]
        log = Log()
        defined(log, prices)
        log.open("CP", "ocpp2.0.1")
        for seq_no, group in enumerate(groups):
            kind = "Started" if seq_no == 0 else "Updated"
            log.call("CP", "TransactionEvent", _event("T", kind, seq_no, group), {})
        last = readings[-1:]
        log.call("CP", "TransactionEvent", _event("T", "Ended", len(groups), last), {})
        views = log.views()
        transaction = views.transactions.get("T", "CP")
        assert transaction is not None and transaction.status == "ended"
        found = views.metering.cost(transaction)
        assert found is not None
        costs.append(found)
    expected = cost(
        prices, Usage(start=readings[0].at, end=readings[-1].at, readings=tuple(readings))
    )
    assert costs[0] == costs[1] == expected


# -- the registry, and which tariff a transaction gets ---------------------------------------


def test_a_site_tariff_applies_to_its_stations_and_sub_sites_between_station_and_default() -> None:
    log = Log()
    base = tariff(energy_per_kwh="0.30")
    depot = msgspec.structs.replace(tariff(energy_per_kwh="0.25"), id="DEPOT")
    bay = msgspec.structs.replace(tariff(energy_per_kwh="0.22"), id="BAY")
    own = msgspec.structs.replace(tariff(energy_per_kwh="0.40"), id="OWN")
    add(log, SiteDefined(request_id="s1", at=log.at, key="k", site="DEPOT", stations=["CP-1"]))
    add(
        log,
        SiteDefined(
            request_id="s2", at=log.at, key="k", site="BAY", parent="DEPOT", stations=["CP-2"]
        ),
    )
    defined(log, base)
    defined(log, depot, target="site:DEPOT")
    defined(log, own, target="station:CP-3")
    moment = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    views = log.views()
    assert views.tariffs.resolve("CP-1", None, moment) == depot  # in the site
    assert views.tariffs.resolve("CP-2", None, moment) == depot  # in its sub-site
    assert views.tariffs.resolve("CP-3", None, moment) == own  # in no site
    assert views.tariffs.resolve("CP-9", None, moment) == base
    defined(log, bay, target="site:BAY")  # the innermost site before its parent
    views = log.views()
    assert views.tariffs.resolve("CP-2", None, moment) == bay
    assert views.tariffs.resolve("CP-1", None, moment) == depot
    check_target("site:DEPOT")


def test_the_most_specific_valid_assignment_wins_and_a_transaction_keeps_its_tariff() -> None:
    log = Log()
    base = tariff(energy_per_kwh="0.30")
    fleet = msgspec.structs.replace(tariff(energy_per_kwh="0.20"), id="FLEET")
    here = msgspec.structs.replace(tariff(energy_per_kwh="0.40"), id="HERE")
    later = msgspec.structs.replace(
        tariff(energy_per_kwh="0.50", valid_from="2030-01-01T00:00:00Z"), id="LATER"
    )
    defined(log, base)
    defined(log, fleet, group="VANS")
    defined(log, here, target="station:CP-2")
    defined(log, later, target="station:CP-2")
    add(log, TokenRegistered(request_id="t", at=log.at, key="k", id_token="CARD", group="VANS"))
    views = log.views()
    moment = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    resolve = views.tariffs.resolve
    assert resolve("CP-1", None, moment) == base
    assert resolve("CP-1", "VANS", moment) == fleet
    assert resolve("CP-2", "VANS", moment) == here  # the station before the default's group
    assert resolve("CP-2", None, datetime.fromisoformat("2031-01-01T00:00:00+00:00")) == later
    # A 2.0.1 transaction of the fleet's card gets the fleet's tariff, and keeps it when the
    # tariff is redefined afterwards; new transactions get the new definition.
    log.open("CP-1", "ocpp2.0.1")
    readings = [Reading(BASE, Decimal(0)), Reading(BASE + timedelta(hours=1), Decimal(10_000))]
    log.call("CP-1", "TransactionEvent", _event("T1", "Started", 0, readings[:1]), {})
    dearer = msgspec.structs.replace(fleet, energy_per_kwh=Decimal("0.90"))
    add(log, TariffDefined(request_id="r", at=log.at, key="k", tariff=dearer))
    log.call("CP-1", "TransactionEvent", _event("T1", "Ended", 1, readings[1:]), {})
    log.call("CP-1", "TransactionEvent", _event("T2", "Started", 0, readings[:1]), {})
    views = log.views()
    first = views.transactions.get("T1", "CP-1")
    second = views.transactions.get("T2", "CP-1")
    assert first is not None and second is not None
    assert views.metering.cost(first) == cost(fleet, views.metering.usage(first))
    entry = views.metering.get(second)
    assert entry is not None and entry.tariff == dearer
    # Re-rating T1 with the dearer tariff reports the difference and records nothing.
    rated = rerate(views.transactions, views.metering, dearer)
    assert [(r.transaction_id, r.total, r.new_total, r.difference) for r in rated] == [
        ("T1", Decimal("2.00"), Decimal("9.00"), Decimal("7.00"))
    ]
    assert summary(rated, "EUR").difference == Decimal("7.00")
    # Unassigning and removing take effect for what starts afterwards.
    add(log, TariffUnassigned(request_id="u", at=log.at, key="k", target="default", tariff_id="T"))
    add(log, TariffRemoved(request_id="x", at=log.at, key="k", tariff_id="FLEET"))
    views = log.views()
    assert views.tariffs.resolve("CP-1", "VANS", moment) is None
    assert [a.tariff_id for a in views.tariffs.assignments()] == ["FLEET", "HERE", "LATER"]
    assert views.metering.cost(first) == cost(fleet, views.metering.usage(first))


def test_live_fold_equals_replay_for_tariffs_and_metering() -> None:
    log = Log()
    defined(log, TARIFFS[1])
    log.open("CP", "ocpp2.0.1")
    readings = list(_usage([(600, 1000), (900, 2500), (300, 0)]).readings)
    for seq_no, reading in enumerate(readings):
        kind = "Started" if seq_no == 0 else "Updated"
        info = {"chargingState": "Charging" if seq_no < 2 else "SuspendedEV"}
        log.call("CP", "TransactionEvent", _event("T", kind, seq_no, [reading], **info), {})
    live = Views()
    for recorded in log.records:
        live.apply(recorded)
    replayed = log.views()
    assert live.tariffs.all() == replayed.tariffs.all()
    (transaction,) = replayed.transactions.all()
    assert live.metering.get(transaction) == replayed.metering.get(transaction)
    entry = replayed.metering.get(transaction)
    assert entry is not None and [s.charging for s in entry.states] == [True, True, False, False]


# -- docs/tariffs.md -------------------------------------------------------------------------


def _doc_block(name: str) -> Any:
    match = re.search(rf"<!-- {name} -->\n```json\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/tariffs.md has no {name} block"
    return json.loads(match.group(1))


def test_the_worked_example_of_the_docs_adds_up() -> None:
    """docs/tariffs.md: its tariff, its transaction and the breakdown it states."""
    prices = msgspec.convert(_doc_block("tariff"), Tariff)
    check_tariff(prices)
    usage = msgspec.convert(_doc_block("usage"), Usage)
    stated = _doc_block("cost")
    found: Cost = cost(prices, usage)
    assert msgspec.to_builtins(found) == stated
    assert price_text(prices) in DOC.read_text()


def test_v16_idle_time_comes_from_the_connectors_status_while_the_transaction_runs() -> None:
    log = Log()
    defined(log, tariff(time_per_hour="1", parking_per_hour="3"))
    log.open("CP", "ocpp1.6")
    log.start("CP", 7)  # 2024-05-01T10:00:00Z, meterStart 1000

    def status(value: str, moment: str) -> None:
        payload = {"connectorId": 1, "errorCode": "NoError", "status": value, "timestamp": moment}
        log.call("CP", "StatusNotification", payload, {})

    status("Charging", "2024-05-01T10:00:00Z")
    status("SuspendedEV", "2024-05-01T10:30:00Z")
    status("Charging", "2024-05-01T10:45:00Z")
    status("Finishing", "2024-05-01T11:00:00Z")
    log.call(
        "CP",
        "StopTransaction",
        {"transactionId": 7, "meterStop": 9000, "timestamp": "2024-05-01T11:30:00Z"},
        {},
    )
    status("Available", "2024-05-01T11:31:00Z")  # after the stop: not this transaction's
    views = log.views()
    transaction = views.transactions.get(7)
    assert transaction is not None and transaction.status == "ended"
    found = views.metering.cost(transaction)
    assert found is not None
    assert (found.charging_hours, found.parking_hours) == (Decimal("0.7500"), Decimal("0.7500"))
    assert (found.time, found.parking, found.energy_wh) == (
        Decimal("0.75"),
        Decimal("2.25"),
        Decimal("8000.000"),
    )


def test_cost_messages_carry_decimal_amounts_as_json_numbers() -> None:
    args = CostUpdatedArgs(
        transaction_id=7,
        total_cost=Decimal("12.30"),
        timestamp="2026-11-21T10:00:00Z",
        meter_wh=135000,
        kwh_price=Decimal("0.40"),
        idle_hour_price=Decimal("1.20"),
    )
    running = cost_updated(OCPP16, args)
    assert (running.action, running.payload["vendorId"]) == ("DataTransfer", COSTMSG_VENDOR)
    assert running.payload["messageId"] == "RunningCost"
    assert running.payload["data"] == (
        '{"transactionId":7,"timestamp":"2026-11-21T10:00:00Z","meterValue":135000,'
        '"cost":12.30,"state":"Charging","chargingPrice":{"kWhPrice":0.40},'
        '"idlePrice":{"hourPrice":1.20}}'
    )
    updated = cost_updated(OCPP201, msgspec.structs.replace(args, transaction_id="TX-9"))
    assert (updated.action, updated.payload) == (
        "CostUpdated",
        {"totalCost": 12.3, "transactionId": "TX-9"},
    )
    final = final_cost(7, Decimal("4.40"), "4.40 USD")
    assert json.loads(final.payload["data"]) == {
        "transactionId": 7,
        "cost": 4.4,
        "priceText": "4.40 USD",
        "qrCodeText": "",
    }
    with pytest.raises(InvalidUseCaseArguments, match="needs an integer transaction_id"):
        cost_updated(OCPP16, CostUpdatedArgs(transaction_id=7, total_cost=Decimal(1)))
    with pytest.raises(InvalidUseCaseArguments, match="not an amount"):
        cost_updated(OCPP201, CostUpdatedArgs(transaction_id="T", total_cost=Decimal(-1)))
