"""Charging profiles read from the wire, and the composite schedule the CSMS computes itself.

Pure: no clock, no I/O. The charging-profile projection
(:mod:`chargeledger.projections.charging_profiles`), the smart-charging use cases' checks,
the smart-charging plugin and the API all read profiles with :func:`parse_profile` and
combine them with :func:`composite_schedule`.

The OCPP rules the composite follows (1.6 section 3.13, 2.0.1 K):

* **Applicable profiles.** For connector (1.6) / EVSE (2.0.1) ``N > 0``: the profiles
  installed on ``N`` and on ``0`` (the whole station); for ``0``: those on ``0`` only.
  1.6 ``ChargePointMaxProfile`` is 2.0.1 ``ChargingStationMaxProfile`` (one purpose here).
* **Validity.** A profile applies from ``validFrom`` (inclusive) to ``validTo`` (exclusive),
  and only where its schedule covers the instant: from its start, for ``duration`` seconds
  when one is given. Before its first period nothing of it applies.
* **Schedule start.** ``Absolute``: ``startSchedule`` (absent: when it was installed).
  ``Relative``: the start of the transaction (without a transaction: the start of the
  window asked for, as a station with no session would begin it now). ``Recurring``
  ``Daily`` / ``Weekly``: ``startSchedule`` repeated every 24 h / 7 days, forwards and
  backwards.
* **Stacking.** Within one purpose the valid profile with the highest ``stackLevel`` that
  covers the instant wins; where it does not cover it, the next lower one applies.
* **Purposes.** ``TxProfile`` (of the running transaction: one naming another transaction
  is ignored) replaces ``TxDefaultProfile``; a ``TxDefaultProfile`` on the connector
  replaces one on connector 0. The station maximum (``ChargingStationMaxProfile``) and
  every external constraint (2.0.1 ``ChargingStationExternalConstraints``, the limits an
  EMS or grid operator set, reported by ``NotifyChargingLimit``) cap the result: the limit
  is the minimum of every limit that applies. Where none applies there is no limit
  (``None``: the station's own hardware maximum).
* **Units.** A limit in the other unit is converted: ``W = A x voltage x phases``, with the
  period's ``numberPhases`` (else ``phases``, 3 by default) and ``voltage`` (230 V by
  default; ``[plugins.smart_charging] voltage`` / ``phases`` set the CSMS's).
* 2.0.1 profiles carry up to three schedules (alternatives for ISO 15118); the first is
  used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import as_dict, as_int, as_list, as_str
from chargeledger.projections.reservations import parse_time

__all__ = [
    "CAP_PURPOSES",
    "DEFAULT_PHASES",
    "DEFAULT_VOLTAGE",
    "PURPOSES",
    "ChargingPeriod",
    "ChargingProfile",
    "CompositePeriod",
    "CompositeSchedule",
    "Difference",
    "TransactionContext",
    "Unit",
    "applicable",
    "compare_schedules",
    "composite_schedule",
    "convert",
    "limit_at",
    "normal_purpose",
    "parse_profile",
    "parse_schedule",
    "periods_json",
    "profile_json",
    "schedule_svg",
    "schedule_table",
]

Unit = Literal["A", "W"]

DEFAULT_VOLTAGE = 230.0
DEFAULT_PHASES = 3

PURPOSES = (
    "ChargingStationMaxProfile",
    "ChargingStationExternalConstraints",
    "TxDefaultProfile",
    "TxProfile",
)
"""The purposes, version-neutral (1.6 ``ChargePointMaxProfile`` is the first)."""

CAP_PURPOSES = frozenset({"ChargingStationMaxProfile", "ChargingStationExternalConstraints"})
"""Purposes whose limits cap whatever else applies."""

_RECURRENCE = {"Daily": 86400.0, "Weekly": 7 * 86400.0}

_TOLERANCE = 0.01
"""Relative difference between two limits below which they are the same (rounding)."""


def normal_purpose(purpose: str | None) -> str | None:
    """The version-neutral purpose (1.6 ``ChargePointMaxProfile`` is
    ``ChargingStationMaxProfile``); ``None`` for anything that is not a purpose."""
    if purpose == "ChargePointMaxProfile":
        return "ChargingStationMaxProfile"
    return purpose if purpose in PURPOSES else None


class ChargingPeriod(msgspec.Struct, frozen=True):
    """One period of a schedule: from ``start`` seconds into it, at most ``limit``."""

    start: int
    limit: float
    phases: int | None = None


class ChargingProfile(msgspec.Struct, frozen=True, kw_only=True):
    """A charging profile, version-neutral, where it is installed and where it came from."""

    id: int
    station: str
    place: int
    """The 1.6 connector / 2.0.1 EVSE (one numbering); 0: the whole station."""
    purpose: str
    """Version-neutral (:data:`PURPOSES`)."""
    stack_level: int
    kind: str
    """``Absolute``, ``Recurring`` or ``Relative``."""
    recurrency: str | None = None
    valid_from: float | None = None
    valid_to: float | None = None
    start_schedule: float | None = None
    duration: float | None = None
    unit: Unit
    periods: tuple[ChargingPeriod, ...]
    min_charging_rate: float | None = None
    transaction_id: int | str | None = None
    source: str = "CSO"
    """2.0.1 ``chargingLimitSource``: ``CSO`` for the profiles the CSMS installed, ``EMS``,
    ``SO`` or ``Other`` for limits set by others."""
    installed_at: float
    position: int
    """Log position of the frame that made it known."""
    reported: bool = False
    """Whether the station reported it (ReportChargingProfiles, NotifyChargingLimit)."""
    wire: dict[str, Any] = {}
    """The profile (or limit schedule) as sent or reported."""


class TransactionContext(msgspec.Struct, frozen=True):
    """The transaction running on the connector: its id and when it started (UNIX s)."""

    transaction_id: int | str
    started_at: float


def parse_schedule(
    schedule: Any,
) -> tuple[Unit, tuple[ChargingPeriod, ...], float | None, float | None, float | None] | None:
    """A wire ``chargingSchedule`` as (unit, periods, start, duration, min rate); ``None``
    when it is not one (no unit, no period, a period without start or limit)."""
    schedule = as_dict(schedule)
    unit = schedule.get("chargingRateUnit")
    if unit not in ("A", "W"):
        return None
    periods = []
    for item in as_list(schedule.get("chargingSchedulePeriod")):
        item = as_dict(item)
        start, limit = as_int(item.get("startPeriod")), _number(item.get("limit"))
        if start is None or limit is None:
            return None
        periods.append(ChargingPeriod(start, limit, as_int(item.get("numberPhases"))))
    if not periods:
        return None
    return (
        unit,
        tuple(periods),
        parse_time(as_str(schedule.get("startSchedule"))),
        _number(schedule.get("duration")),
        _number(schedule.get("minChargingRate")),
    )


def _number(value: Any) -> float | None:
    """A JSON number as a float; ``None`` for anything else (a bool too)."""
    return float(value) if type(value) in (int, float) else None


def parse_profile(
    wire: Any,
    *,
    station: str,
    place: int,
    at: float,
    position: int,
    source: str = "CSO",
    reported: bool = False,
) -> ChargingProfile | None:
    """A 1.6 ``csChargingProfiles`` or 2.0.1 ``chargingProfile`` as a :class:`ChargingProfile`
    installed at ``place`` at ``at``; ``None`` when it cannot be read (never raises)."""
    wire = as_dict(wire)
    profile_id = as_int(wire.get("chargingProfileId", wire.get("id")))
    purpose = normal_purpose(as_str(wire.get("chargingProfilePurpose")))
    stack_level = as_int(wire.get("stackLevel"))
    kind = as_str(wire.get("chargingProfileKind"))
    schedule = wire.get("chargingSchedule")
    if type(schedule) is list:  # 2.0.1: up to three alternatives, the first is used
        schedule = schedule[0] if schedule else None
    parsed = parse_schedule(schedule)
    if (
        profile_id is None
        or purpose is None
        or stack_level is None
        or kind not in ("Absolute", "Recurring", "Relative")
        or parsed is None
    ):
        return None
    unit, periods, start, duration, minimum = parsed
    transaction_id = wire.get("transactionId")
    return ChargingProfile(
        id=profile_id,
        station=station,
        place=place,
        purpose=purpose,
        stack_level=stack_level,
        kind=kind,
        recurrency=as_str(wire.get("recurrencyKind")),
        valid_from=parse_time(as_str(wire.get("validFrom"))),
        valid_to=parse_time(as_str(wire.get("validTo"))),
        start_schedule=start,
        duration=duration,
        unit=unit,
        periods=periods,
        min_charging_rate=minimum,
        transaction_id=transaction_id if type(transaction_id) in (int, str) else None,
        source=source,
        installed_at=at,
        position=position,
        reported=reported,
        wire=wire,
    )


def convert(
    limit: float,
    unit: Unit,
    to: Unit,
    phases: int | None = None,
    *,
    voltage: float = DEFAULT_VOLTAGE,
    default_phases: int = DEFAULT_PHASES,
) -> float:
    """``limit`` in ``unit`` expressed in ``to``: ``W = A x voltage x phases``."""
    if unit == to:
        return limit
    factor = voltage * (phases or default_phases)
    return limit * factor if to == "W" else limit / factor


def _starts(
    profile: ChargingProfile, t: float, transaction: TransactionContext | None, origin: float
) -> float | None:
    """When the occurrence of ``profile``'s schedule that may cover ``t`` began."""
    if profile.kind == "Relative":
        return transaction.started_at if transaction is not None else origin
    if profile.kind == "Recurring":
        period = _RECURRENCE.get(profile.recurrency or "")
        if period is None or profile.start_schedule is None:
            return None
        return profile.start_schedule + math.floor((t - profile.start_schedule) / period) * period
    return profile.start_schedule if profile.start_schedule is not None else profile.installed_at


def _period_at(
    profile: ChargingProfile, t: float, transaction: TransactionContext | None, origin: float
) -> ChargingPeriod | None:
    """The period of ``profile`` in force at ``t``; ``None`` when it does not apply then."""
    if profile.valid_from is not None and t < profile.valid_from:
        return None
    if profile.valid_to is not None and t >= profile.valid_to:
        return None
    start = _starts(profile, t, transaction, origin)
    if start is None:
        return None
    offset = t - start
    if offset < 0 or (profile.duration is not None and offset >= profile.duration):
        return None
    found = None
    for period in profile.periods:
        if period.start <= offset:
            found = period
        else:
            break
    return found


def _winner(
    profiles: Iterable[ChargingProfile],
    t: float,
    transaction: TransactionContext | None,
    origin: float,
) -> tuple[ChargingProfile, ChargingPeriod] | None:
    """The profile with the highest stack level that covers ``t``, and its period."""
    best: tuple[ChargingProfile, ChargingPeriod] | None = None
    for profile in profiles:
        period = _period_at(profile, t, transaction, origin)
        if period is not None and (best is None or profile.stack_level > best[0].stack_level):
            best = (profile, period)
    return best


def applicable(
    profiles: Iterable[ChargingProfile], place: int, transaction: TransactionContext | None
) -> list[ChargingProfile]:
    """The profiles that can apply to ``place``: its own and the station's (for ``place`` 0
    the station's only); TxProfiles only of the running transaction."""
    found = []
    for profile in profiles:
        if profile.place not in (0, place):
            continue
        if profile.purpose == "TxProfile" and (
            transaction is None
            or (
                profile.transaction_id is not None
                and str(profile.transaction_id) != str(transaction.transaction_id)
            )
        ):
            continue
        found.append(profile)
    return found


def limit_at(
    profiles: Sequence[ChargingProfile],
    place: int,
    t: float,
    unit: Unit,
    *,
    transaction: TransactionContext | None = None,
    origin: float | None = None,
    voltage: float = DEFAULT_VOLTAGE,
    phases: int = DEFAULT_PHASES,
) -> float | None:
    """The limit in ``unit`` at the instant ``t`` for ``place``, by the rules of the module
    docstring; ``None``: no profile applies. ``origin`` starts relative profiles when no
    transaction runs (default ``t``)."""
    return _limit(
        applicable(profiles, place, transaction),
        place,
        t,
        unit,
        transaction,
        t if origin is None else origin,
        voltage,
        phases,
    )


def _limit(
    profiles: Sequence[ChargingProfile],
    place: int,
    t: float,
    unit: Unit,
    transaction: TransactionContext | None,
    origin: float,
    voltage: float,
    phases: int,
) -> float | None:
    def value(found: tuple[ChargingProfile, ChargingPeriod] | None) -> float | None:
        if found is None:
            return None
        profile, period = found
        return convert(
            period.limit, profile.unit, unit, period.phases, voltage=voltage, default_phases=phases
        )

    def of(purpose: str, where: int | None = None) -> list[ChargingProfile]:
        return [p for p in profiles if p.purpose == purpose and (where is None or p.place == where)]

    limits = [value(_winner(of("ChargingStationMaxProfile"), t, transaction, origin))]
    limits += [
        value(_winner([p], t, transaction, origin))
        for p in of("ChargingStationExternalConstraints")
    ]
    tx = _winner(of("TxProfile"), t, transaction, origin)
    if tx is None and place:
        tx = _winner(of("TxDefaultProfile", place), t, transaction, origin)
    if tx is None:
        tx = _winner(of("TxDefaultProfile", 0), t, transaction, origin)
    limits.append(value(tx))
    defined = [limit for limit in limits if limit is not None]
    return min(defined) if defined else None


def _breakpoints(
    profile: ChargingProfile,
    start: float,
    end: float,
    transaction: TransactionContext | None,
) -> list[float]:
    """Every instant in ``(start, end)`` where ``profile``'s limit may change."""
    points = [profile.valid_from, profile.valid_to]
    origins: list[float] = []
    if profile.kind == "Recurring":
        period = _RECURRENCE.get(profile.recurrency or "")
        if period is not None and profile.start_schedule is not None:
            first = math.floor((start - profile.start_schedule) / period) - 1
            last = math.ceil((end - profile.start_schedule) / period)
            origins = [profile.start_schedule + k * period for k in range(first, last + 1)]
    else:
        at = _starts(profile, start, transaction, start)
        origins = [] if at is None else [at]
    for origin in origins:
        points += [origin + period.start for period in profile.periods]
        if profile.duration is not None:
            points.append(origin + profile.duration)
    return [point for point in points if point is not None and start < point < end]


class CompositePeriod(msgspec.Struct, frozen=True):
    """From ``start`` seconds into the window, the limit (``None``: no profile applies)."""

    start: int
    limit: float | None


class CompositeSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """The composite schedule of a connector (EVSE) over a window."""

    station: str
    place: int
    start: float
    """The window's start (UNIX seconds)."""
    duration: int
    unit: Unit
    periods: tuple[CompositePeriod, ...]

    def limit_at(self, t: float) -> float | None:
        """The limit at the instant ``t`` within the window (``None`` outside it too)."""
        if not self.start <= t < self.start + self.duration:
            return None
        found = None
        for period in self.periods:
            if self.start + period.start <= t:
                found = period.limit
        return found


def composite_schedule(
    profiles: Iterable[ChargingProfile],
    station: str,
    place: int,
    start: float,
    duration: int,
    unit: Unit = "W",
    *,
    transaction: TransactionContext | None = None,
    voltage: float = DEFAULT_VOLTAGE,
    phases: int = DEFAULT_PHASES,
) -> CompositeSchedule:
    """The composite schedule of ``place`` (connector / EVSE; 0: the station) from ``start``
    for ``duration`` seconds in ``unit``, by the rules of the module docstring, over
    ``profiles`` (those of ``station``; the others are ignored). Periods start on whole
    seconds: an instant where a limit changes is rounded up to the next second, as a
    station's schedule periods are."""
    chosen = applicable((p for p in profiles if p.station == station), place, transaction)
    end = start + duration
    points = {start}
    for profile in chosen:
        points.update(
            start + math.ceil(point - start)
            for point in _breakpoints(profile, start, end, transaction)
        )
    periods: list[CompositePeriod] = []
    for point in sorted(p for p in points if p < end):
        limit = _limit(chosen, place, point, unit, transaction, start, voltage, phases)
        if periods and periods[-1].limit == limit:
            continue
        periods.append(CompositePeriod(round(point - start), limit))
    return CompositeSchedule(
        station=station,
        place=place,
        start=start,
        duration=duration,
        unit=unit,
        periods=tuple(periods),
    )


class Difference(msgspec.Struct, frozen=True):
    """Where the station's composite schedule differs from ours: from ``at`` (UNIX s) the
    station says ``station_limit`` and we computed ``csms_limit`` (``None``: no limit)."""

    at: float
    station_limit: float | None
    csms_limit: float | None


def compare_schedules(
    ours: CompositeSchedule, theirs: Sequence[ChargingPeriod], their_start: float
) -> list[Difference]:
    """Where the station's schedule (``theirs``, from ``their_start``, in ``ours.unit``)
    differs from ours within our window: we have a limit and the station another (by more
    than 1 %, at least 0.1) or none. Where we have none the station may name its hardware
    maximum: no difference."""
    end = ours.start + ours.duration

    def their_limit(t: float) -> float | None:
        found = None
        for period in theirs:
            if their_start + period.start <= t:
                found = period.limit
        return found

    points = sorted(
        {ours.start + p.start for p in ours.periods}
        | {their_start + p.start for p in theirs if ours.start <= their_start + p.start < end}
    )
    found: list[Difference] = []
    for point in points:
        mine, station = ours.limit_at(point), their_limit(point)
        if mine is None:
            continue
        differs = station is None or abs(station - mine) > max(0.1, _TOLERANCE * abs(mine))
        if differs and (
            not found or (found[-1].station_limit, found[-1].csms_limit) != (station, mine)
        ):
            found.append(Difference(point, station, mine))
    return found


def periods_json(periods: Iterable[ChargingPeriod]) -> list[dict[str, Any]]:
    return [
        {"start": p.start, "limit": p.limit, **({"phases": p.phases} if p.phases else {})}
        for p in periods
    ]


def profile_json(profile: ChargingProfile) -> dict[str, Any]:
    """``profile`` as JSON-ready builtins with stable keys (docs/smart-charging.md)."""

    def time(at: float | None) -> str | None:
        return None if at is None else rfc3339(at)

    return {
        "id": profile.id,
        "station": profile.station,
        "place": profile.place,
        "purpose": profile.purpose,
        "stack_level": profile.stack_level,
        "kind": profile.kind,
        "recurrency": profile.recurrency,
        "valid_from": time(profile.valid_from),
        "valid_to": time(profile.valid_to),
        "start_schedule": time(profile.start_schedule),
        "duration": profile.duration,
        "unit": profile.unit,
        "periods": periods_json(profile.periods),
        "min_charging_rate": profile.min_charging_rate,
        "transaction_id": profile.transaction_id,
        "source": profile.source,
        "reported": profile.reported,
        "installed_at": time(profile.installed_at),
        "position": profile.position,
    }


def schedule_table(schedule: CompositeSchedule) -> str:
    """The schedule as a plain-text table: one row per period, its start and end (UTC) and
    its limit (``-``: none)."""
    rows = [f"{'from':<24} {'until':<24} {'limit ' + schedule.unit:>12}"]
    ends = [p.start for p in schedule.periods[1:]] + [schedule.duration]
    for period, until in zip(schedule.periods, ends, strict=True):
        limit = "-" if period.limit is None else f"{period.limit:g}"
        rows.append(
            f"{rfc3339(schedule.start + period.start):<24} "
            f"{rfc3339(schedule.start + until):<24} {limit:>12}"
        )
    return "\n".join(rows) + "\n"


def schedule_svg(schedule: CompositeSchedule, width: int = 480, height: int = 160) -> str:
    """The schedule as a small SVG step plot of the limit over the window (no limit: drawn
    at the top, dashed), with the highest limit and the window's ends labelled."""
    limits = [p.limit for p in schedule.periods if p.limit is not None]
    top = max(limits, default=1.0) or 1.0
    pad, plot_w, plot_h = 24, width - 48, height - 48

    def x(offset: float) -> float:
        return pad + plot_w * offset / schedule.duration

    def y(limit: float | None) -> float:
        return pad + plot_h * (1 - (top if limit is None else limit) / top)

    ends = [p.start for p in schedule.periods[1:]] + [schedule.duration]
    lines = []
    for period, end in zip(schedule.periods, ends, strict=True):
        dash = ' stroke-dasharray="4 3"' if period.limit is None else ""
        lines.append(
            f'<line x1="{x(period.start):.1f}" y1="{y(period.limit):.1f}" '
            f'x2="{x(end):.1f}" y2="{y(period.limit):.1f}" stroke="#1565c0" '
            f'stroke-width="2"{dash}/>'
        )
    first, last = rfc3339(schedule.start), rfc3339(schedule.start + schedule.duration)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">'
        f"<title>{schedule.station} {schedule.place}: limit ({schedule.unit}) over time</title>"
        f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" fill="none" '
        f'stroke="#999"/>'
        + "".join(lines)
        + f'<text x="{pad}" y="{pad - 6}">{top:g} {schedule.unit}</text>'
        f'<text x="{pad}" y="{height - 8}">{first}</text>'
        f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{last}</text>'
        "</svg>"
    )
