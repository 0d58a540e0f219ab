"""A tariff: what charging costs, as an operator defines it (docs/tariffs.md).

Values only: the struct an operator's definition is recorded as (``TariffDefined`` carries
it), where a tariff may be assigned, and the checks a definition must pass. Money is
:class:`~decimal.Decimal` from end to end (JSON strings, or JSON numbers read as their
decimal text, never through a float); the cost function is
:mod:`chargeledger.projections.cost`.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = [
    "TARGET_KINDS",
    "WEEKDAYS",
    "Band",
    "Tariff",
    "TariffFields",
    "Weekday",
    "check_target",
    "check_tariff",
    "minor_unit",
    "parse_clock",
    "parse_instant",
]

Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)
"""Monday first, as ``datetime.weekday()`` counts them."""

TARGET_KINDS = ("station", "site", "default")
"""Where a tariff may be assigned: ``station:<id>``, ``site:<id>`` (every station of the site
and of its sub-sites, see docs/smart-charging.md) or ``default`` (every station). A new kind
is one entry here and one place in :func:`chargeledger.projections.tariffs.targets_for`."""

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MINOR_UNITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
"""ISO 4217 currencies whose minor unit is not the cent (every other has 2 decimals)."""

Price = Decimal
"""An amount not below 0 (:func:`check_tariff` checks: msgspec sets no bounds on decimals)."""


class Band(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A time-of-day and day-of-week window whose prices replace the tariff's base prices
    (a price left out keeps the base price). The window is ``[start, end)`` in the tariff's
    ``timezone``, on the ``days`` named (empty: every day); an ``end`` not after ``start``
    wraps past midnight (``22:00``-``06:00``), and the day that counts is the calendar day
    of the moment priced. The first band of the list that matches a moment prices it."""

    days: list[Weekday] = []
    start: str = "00:00"
    """``HH:MM``, local time."""
    end: str = "24:00"
    """``HH:MM`` (``24:00``: midnight at the end of the day), local time."""
    energy_per_kwh: Price | None = None
    time_per_hour: Price | None = None
    parking_per_hour: Price | None = None


class TariffFields(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a tariff says but its id (the body of ``PUT /api/tariffs/{id}``)."""

    currency: str
    """ISO 4217 code (``EUR``); amounts are rounded to its minor unit."""
    valid_from: str | None = None
    """RFC 3339 with an offset: transactions starting before then do not get this tariff."""
    valid_to: str | None = None
    """RFC 3339 with an offset: transactions starting at or after then do not get it."""
    timezone: str = "UTC"
    """IANA zone the bands' clock times are read in (``Europe/Berlin``)."""
    energy_per_kwh: Price = Decimal(0)
    time_per_hour: Price = Decimal(0)
    """Per hour of charging (the EV drawing energy)."""
    parking_per_hour: Price = Decimal(0)
    """Per hour plugged in without charging (idle, before or after charging)."""
    session_fee: Price = Decimal(0)
    bands: list[Band] = []
    min_price: Price | None = None
    """Before tax: a cheaper transaction costs this much."""
    max_price: Price | None = None
    """Before tax: a dearer transaction costs this much."""
    tax_rate: Decimal = Decimal(0)
    """A fraction (``0.19`` is 19 %), added on top of the prices, which are net."""
    description: str = ""
    """What the driver is shown before charging (2.0.1 ``personalMessage``); empty: a text
    made from the prices."""


class Tariff(TariffFields, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tariff: its id and :class:`TariffFields`."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=36)]


def parse_instant(text: str) -> datetime:
    """RFC 3339 text with an offset as an aware ``datetime``; ``ValueError`` otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment


def parse_clock(text: str) -> int:
    """``HH:MM`` (``00:00`` to ``24:00``) as minutes after midnight; ``ValueError`` else."""
    if not _CLOCK.match(text):
        raise ValueError(f"{text!r} is not a clock time HH:MM (00:00 to 24:00)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def minor_unit(currency: str) -> int:
    """How many decimals an amount of ``currency`` is rounded to (ISO 4217 minor unit)."""
    return _MINOR_UNITS.get(currency, 2)


def _check_price(name: str, value: Decimal | None) -> None:
    if value is not None and (not value.is_finite() or value < 0):
        raise ValueError(f"{name} must be a finite amount not below 0, not {value}")


def check_tariff(tariff: Tariff) -> None:
    """Raise ``ValueError`` saying what is wrong with ``tariff`` (limits the annotations set
    are checked again: a hand-built struct skips ``msgspec.convert``)."""
    name = f"tariff {tariff.id!r}"
    if not 1 <= len(tariff.id) <= 36:
        raise ValueError(f"{name}: id of 1 to 36 characters")
    if not _CURRENCY.match(tariff.currency):
        raise ValueError(f"{name}: currency {tariff.currency!r} is not an ISO 4217 code (EUR)")
    bounds = []
    for field in ("valid_from", "valid_to"):
        text = getattr(tariff, field)
        if text is not None:
            try:
                bounds.append(parse_instant(text))
            except ValueError:
                raise ValueError(
                    f"{name}: {field} {text!r} is not an RFC 3339 date-time with an offset"
                ) from None
    if len(bounds) == 2 and bounds[0] >= bounds[1]:
        raise ValueError(f"{name}: valid_from must be before valid_to")
    try:
        ZoneInfo(tariff.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name}: unknown time zone {tariff.timezone!r}") from None
    for field in ("energy_per_kwh", "time_per_hour", "parking_per_hour", "session_fee"):
        _check_price(f"{name}: {field}", getattr(tariff, field))
    _check_price(f"{name}: min_price", tariff.min_price)
    _check_price(f"{name}: max_price", tariff.max_price)
    if (
        tariff.min_price is not None
        and tariff.max_price is not None
        and tariff.min_price > tariff.max_price
    ):
        raise ValueError(f"{name}: min_price is above max_price")
    if not tariff.tax_rate.is_finite() or not 0 <= tariff.tax_rate <= 1:
        raise ValueError(f"{name}: tax_rate is a fraction from 0 to 1 (0.19 for 19 %)")
    for number, band in enumerate(tariff.bands, 1):
        where = f"{name}: band {number}"
        for day in band.days:
            if day not in WEEKDAYS:
                raise ValueError(f"{where}: day {day!r} is not one of {WEEKDAYS}")
        try:
            start, end = parse_clock(band.start), parse_clock(band.end)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if start == end or start == 24 * 60:
            raise ValueError(f"{where}: {band.start}-{band.end} is an empty window")
        for field in ("energy_per_kwh", "time_per_hour", "parking_per_hour"):
            _check_price(f"{where}: {field}", getattr(band, field))


def check_target(target: str) -> None:
    """Raise ``ValueError`` unless ``target`` is ``default`` or ``<kind>:<id>`` of a kind in
    :data:`TARGET_KINDS`."""
    kind, _, name = target.partition(":")
    if target == "default":
        return
    if kind not in TARGET_KINDS or kind == "default" or not name:
        raise ValueError(
            f"assignment target {target!r}: expected 'default', 'station:<id>' or 'site:<id>'"
            f" (kinds: {', '.join(TARGET_KINDS)})"
        )
