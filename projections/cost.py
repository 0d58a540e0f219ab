"""The cost function: what a transaction costs under a tariff (docs/tariffs.md).

Pure: :func:`cost` reads a :class:`~chargeledger.core.tariff.Tariff` and a :class:`Usage` (the
transaction's start and end, its energy register readings and when it was charging, as the
metering projection folded them) and nothing else, so the answer to a station, the charge
detail record and ``chargeledger rate`` compute the same amounts from the same log.

How it counts:

* **Energy.** The readings are taken in time order; the energy between two readings is the
  rise of the register above the highest reading so far (a reading below an earlier one
  adds nothing, and the energy is not counted again when the register climbs back). That
  energy is spread evenly over the time between the two readings, and each part is priced
  at the energy price of the band it falls in.
* **Time.** From start to end, each moment is charging or parking: the charging state
  changes (2.0.1 ``chargingState``, 1.6 connector status) say which; before the first
  change, charging. Charging time is priced ``time_per_hour``, parking time
  ``parking_per_hour``, each at the band of the moment.
* **Bands.** A moment is priced by the first band matching it (its local clock time and
  weekday in the tariff's ``timezone``), else by the base prices.

Arithmetic is exact: amounts are rational numbers (:class:`fractions.Fraction` made from
the decimal prices and readings and whole microseconds of time) until they are rounded,
never floats. **Rounding**, half up to the currency's minor unit (cents for ``EUR``): each
line (energy, time, parking, session fee) is rounded; the net amount is the sum of the
rounded lines, raised to ``min_price`` or lowered to ``max_price`` (the difference is the
``adjustment``); the tax is the net amount times ``tax_rate``, rounded; the total is net
plus tax. So the breakdown always adds up to the total, to the cent.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import msgspec

from chargeledger.core.tariff import WEEKDAYS, Band, Tariff, minor_unit, parse_clock

__all__ = [
    "Cost",
    "Reading",
    "StateChange",
    "Usage",
    "cost",
    "price_text",
    "prices_at",
    "round_half_up",
]

_MICROSECONDS_PER_HOUR = 3_600_000_000


class Reading(msgspec.Struct, frozen=True):
    """An energy register reading (Wh) at a moment."""

    at: datetime
    wh: Decimal


class StateChange(msgspec.Struct, frozen=True):
    """From ``at`` on, the EV is charging (``True``) or not (parking, idle)."""

    at: datetime
    charging: bool


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """What a transaction used, as far as it is known: the cost function's input."""

    start: datetime
    end: datetime
    """When it ended, or for a running transaction the moment its cost is asked for."""
    readings: tuple[Reading, ...] = ()
    states: tuple[StateChange, ...] = ()


class Cost(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction's cost under one tariff, broken down (amounts in ``currency``, net of
    tax but ``tax`` and ``total``)."""

    tariff_id: str
    currency: str
    energy_wh: Decimal
    """The energy counted (Wh, to the milliwatt-hour)."""
    charging_hours: Decimal
    """Time charging (hours, 4 decimals)."""
    parking_hours: Decimal
    """Time plugged in without charging (hours, 4 decimals)."""
    energy: Decimal
    time: Decimal
    parking: Decimal
    session_fee: Decimal
    adjustment: Decimal
    """What ``min_price`` added (positive) or ``max_price`` took off (negative)."""
    net: Decimal
    """energy + time + parking + session fee + adjustment."""
    tax: Decimal
    total: Decimal
    """net + tax: what the driver pays."""


def round_half_up(value: Fraction, places: int) -> Decimal:
    """``value`` rounded half up (away from zero) to ``places`` decimals, exactly."""
    scaled = abs(value) * 10**places
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest >= scaled.denominator:
        whole += 1
    if value < 0:
        whole = -whole
    return Decimal(whole).scaleb(-places)


def _hours(start: datetime, end: datetime) -> Fraction:
    return Fraction((end - start) // timedelta(microseconds=1), _MICROSECONDS_PER_HOUR)


class _Prices(msgspec.Struct, frozen=True):
    energy_per_kwh: Fraction
    time_per_hour: Fraction
    parking_per_hour: Fraction


def _matches(band: Band, local: datetime) -> bool:
    if band.days and WEEKDAYS[local.weekday()] not in band.days:
        return False
    minute = local.hour * 60 + local.minute
    start, end = parse_clock(band.start), parse_clock(band.end)
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def _price(tariff: Tariff, band: Band | None, name: str) -> Decimal:
    value = None if band is None else getattr(band, name)
    price: Decimal = getattr(tariff, name) if value is None else value
    return price


def prices_at(tariff: Tariff, moment: datetime) -> tuple[Decimal, Decimal, Decimal]:
    """The energy (per kWh), time (per hour charging) and parking (per hour) prices of
    ``tariff`` at ``moment``: the first matching band's, else the base prices."""
    local = moment.astimezone(ZoneInfo(tariff.timezone))
    band = next((band for band in tariff.bands if _matches(band, local)), None)
    names = ("energy_per_kwh", "time_per_hour", "parking_per_hour")
    energy, time_, parking = (_price(tariff, band, name) for name in names)
    return energy, time_, parking


def _prices_at(tariff: Tariff, moment: datetime) -> _Prices:
    energy, time_, parking = prices_at(tariff, moment)
    return _Prices(Fraction(energy), Fraction(time_), Fraction(parking))


def _boundaries(tariff: Tariff, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """``start``, ``end`` and every moment between where a band may begin or end: each
    local midnight and each band's start and end, on every local day the span touches."""
    found = {start, end}
    if tariff.bands:
        minutes = {0} | {parse_clock(clock) for b in tariff.bands for clock in (b.start, b.end)}
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        while day <= last:
            midnight = datetime.combine(day, time(0), tzinfo=zone)
            for minute in minutes:
                moment = (midnight + timedelta(minutes=minute)).astimezone(UTC)
                if start < moment < end:
                    found.add(moment)
            day += timedelta(days=1)
    return sorted(found)


class _Pieces:
    """The span cut where prices may change, each piece with its prices."""

    def __init__(self, tariff: Tariff, start: datetime, end: datetime) -> None:
        self.cuts = _boundaries(tariff, ZoneInfo(tariff.timezone), start, end)
        self.prices = [_prices_at(tariff, moment) for moment in self.cuts]

    def index(self, moment: datetime) -> int:
        return max(bisect_right(self.cuts, moment) - 1, 0)

    def between(self, start: datetime, end: datetime) -> Iterator[tuple[Fraction, _Prices]]:
        """The hours of ``[start, end)`` in each piece, with the piece's prices."""
        index = self.index(start)
        while start < end:
            upto = self.cuts[index + 1] if index + 1 < len(self.cuts) else end
            upto = min(upto, end)
            yield _hours(start, upto), self.prices[index]
            start, index = upto, index + 1


def _energy_cost(readings: list[Reading], pieces: _Pieces) -> tuple[Fraction, Fraction]:
    """The energy counted (Wh) and its price."""
    energy = price = Fraction(0)
    level: Fraction | None = None
    previous: datetime | None = None
    for reading in readings:
        wh = Fraction(reading.wh)
        if level is None or previous is None:
            level, previous = wh, reading.at
            continue
        rise = max(wh - level, Fraction(0))
        level = max(level, wh)
        if rise:
            energy += rise
            span = _hours(previous, reading.at)
            if span == 0:
                price += rise / 1000 * pieces.prices[pieces.index(previous)].energy_per_kwh
            else:
                for hours, prices in pieces.between(previous, reading.at):
                    price += rise * hours / span / 1000 * prices.energy_per_kwh
        previous = reading.at
    return energy, price


def _time_cost(usage: Usage, end: datetime, pieces: _Pieces) -> tuple[Fraction, ...]:
    """Hours charging, hours parking and their prices."""
    changes = sorted(usage.states, key=lambda change: change.at)
    charging_hours = parking_hours = charging_price = parking_price = Fraction(0)
    charging = next((c.charging for c in reversed(changes) if c.at <= usage.start), True)
    moment = usage.start
    for change in [c for c in changes if usage.start < c.at < end] + [StateChange(end, True)]:
        for hours, prices in pieces.between(moment, change.at):
            if charging:
                charging_hours += hours
                charging_price += hours * prices.time_per_hour
            else:
                parking_hours += hours
                parking_price += hours * prices.parking_per_hour
        moment, charging = change.at, change.charging
    return charging_hours, parking_hours, charging_price, parking_price


def cost(tariff: Tariff, usage: Usage) -> Cost:
    """What ``usage`` costs under ``tariff`` (the module docstring says how it counts and
    rounds). An end before the start counts as the start."""
    end = max(usage.end, usage.start)
    readings = sorted(usage.readings, key=lambda reading: reading.at)
    low = min([usage.start, *(reading.at for reading in readings)])
    high = max([end, *(reading.at for reading in readings)])
    pieces = _Pieces(tariff, low, high)
    energy_wh, energy = _energy_cost(readings, pieces)
    charging_hours, parking_hours, time_price, parking_price = _time_cost(usage, end, pieces)
    places = minor_unit(tariff.currency)
    lines = [
        round_half_up(amount, places)
        for amount in (energy, time_price, parking_price, Fraction(tariff.session_fee))
    ]
    gross = sum(lines, Decimal(0))
    net = gross
    if tariff.min_price is not None:
        net = max(net, round_half_up(Fraction(tariff.min_price), places))
    if tariff.max_price is not None:
        net = min(net, round_half_up(Fraction(tariff.max_price), places))
    tax = round_half_up(Fraction(net) * Fraction(tariff.tax_rate), places)
    return Cost(
        tariff_id=tariff.id,
        currency=tariff.currency,
        energy_wh=round_half_up(energy_wh, 3),
        charging_hours=round_half_up(charging_hours, 4),
        parking_hours=round_half_up(parking_hours, 4),
        energy=lines[0],
        time=lines[1],
        parking=lines[2],
        session_fee=lines[3],
        adjustment=net - gross,
        net=net,
        tax=tax,
        total=net + tax,
    )


def _amounts(energy: Decimal | None, time: Decimal | None, parking: Decimal | None, c: str) -> str:
    parts = []
    if energy:
        parts.append(f"{energy} {c}/kWh")
    if time:
        parts.append(f"{time} {c}/h charging")
    if parking:
        parts.append(f"{parking} {c}/h parking")
    return ", ".join(parts) or "free"


def price_text(tariff: Tariff) -> str:
    """What a driver is shown of ``tariff`` before charging: its ``description``, or a text
    made from its prices (``0.30 EUR/kWh, 1.00 EUR per session, + 19% tax``)."""
    if tariff.description:
        return tariff.description
    c = tariff.currency
    text = _amounts(tariff.energy_per_kwh, tariff.time_per_hour, tariff.parking_per_hour, c)
    if tariff.session_fee:
        text += f", {tariff.session_fee} {c} per session"
    for band in tariff.bands:
        days = ",".join(band.days) or "daily"
        prices = _amounts(band.energy_per_kwh, band.time_per_hour, band.parking_per_hour, c)
        text += f"; {days} {band.start}-{band.end}: {prices}"
    if tariff.min_price is not None:
        text += f"; at least {tariff.min_price} {c}"
    if tariff.max_price is not None:
        text += f"; at most {tariff.max_price} {c}"
    if tariff.tax_rate:
        text += f"; + {(tariff.tax_rate * 100).normalize():f}% tax"
    return text
