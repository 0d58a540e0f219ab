"""Smart-charging use cases (1.6 Smart Charging, 2.0.1 K): set and clear charging profiles,
the station's composite schedule, the station's profiles (2.0.1), with their checks.

Connector (1.6) and EVSE (2.0.1) are one numbering here, the ``place``: ``evse_id`` (2.0.1
numbering) or ``connector_id`` (1.6), 0 (or neither) the whole station. Purposes are named
in either version's spelling (``ChargePointMaxProfile`` is ``ChargingStationMaxProfile``)
and sent in the station's. ``set_charging_profile`` is checked before anything is recorded
(:func:`check_charging_profile`): periods ascending from 0, the kind's and purpose's rules,
and what the station says it supports (1.6 configuration keys, 2.0.1 ``SmartChargingCtrlr``
variables). The profile id is allocated by the CSMS unless given. See
docs/smart-charging.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.times import rfc3339
from chargeledger.core.usecase_base import (
    ACCEPTED_STATUSES,
    ReportProbe,
    ReportProgress,
    Request,
    UseCase,
    UseCaseArgs,
    UseCaseResult,
    connector_16,
    only_201,
    present,
)
from chargeledger.projections import Views
from chargeledger.projections.composite import normal_purpose, profile_json
from chargeledger.projections.reservations import parse_time
from chargeledger.schemas import OCPP16

__all__ = [
    "LIMIT_KEYS",
    "USE_CASES",
    "ClearChargingProfileArgs",
    "GetChargingProfilesArgs",
    "GetCompositeScheduleArgs",
    "ProfilePeriod",
    "Purpose",
    "SetChargingProfileArgs",
    "charging_profile",
    "check_charging_profile",
    "clear_charging_profile",
    "get_charging_profiles",
    "get_composite_schedule",
    "place_of",
    "profiles_report",
    "set_charging_profile",
]

Purpose = Literal[
    "ChargePointMaxProfile", "ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile"
]
Kind = Literal["Absolute", "Recurring", "Relative"]
Unit = Literal["A", "W"]

LIMIT_KEYS = {
    "periods": ("ChargingScheduleMaxPeriods", "SmartChargingCtrlr.PeriodsPerSchedule"),
    "stack_level": ("ChargeProfileMaxStackLevel", "SmartChargingCtrlr.ProfileStackLevel"),
    "units": ("ChargingScheduleAllowedChargingRateUnit", "SmartChargingCtrlr.RateUnit"),
}
"""What the station supports: its 1.6 configuration key and 2.0.1 variable."""


class ProfilePeriod(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One period: from ``start`` seconds into the schedule, at most ``limit`` (A or W), on
    ``phases`` phases (default: the station's)."""

    start: Annotated[int, msgspec.Meta(ge=0)]
    limit: Annotated[float, msgspec.Meta(ge=0)]
    phases: Annotated[int, msgspec.Meta(ge=1, le=3)] | None = None


def place_of(protocol: str, evse_id: int | None, connector_id: int | None) -> int:
    """The connector (1.6) / EVSE (2.0.1) the ids name, one numbering; 0: the station."""
    if protocol == OCPP16:
        return connector_16(evse_id, connector_id) or 0
    return evse_id if evse_id is not None else (connector_id or 0)


def _purpose(protocol: str, purpose: str) -> str:
    neutral = normal_purpose(purpose) or purpose
    if protocol == OCPP16 and neutral == "ChargingStationMaxProfile":
        return "ChargePointMaxProfile"
    return neutral


def _time(text: str | None, name: str) -> str | None:
    if text is None:
        return None
    at = parse_time(text)
    if at is None:
        raise InvalidUseCaseArguments(f"{name} {text!r} is not an RFC 3339 time")
    return rfc3339(at)


def charging_profile(
    protocol: str,
    profile_id: int,
    purpose: str,
    periods: list[ProfilePeriod],
    *,
    unit: str = "W",
    kind: str = "Absolute",
    stack_level: int = 0,
    recurrency: str | None = None,
    start_schedule: str | None = None,
    duration: int | None = None,
    valid_from: str | None = None,
    valid_to: str | None = None,
    transaction_id: int | str | None = None,
    min_charging_rate: float | None = None,
) -> dict[str, Any]:
    """A charging profile on the wire of ``protocol``: 1.6 ``csChargingProfiles``, 2.0.1
    ``chargingProfile`` (one schedule, whose id is the profile's). ``InvalidUseCaseArguments``
    when a time is not RFC 3339."""
    schedule = present(
        startSchedule=_time(start_schedule, "start_schedule"),
        duration=duration,
        chargingRateUnit=unit,
        chargingSchedulePeriod=[
            present(startPeriod=p.start, limit=p.limit, numberPhases=p.phases) for p in periods
        ],
        minChargingRate=min_charging_rate,
    )
    common = present(
        stackLevel=stack_level,
        chargingProfilePurpose=_purpose(protocol, purpose),
        chargingProfileKind=kind,
        recurrencyKind=recurrency,
        validFrom=_time(valid_from, "valid_from"),
        validTo=_time(valid_to, "valid_to"),
    )
    if protocol == OCPP16:
        if transaction_id is not None and not isinstance(transaction_id, int):
            raise UnsupportedUseCase("OCPP 1.6 transaction ids are integers")
        return {
            "chargingProfileId": profile_id,
            **present(transactionId=transaction_id),
            **common,
            "chargingSchedule": schedule,
        }
    return {
        "id": profile_id,
        **common,
        **present(transactionId=None if transaction_id is None else str(transaction_id)),
        "chargingSchedule": [{"id": profile_id, **schedule}],
    }


def _reader(
    protocol: str,
    action: str,
    values: Callable[[dict[str, Any]], dict[str, Any]],
    accepted: frozenset[str] = ACCEPTED_STATUSES,
) -> Callable[[dict[str, Any]], UseCaseResult]:
    """Reads an answer's ``status`` (accepted when in ``accepted``) and ``values`` of it."""

    def read(response: dict[str, Any]) -> UseCaseResult:
        status = str(response.get("status", ""))
        return UseCaseResult(
            protocol=protocol,
            action=action,
            status=status,
            accepted=status in accepted,
            response=response,
            values=values(response),
        )

    return read


# -- set ----------------------------------------------------------------------------------------


class SetChargingProfileArgs(UseCaseArgs, tag="set_charging_profile"):
    """Install a charging profile: `purpose` `ChargingStationMaxProfile` (1.6
    `ChargePointMaxProfile`, on the station: no ids), `TxDefaultProfile` (the station or a
    connector/EVSE) or `TxProfile` (the transaction running on the connector/EVSE; 2.0.1
    needs its `transaction_id`); `kind` `Absolute` (from `start_schedule`), `Recurring`
    (`recurrency` `Daily`/`Weekly` from `start_schedule`) or `Relative` (from the
    transaction start); `periods` of `start` seconds and `limit` in `unit` (`A` or `W`).
    Checked against the station's limits first; the CSMS allocates `values.profile_id`.
    Folded into the charging-profile projection (docs/smart-charging.md)."""

    purpose: Purpose
    periods: list[ProfilePeriod]
    unit: Unit = "W"
    kind: Kind = "Absolute"
    stack_level: Annotated[int, msgspec.Meta(ge=0)] = 0
    evse_id: int | None = None
    connector_id: int | None = None
    recurrency: Literal["Daily", "Weekly"] | None = None
    start_schedule: str | None = None
    duration: Annotated[int, msgspec.Meta(ge=1)] | None = None
    valid_from: str | None = None
    valid_to: str | None = None
    transaction_id: int | str | None = None
    min_charging_rate: float | None = None
    profile_id: Annotated[int, msgspec.Meta(ge=1)] | None = None


def set_charging_profile(protocol: str, a: SetChargingProfileArgs, request_id: int) -> Request:
    """1.6 SetChargingProfile (``connectorId``, ``csChargingProfiles``); 2.0.1
    SetChargingProfile (``evseId``, ``chargingProfile``); ``values.profile_id``."""
    profile_id = a.profile_id or request_id
    profile = charging_profile(
        protocol,
        profile_id,
        a.purpose,
        a.periods,
        unit=a.unit,
        kind=a.kind,
        stack_level=a.stack_level,
        recurrency=a.recurrency,
        start_schedule=a.start_schedule,
        duration=a.duration,
        valid_from=a.valid_from,
        valid_to=a.valid_to,
        transaction_id=a.transaction_id,
        min_charging_rate=a.min_charging_rate,
    )
    place = place_of(protocol, a.evse_id, a.connector_id)
    if protocol == OCPP16:
        payload = {"connectorId": place, "csChargingProfiles": profile}
    else:
        payload = {"evseId": place, "chargingProfile": profile}
    read = _reader(protocol, "SetChargingProfile", lambda _: {"profile_id": profile_id})
    return Request(protocol, "SetChargingProfile", payload, read)


def _configured(views: Views, station: str, protocol: str, what: str) -> str | None:
    # Imported here: the use-case table (usecases) imports this module.
    from chargeledger.core.usecases import configured_value

    key_16, variable = LIMIT_KEYS[what]
    return configured_value(views, station, key_16 if protocol == OCPP16 else variable)


def _as_int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


def check_charging_profile(
    views: Views, station: str, protocol: str, a: SetChargingProfileArgs, now: float
) -> None:
    """Refuse, before anything is recorded or sent, a profile the station would reject or
    that makes no sense (``InvalidUseCaseArguments``, every problem named): periods must
    ascend strictly from 0 (and start within ``duration``); ``Absolute`` and ``Recurring``
    need ``start_schedule``, ``Recurring`` a ``recurrency``, ``Relative`` neither; a station
    maximum is on the station (no ids) and not ``Relative``; a ``TxProfile`` is on a
    connector/EVSE with a running transaction (2.0.1: naming it), a ``transaction_id`` is
    the running one; ``valid_from`` before ``valid_to``, which lies ahead; and what the
    station says it supports: ``ChargingScheduleMaxPeriods`` /
    ``SmartChargingCtrlr.PeriodsPerSchedule``, ``ChargeProfileMaxStackLevel`` /
    ``ProfileStackLevel``, ``ChargingScheduleAllowedChargingRateUnit`` / ``RateUnit``."""
    problems = []
    starts = [period.start for period in a.periods]
    if not starts:
        problems.append("a profile needs at least one period")
    elif starts[0] != 0 or any(b <= s for s, b in itertools.pairwise(starts)):
        problems.append(f"period starts {starts} must ascend strictly from 0")
    if a.duration is not None and starts and starts[-1] >= a.duration:
        problems.append(f"period start {starts[-1]} lies beyond the duration {a.duration}")
    if a.kind in ("Absolute", "Recurring") and a.start_schedule is None:
        problems.append(f"an {a.kind} profile needs start_schedule")
    if a.kind == "Recurring" and a.recurrency is None:
        problems.append("a Recurring profile needs recurrency (Daily or Weekly)")
    if a.kind != "Recurring" and a.recurrency is not None:
        problems.append("recurrency is for Recurring profiles only")
    if a.kind == "Relative" and a.start_schedule is not None:
        problems.append("a Relative profile starts with the transaction: no start_schedule")
    place = place_of(protocol, a.evse_id, a.connector_id)
    purpose = normal_purpose(a.purpose)
    if purpose == "ChargingStationMaxProfile":
        if place:
            problems.append("a station maximum profile is set on the station (no evse/connector)")
        if a.kind == "Relative":
            problems.append("a station maximum profile cannot be Relative")
    if a.transaction_id is not None and purpose != "TxProfile":
        problems.append("transaction_id is for a TxProfile only")
    if purpose == "TxProfile":
        running = views.charging_profiles.transaction_on(station, place) if place else None
        if not place:
            problems.append("a TxProfile is set on a connector/EVSE, not on the station")
        elif running is None:
            problems.append(f"no transaction is running on {station} {place}")
        elif a.transaction_id is not None and str(a.transaction_id) != str(running.transaction_id):
            problems.append(
                f"transaction {a.transaction_id} is not the one running on {place}"
                f" ({running.transaction_id})"
            )
        elif a.transaction_id is None and protocol != OCPP16:
            problems.append(
                f"a 2.0.1 TxProfile names its transaction: transaction_id "
                f"{running.transaction_id!r} runs on EVSE {place}"
            )
    valid_from, valid_to = parse_time(a.valid_from), parse_time(a.valid_to)
    for name, text in (
        ("valid_from", a.valid_from),
        ("valid_to", a.valid_to),
        ("start_schedule", a.start_schedule),
    ):
        if text is not None and parse_time(text) is None:
            problems.append(f"{name} {text!r} is not an RFC 3339 time")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        problems.append("valid_to must come after valid_from")
    if valid_to is not None and valid_to <= now:
        problems.append(f"valid_to {a.valid_to} is past (now is {rfc3339(now)})")
    most = _as_int(_configured(views, station, protocol, "periods"))
    if most is not None and len(a.periods) > most:
        problems.append(
            f"{station} takes at most {most} periods per schedule, not {len(a.periods)}"
        )
    highest = _as_int(_configured(views, station, protocol, "stack_level"))
    if highest is not None and a.stack_level > highest:
        problems.append(f"{station}'s highest stack level is {highest}, not {a.stack_level}")
    units = _configured(views, station, protocol, "units")
    if units is not None:
        allowed = {
            {"current": "A", "power": "W"}.get(part.strip().lower(), part.strip().upper())
            for part in units.split(",")
        }
        if a.unit not in allowed:
            problems.append(f"{station} takes limits in {units} only, not {a.unit}")
    if problems:
        raise InvalidUseCaseArguments("; ".join(problems) + ": nothing was sent")


# -- clear --------------------------------------------------------------------------------------


class ClearChargingProfileArgs(UseCaseArgs, tag="clear_charging_profile"):
    """Clear the profile `profile_id`, or every profile matching all the criteria given
    (connector/EVSE, 0 the station's own; `purpose`; `stack_level`); none: every profile.
    `status` `Accepted` or `Unknown`; folded as the station applies it."""

    profile_id: int | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    purpose: Purpose | None = None
    stack_level: Annotated[int, msgspec.Meta(ge=0)] | None = None


def clear_charging_profile(protocol: str, a: ClearChargingProfileArgs) -> Request:
    """1.6 ClearChargingProfile (``id``, ``connectorId``, ``chargingProfilePurpose``,
    ``stackLevel``); 2.0.1 ClearChargingProfile (``chargingProfileId``,
    ``chargingProfileCriteria``)."""
    place = None
    if a.evse_id is not None or a.connector_id is not None:
        place = place_of(protocol, a.evse_id, a.connector_id)
    purpose = None if a.purpose is None else _purpose(protocol, a.purpose)
    if protocol == OCPP16:
        payload = present(
            id=a.profile_id,
            connectorId=place,
            chargingProfilePurpose=purpose,
            stackLevel=a.stack_level,
        )
    else:
        criteria = present(evseId=place, chargingProfilePurpose=purpose, stackLevel=a.stack_level)
        payload = present(chargingProfileId=a.profile_id, chargingProfileCriteria=criteria or None)
    return Request(protocol, "ClearChargingProfile", payload)


# -- composite schedule -------------------------------------------------------------------------


class GetCompositeScheduleArgs(UseCaseArgs, tag="get_composite_schedule"):
    """Ask the station for its composite schedule of a connector/EVSE (0: the station) for
    `duration` seconds from now, in `unit` (default: the station's); `values` hold
    `schedule_start`, `unit` and `periods`. The answer is compared with the CSMS's own
    composite: a difference is an audit finding (`composite_mismatch`)."""

    duration: Annotated[int, msgspec.Meta(ge=1)]
    evse_id: int | None = None
    connector_id: int | None = None
    unit: Unit | None = None


def get_composite_schedule(protocol: str, a: GetCompositeScheduleArgs) -> Request:
    place = place_of(protocol, a.evse_id, a.connector_id)
    if protocol == OCPP16:
        payload = present(connectorId=place, duration=a.duration, chargingRateUnit=a.unit)
    else:
        payload = present(duration=a.duration, chargingRateUnit=a.unit, evseId=place)

    def values(response: dict[str, Any]) -> dict[str, Any]:
        if protocol == OCPP16:
            schedule = response.get("chargingSchedule") or {}
            start = response.get("scheduleStart", schedule.get("startSchedule"))
        else:
            schedule = response.get("schedule") or {}
            start = schedule.get("scheduleStart")
        if not schedule:
            return {}
        return {
            "place": place,
            "schedule_start": start,
            "duration": schedule.get("duration"),
            "unit": schedule.get("chargingRateUnit"),
            "periods": [
                {"start": p.get("startPeriod"), "limit": p.get("limit")}
                for p in schedule.get("chargingSchedulePeriod", [])
            ],
        }

    read = _reader(protocol, "GetCompositeSchedule", values)
    return Request(protocol, "GetCompositeSchedule", payload, read)


# -- the station's profiles (2.0.1) -------------------------------------------------------------


class GetChargingProfilesArgs(UseCaseArgs, tag="get_charging_profiles"):
    """2.0.1: ask the station for its profiles (of an EVSE, 0 the station's; of a
    `purpose`, `stack_level`, ids, `sources` `CSO`/`EMS`/`SO`/`Other`) and wait for every
    ReportChargingProfiles part; `values.profiles` lists them (`NoProfiles`: none)."""

    evse_id: int | None = None
    purpose: Purpose | None = None
    stack_level: Annotated[int, msgspec.Meta(ge=0)] | None = None
    profile_ids: list[int] | None = None
    sources: list[Literal["EMS", "Other", "SO", "CSO"]] | None = None


def get_charging_profiles(protocol: str, a: GetChargingProfilesArgs, request_id: int) -> Request:
    """2.0.1 GetChargingProfiles with ``requestId`` ``request_id``; the profiles arrive in
    ReportChargingProfiles parts (the API waits for them)."""
    only_201(protocol, "GetChargingProfiles")
    criterion = present(
        chargingProfilePurpose=None if a.purpose is None else _purpose(protocol, a.purpose),
        stackLevel=a.stack_level,
        chargingProfileId=a.profile_ids,
        chargingLimitSource=a.sources,
    )
    payload = present(requestId=request_id, evseId=a.evse_id, chargingProfile=criterion)

    read = _reader(
        protocol,
        "GetChargingProfiles",
        lambda _: {"profiles": []},
        frozenset({"Accepted", "NoProfiles"}),
    )
    return Request(
        protocol, "GetChargingProfiles", payload, read, report=profiles_report(request_id)
    )


def profiles_report(request_id: int) -> ReportProbe:
    """The probe of a GetChargingProfiles report: complete once the part without ``tbc`` is
    folded, or at once when the station answered ``NoProfiles`` (no part follows);
    ``values``: ``{"profiles": [...]}``, the profiles the report named."""

    def probe(views: Views, station: str) -> ReportProgress:
        report = views.charging_profiles.report(station, request_id)
        found = []
        for _, profile_id in [] if report is None else report.profiles:
            profile = views.charging_profiles.get(station, profile_id)
            if profile is not None:
                found.append(profile_json(profile))
        complete = report is not None and (report.complete or report.status == "NoProfiles")
        return ReportProgress(complete, {"profiles": found})

    return probe


USE_CASES: tuple[UseCase[Any], ...] = (
    UseCase[SetChargingProfileArgs](
        "set_charging_profile",
        SetChargingProfileArgs,
        set_charging_profile,
        check=check_charging_profile,
    ),
    UseCase[ClearChargingProfileArgs](
        "clear_charging_profile",
        ClearChargingProfileArgs,
        lambda protocol, a, _: clear_charging_profile(protocol, a),
    ),
    UseCase[GetCompositeScheduleArgs](
        "get_composite_schedule",
        GetCompositeScheduleArgs,
        lambda protocol, a, _: get_composite_schedule(protocol, a),
    ),
    UseCase[GetChargingProfilesArgs](
        "get_charging_profiles",
        GetChargingProfilesArgs,
        get_charging_profiles,
    ),
)
"""The smart-charging use cases (gathered by ``chargeledger.core.usecases.USE_CASES``)."""
