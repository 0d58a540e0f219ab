"""Charging profiles (1.6 Smart Charging, 2.0.1 K) folded from the frames that installed,
cleared, replaced, reported and ended them, and the composite schedules compared.

Per station and connector (1.6) / EVSE (2.0.1), one numbering (0: the whole station):

* **Installed**: our SetChargingProfile answered ``Accepted`` (whoever asked: use case,
  message mode, a plugin), and the TxProfile of a RemoteStartTransaction /
  RequestStartTransaction answered ``Accepted`` on a named connector (EVSE).
* **Replaced**, as the station does: a new profile replaces the one with the same id
  (anywhere on the station) and the one with the same stack level and purpose on the same
  connector (EVSE).
* **Cleared**: our ClearChargingProfile answered ``Accepted``, applied as the station applies
  it: by ``id`` when one is given (the criteria are then ignored), else every profile
  matching all the criteria given (connector / EVSE: 0 names the station's own profiles;
  purpose; stack level). Only profiles of the CSMS (``source`` ``CSO``) are cleared: limits
  from an EMS or grid operator are the station's to clear. An ``Unknown`` answer while we
  hold a matching profile is an anomaly (``clear_unknown``).
* **Reported**: 2.0.1 ReportChargingProfiles parts (the answer to GetChargingProfiles, by
  ``requestId``): each profile is upserted with its ``chargingLimitSource``; the report is
  complete at the part without ``tbc``. NotifyChargingLimit adds the schedules an external
  source set (purpose ``ChargingStationExternalConstraints``) on the EVSE, replacing that
  source's earlier ones there; ClearedChargingLimit removes them.
* **Ended**: a TxProfile ends with its transaction (1.6 StopTransaction, 2.0.1
  TransactionEvent ``Ended``); a TxProfile installed without a transaction id is bound to the
  transaction running on its connector, or to the next one started there.

The fold also keeps, per connector, the transaction running (relative profiles start with
it), the 2.0.1 ISO 15118 charging needs and EV schedules, and compares each
GetCompositeSchedule answer with :func:`~chargeledger.projections.composite.composite_schedule`
over the same window: a difference is an anomaly (``composite_mismatch``: the station
applies something other than we installed), as is an EV schedule above our limit
(``ev_schedule_above_limit``). Nothing here raises on a malformed frame.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.composite import (
    DEFAULT_PHASES,
    DEFAULT_VOLTAGE,
    ChargingProfile,
    CompositeSchedule,
    Difference,
    TransactionContext,
    Unit,
    compare_schedules,
    composite_schedule,
    normal_purpose,
    parse_profile,
    parse_schedule,
    periods_json,
    profile_json,
)
from chargeledger.projections.exchanges import (
    Exchange,
    Kind,
    as_dict,
    as_int,
    as_list,
    as_str,
    is_v16,
)
from chargeledger.projections.reservations import parse_time

__all__ = [
    "CHARGING_ANOMALY_KINDS",
    "ChargingAnomaly",
    "ChargingProfilesProjection",
    "Comparison",
    "EVChargingNeeds",
    "EVSchedule",
    "ProfileReport",
    "charging_profiles_json",
    "compare_above",
    "ev_schedule_within",
]

ChargingAnomalyKind = Literal["composite_mismatch", "clear_unknown", "ev_schedule_above_limit"]
CHARGING_ANOMALY_KINDS: tuple[str, ...] = get_args(ChargingAnomalyKind)


class ChargingAnomaly(msgspec.Struct, frozen=True, kw_only=True):
    """Something the station said that the profiles we know do not explain."""

    kind: ChargingAnomalyKind
    station: str
    place: int
    call_position: int
    position: int
    """Log position of the answer that showed it."""
    detail: str


class ProfileReport(msgspec.Struct, kw_only=True):
    """A 2.0.1 GetChargingProfiles request and the ReportChargingProfiles parts it got."""

    request_id: int
    requested_at: float
    status: str | None = None
    """The station's answer to GetChargingProfiles (``Accepted``, ``NoProfiles``)."""
    parts: int = 0
    complete: bool = False
    profiles: list[tuple[int, int]] = []
    """(place, profile id) of every profile reported, in order."""


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """A GetCompositeSchedule answer and our composite over the same window."""

    place: int
    position: int
    start: float
    duration: int
    unit: Unit
    station_periods: list[dict[str, Any]]
    csms: CompositeSchedule
    differences: list[Difference]


class EVChargingNeeds(msgspec.Struct, frozen=True, kw_only=True):
    """2.0.1 NotifyEVChargingNeeds, as folded (ISO 15118)."""

    station: str
    evse_id: int
    at: float
    position: int
    energy_transfer: str | None
    departure_time: float | None
    energy_amount_wh: float | None
    min_current: float | None
    max_current: float | None
    max_power: float | None
    max_voltage: float | None
    max_schedule_tuples: int | None
    wire: dict[str, Any]


class EVSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """2.0.1 NotifyEVChargingSchedule, as folded, and whether it stays within our limit."""

    station: str
    evse_id: int
    at: float
    position: int
    time_base: float | None
    wire: dict[str, Any]
    within_limit: bool | None
    """``None``: no limit applies or the schedule is unreadable."""


_Key = tuple[str, int]


class ChargingProfilesProjection:
    """Every charging profile by station, the transactions they follow, reports, limits."""

    CONCERNS: ClassVar[frozenset[Kind]]
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._profiles: dict[_Key, ChargingProfile] = {}
        """(station, profile id) -> the profile installed or reported."""
        self._limits: dict[tuple[str, str, int], list[ChargingProfile]] = {}
        """(station, source, EVSE) -> the external limits NotifyChargingLimit set."""
        self._transactions: dict[_Key, TransactionContext] = {}
        """(station, place) -> the transaction running there."""
        self._reports: dict[_Key, ProfileReport] = {}
        self.needs: dict[_Key, EVChargingNeeds] = {}
        """(station, EVSE) -> the newest ISO 15118 charging needs."""
        self.ev_schedules: dict[_Key, EVSchedule] = {}
        self.comparisons: dict[_Key, Comparison] = {}
        """(station, place) -> the newest composite schedule comparison."""
        self.anomalies: list[ChargingAnomaly] = []
        self._needs_at: tuple[int, EVChargingNeeds] | None = None

    # -- reading ---------------------------------------------------------------------------

    def profiles(self, station: str, place: int | None = None) -> list[ChargingProfile]:
        """The station's profiles and external limits (on ``place`` only, when given), by
        place, purpose, stack level and id."""
        found = [p for (s, _), p in self._profiles.items() if s == station]
        found += [p for (s, _, _), limits in self._limits.items() if s == station for p in limits]
        if place is not None:
            found = [p for p in found if p.place == place]
        return sorted(found, key=lambda p: (p.place, p.purpose, p.stack_level, p.id))

    def get(self, station: str, profile_id: int) -> ChargingProfile | None:
        return self._profiles.get((station, profile_id))

    def all(self) -> list[dict[str, Any]]:
        """Every station's smart-charging state (:func:`charging_profiles_json`), by station:
        what replay snapshots and compares."""
        return [charging_profiles_json(self, station) for station in self.stations()]

    def stations(self) -> list[str]:
        """Stations with profiles, limits or transactions known here."""
        return sorted(
            {s for s, _ in self._profiles}
            | {s for s, _, _ in self._limits}
            | {s for s, _ in self._transactions}
            | {s for s, _ in self.needs}
            | {s for s, _ in self.ev_schedules}
            | {s for s, _ in self.comparisons}
            | {a.station for a in self.anomalies}
        )

    def transaction_on(self, station: str, place: int) -> TransactionContext | None:
        """The transaction running on the connector (EVSE), as the profiles see it."""
        return self._transactions.get((station, place))

    def running(self, station: str) -> dict[int, TransactionContext]:
        """The transactions running on the station, by connector (EVSE)."""
        return {place: tx for (s, place), tx in self._transactions.items() if s == station}

    def report(self, station: str, request_id: int) -> ProfileReport | None:
        return self._reports.get((station, request_id))

    def needs_at(self, position: int) -> EVChargingNeeds | None:
        """The charging needs whose answer is the event at ``position``, when it is the last
        one folded (what the plugin's react hook asks about the event it is given)."""
        if self._needs_at is not None and self._needs_at[0] == position:
            return self._needs_at[1]
        return None

    def composite(
        self,
        station: str,
        place: int,
        start: float,
        duration: int,
        unit: Unit = "W",
        *,
        voltage: float = DEFAULT_VOLTAGE,
        phases: int = DEFAULT_PHASES,
        purposes: frozenset[str] | None = None,
    ) -> CompositeSchedule:
        """Our composite schedule of the connector (EVSE) over the window, with the
        transaction running there now (:func:`composite_schedule`); of the profiles of
        ``purposes`` only, when given (``CAP_PURPOSES``: what caps any new profile)."""
        return composite_schedule(
            [p for p in self.profiles(station) if purposes is None or p.purpose in purposes],
            station,
            place,
            start,
            duration,
            unit,
            transaction=self.transaction_on(station, place),
            voltage=voltage,
            phases=phases,
        )

    # -- folding ---------------------------------------------------------------------------

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange closed by a CALLRESULT it completes."""
        del recorded
        if (
            exchange is None
            or type(exchange.request) is not dict
            or type(exchange.response) is not dict
        ):
            return
        handler = _HANDLERS.get((exchange.origin, exchange.action))
        if handler is not None:
            handler(self, exchange)

    def _install(self, profile: ChargingProfile) -> None:
        station = profile.station
        if profile.purpose == "TxProfile" and profile.transaction_id is None:
            running = self._transactions.get((station, profile.place))
            if running is not None:
                profile = msgspec.structs.replace(profile, transaction_id=running.transaction_id)
        for key, held in list(self._profiles.items()):
            if key[0] == station and (
                held.id == profile.id
                or (
                    held.place == profile.place
                    and held.purpose == profile.purpose
                    and held.stack_level == profile.stack_level
                )
            ):
                del self._profiles[key]
        self._profiles[(station, profile.id)] = profile

    def _set(self, exchange: Exchange) -> None:
        if exchange.response.get("status") != "Accepted":
            return
        request = exchange.request
        v16 = is_v16(exchange.protocol)
        place = as_int(request.get("connectorId" if v16 else "evseId"))
        wire = request.get("csChargingProfiles" if v16 else "chargingProfile")
        self._install_wire(exchange, place, wire)

    def _install_wire(self, exchange: Exchange, place: int | None, wire: Any) -> None:
        if place is None:
            return
        profile = parse_profile(
            wire,
            station=exchange.station,
            place=place,
            at=exchange.at,
            position=exchange.result_position,
        )
        if profile is not None:
            self._install(profile)

    def _remote_start(self, exchange: Exchange) -> None:
        if exchange.response.get("status") != "Accepted":
            return
        request = exchange.request
        place = as_int(request.get("connectorId", request.get("evseId")))
        if "chargingProfile" in request:
            self._install_wire(exchange, place, request["chargingProfile"])

    def _clear(self, exchange: Exchange) -> None:
        request = exchange.request
        station = exchange.station
        if is_v16(exchange.protocol):
            profile_id = as_int(request.get("id"))
            criteria = request
            place = as_int(criteria.get("connectorId"))
        else:
            profile_id = as_int(request.get("chargingProfileId"))
            criteria = as_dict(request.get("chargingProfileCriteria"))
            place = as_int(criteria.get("evseId"))
        purpose = normal_purpose(as_str(criteria.get("chargingProfilePurpose")))
        stack_level = as_int(criteria.get("stackLevel"))

        def matches(profile: ChargingProfile) -> bool:
            if profile.source != "CSO":
                return False
            if profile_id is not None:
                return profile.id == profile_id
            return (
                (place is None or profile.place == place)
                and (purpose is None or profile.purpose == purpose)
                and (stack_level is None or profile.stack_level == stack_level)
            )

        matching = [
            key for key, profile in self._profiles.items() if key[0] == station and matches(profile)
        ]
        status = exchange.response.get("status")
        if status == "Accepted":
            for key in matching:
                del self._profiles[key]
        elif status == "Unknown" and matching:
            ids = ", ".join(str(key[1]) for key in matching)
            self._flag(
                exchange,
                "clear_unknown",
                place or 0,
                f"the station knows none of profiles {ids} we installed",
            )

    def _flag(self, exchange: Exchange, kind: ChargingAnomalyKind, place: int, detail: str) -> None:
        self.anomalies.append(
            ChargingAnomaly(
                kind=kind,
                station=exchange.station,
                place=place,
                call_position=exchange.call_position,
                position=exchange.result_position,
                detail=detail,
            )
        )

    def _get_profiles(self, exchange: Exchange) -> None:
        request_id = as_int(exchange.request.get("requestId"))
        if request_id is None:
            return
        key = (exchange.station, request_id)
        report = self._reports.get(key)
        if report is None:
            report = self._reports[key] = ProfileReport(
                request_id=request_id, requested_at=exchange.at
            )
        report.status = as_str(exchange.response.get("status"))

    def _reported(self, exchange: Exchange) -> None:
        request = exchange.request
        request_id, place = as_int(request.get("requestId")), as_int(request.get("evseId"))
        source = as_str(request.get("chargingLimitSource")) or "Other"
        if request_id is None or place is None:
            return
        key = (exchange.station, request_id)
        report = self._reports.get(key)
        if report is None:  # a report we did not see asked for (another node's log, import)
            report = self._reports[key] = ProfileReport(
                request_id=request_id, requested_at=exchange.at
            )
        report.parts += 1
        for wire in as_list(request.get("chargingProfile")):
            profile = parse_profile(
                wire,
                station=exchange.station,
                place=place,
                at=exchange.at,
                position=exchange.call_position,
                source=source,
                reported=True,
            )
            if profile is not None:
                self._install(profile)
                report.profiles.append((place, profile.id))
        if request.get("tbc") is not True:
            report.complete = True

    def _limit(self, exchange: Exchange) -> None:
        request = exchange.request
        source = as_str(as_dict(request.get("chargingLimit")).get("chargingLimitSource")) or "Other"
        place = as_int(request.get("evseId")) or 0
        limits = []
        for schedule in as_list(request.get("chargingSchedule")):
            parsed = parse_schedule(schedule)
            if parsed is None:
                continue
            unit, periods, start, duration, minimum = parsed
            limits.append(
                ChargingProfile(
                    id=as_int(as_dict(schedule).get("id")) or 0,
                    station=exchange.station,
                    place=place,
                    purpose="ChargingStationExternalConstraints",
                    stack_level=0,
                    kind="Absolute",
                    start_schedule=exchange.at if start is None else start,
                    duration=duration,
                    unit=unit,
                    periods=periods,
                    min_charging_rate=minimum,
                    source=source,
                    installed_at=exchange.at,
                    position=exchange.call_position,
                    reported=True,
                    wire=as_dict(schedule),
                )
            )
        key = (exchange.station, source, place)
        if limits:
            self._limits[key] = limits
        else:
            self._limits.pop(key, None)

    def _cleared_limit(self, exchange: Exchange) -> None:
        request = exchange.request
        source = as_str(request.get("chargingLimitSource"))
        place = as_int(request.get("evseId"))
        for key in list(self._limits):
            if key[0] == exchange.station and key[1] == source and place in (None, key[2]):
                del self._limits[key]

    def _started(
        self, station: str, place: int | None, transaction_id: int | str | None, at: float
    ) -> None:
        if place is None or transaction_id is None:
            return
        self._transactions[(station, place)] = TransactionContext(transaction_id, at)
        for key, profile in list(self._profiles.items()):
            if (
                key[0] == station
                and profile.place == place
                and profile.purpose == "TxProfile"
                and profile.transaction_id is None
            ):
                self._profiles[key] = msgspec.structs.replace(
                    profile, transaction_id=transaction_id
                )

    def _ended(self, station: str, transaction_id: int | str | None) -> None:
        if transaction_id is None:
            return
        for key, running in list(self._transactions.items()):
            if key[0] == station and str(running.transaction_id) == str(transaction_id):
                del self._transactions[key]
        for key, profile in list(self._profiles.items()):
            if (
                key[0] == station
                and profile.purpose == "TxProfile"
                and str(profile.transaction_id) == str(transaction_id)
            ):
                del self._profiles[key]

    def _start_16(self, exchange: Exchange) -> None:
        request = exchange.request
        at = parse_time(as_str(request.get("timestamp")))
        self._started(
            exchange.station,
            as_int(request.get("connectorId")),
            as_int(exchange.response.get("transactionId")),
            exchange.at if at is None else at,
        )

    def _stop_16(self, exchange: Exchange) -> None:
        self._ended(exchange.station, as_int(exchange.request.get("transactionId")))

    def _transaction_event(self, exchange: Exchange) -> None:
        request = exchange.request
        transaction_id = as_str(as_dict(request.get("transactionInfo")).get("transactionId"))
        event_type = request.get("eventType")
        if event_type == "Ended":
            self._ended(exchange.station, transaction_id)
            return
        place = as_int(as_dict(request.get("evse")).get("id"))
        running = None if place is None else self._transactions.get((exchange.station, place))
        if running is None or str(running.transaction_id) != str(transaction_id):
            at = parse_time(as_str(request.get("timestamp")))
            if event_type == "Started" or running is None:
                self._started(
                    exchange.station, place, transaction_id, exchange.at if at is None else at
                )

    def _composite_answer(self, exchange: Exchange) -> None:
        request, response = exchange.request, exchange.response
        if response.get("status") != "Accepted":
            return
        if is_v16(exchange.protocol):
            place = as_int(request.get("connectorId"))
            schedule = as_dict(response.get("chargingSchedule"))
            start = parse_time(as_str(response.get("scheduleStart")))
            if start is None:
                start = parse_time(as_str(schedule.get("startSchedule")))
            duration = schedule.get("duration", request.get("duration"))
        else:
            schedule = as_dict(response.get("schedule"))
            place = as_int(schedule.get("evseId", request.get("evseId")))
            start = parse_time(as_str(schedule.get("scheduleStart")))
            duration = schedule.get("duration", request.get("duration"))
        parsed = parse_schedule(schedule)
        if place is None or parsed is None or type(duration) is not int:
            return
        unit, periods = parsed[0], parsed[1]
        start = exchange.at if start is None else start
        ours = self.composite(exchange.station, place, start, duration, unit)
        differences = compare_schedules(ours, periods, start)
        self.comparisons[(exchange.station, place)] = Comparison(
            place=place,
            position=exchange.result_position,
            start=start,
            duration=duration,
            unit=unit,
            station_periods=periods_json(periods),
            csms=ours,
            differences=differences,
        )
        if differences:
            first = differences[0]
            self._flag(
                exchange,
                "composite_mismatch",
                place,
                f"the station applies {_limit_text(first.station_limit, unit)} from "
                f"{rfc3339(first.at)} where the profiles we installed give "
                f"{_limit_text(first.csms_limit, unit)}"
                + (f" ({len(differences)} differences)" if len(differences) > 1 else ""),
            )

    def _ev_needs(self, exchange: Exchange) -> None:
        request = exchange.request
        place = as_int(request.get("evseId"))
        if place is None:
            return
        needs = as_dict(request.get("chargingNeeds"))
        ac, dc = (
            as_dict(needs.get("acChargingParameters")),
            as_dict(needs.get("dcChargingParameters")),
        )
        params = ac or dc

        def number(value: Any) -> float | None:
            return float(value) if type(value) in (int, float) else None

        state = EVChargingNeeds(
            station=exchange.station,
            evse_id=place,
            at=exchange.at,
            position=exchange.result_position,
            energy_transfer=as_str(needs.get("requestedEnergyTransfer")),
            departure_time=parse_time(as_str(needs.get("departureTime"))),
            energy_amount_wh=number(params.get("energyAmount")),
            min_current=number(ac.get("evMinCurrent")),
            max_current=number(params.get("evMaxCurrent")),
            max_power=number(dc.get("evMaxPower")),
            max_voltage=number(params.get("evMaxVoltage")),
            max_schedule_tuples=as_int(request.get("maxScheduleTuples")),
            wire=request,
        )
        self.needs[(exchange.station, place)] = state
        self._needs_at = (exchange.result_position, state)

    def _ev_schedule(self, exchange: Exchange) -> None:
        request = exchange.request
        place = as_int(request.get("evseId"))
        if place is None:
            return
        base = parse_time(as_str(request.get("timeBase")))
        within = ev_schedule_within(self, exchange.station, place, request, exchange.at)
        self.ev_schedules[(exchange.station, place)] = EVSchedule(
            station=exchange.station,
            evse_id=place,
            at=exchange.at,
            position=exchange.result_position,
            time_base=base,
            wire=as_dict(request.get("chargingSchedule")),
            within_limit=within,
        )
        if within is False:
            self._flag(
                exchange,
                "ev_schedule_above_limit",
                place,
                "the EV's charging schedule exceeds the composite limit",
            )


def ev_schedule_within(
    projection: ChargingProfilesProjection,
    station: str,
    place: int,
    request: dict[str, Any],
    at: float,
) -> bool | None:
    """Whether a NotifyEVChargingSchedule ``request`` stays within our composite limit of the
    EVSE (from its ``timeBase``, or ``at``); ``None`` when it cannot be read or no limit
    applies. Shared by the fold and the plugin's answer."""
    parsed = parse_schedule(request.get("chargingSchedule"))
    if parsed is None:
        return None
    unit, periods, start, duration, _ = parsed
    base = parse_time(as_str(request.get("timeBase")))
    begin = start if start is not None else (base if base is not None else at)
    length = int(duration) if duration else max(p.start for p in periods) + 3600
    ours = projection.composite(station, place, begin, length, unit)
    if all(p.limit is None for p in ours.periods):
        return None
    return not compare_above(ours, periods, begin)


def compare_above(ours: CompositeSchedule, theirs: Any, their_start: float) -> bool:
    """Whether a schedule (periods from ``their_start``) goes above ``ours`` anywhere."""
    for index, period in enumerate(theirs):
        begin = their_start + period.start
        end = (
            their_start + theirs[index + 1].start
            if index + 1 < len(theirs)
            else ours.start + ours.duration
        )
        for point in [begin] + [
            ours.start + p.start for p in ours.periods if begin < ours.start + p.start < end
        ]:
            mine = ours.limit_at(point)
            if mine is not None and period.limit > mine * 1.01 + 0.1:
                return True
    return False


def _limit_text(limit: float | None, unit: str) -> str:
    return "no limit" if limit is None else f"{limit:g} {unit}"


_HANDLERS: dict[tuple[str, str], Any] = {
    ("out", "SetChargingProfile"): ChargingProfilesProjection._set,
    ("out", "ClearChargingProfile"): ChargingProfilesProjection._clear,
    ("out", "RemoteStartTransaction"): ChargingProfilesProjection._remote_start,
    ("out", "RequestStartTransaction"): ChargingProfilesProjection._remote_start,
    ("out", "GetChargingProfiles"): ChargingProfilesProjection._get_profiles,
    ("out", "GetCompositeSchedule"): ChargingProfilesProjection._composite_answer,
    ("in", "ReportChargingProfiles"): ChargingProfilesProjection._reported,
    ("in", "NotifyChargingLimit"): ChargingProfilesProjection._limit,
    ("in", "ClearedChargingLimit"): ChargingProfilesProjection._cleared_limit,
    ("in", "NotifyEVChargingNeeds"): ChargingProfilesProjection._ev_needs,
    ("in", "NotifyEVChargingSchedule"): ChargingProfilesProjection._ev_schedule,
    ("in", "StartTransaction"): ChargingProfilesProjection._start_16,
    ("in", "StopTransaction"): ChargingProfilesProjection._stop_16,
    ("in", "TransactionEvent"): ChargingProfilesProjection._transaction_event,
}
ChargingProfilesProjection.CONCERNS = frozenset(action for _, action in _HANDLERS)


def _time(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def charging_profiles_json(projection: ChargingProfilesProjection, station: str) -> dict[str, Any]:
    """The station's smart-charging state as JSON-ready builtins with stable keys
    (docs/smart-charging.md)."""
    return {
        "station": station,
        "profiles": [profile_json(p) for p in projection.profiles(station)],
        "transactions": {
            str(place): {"transaction_id": tx.transaction_id, "started_at": _time(tx.started_at)}
            for place, tx in sorted(projection.running(station).items())
        },
        "ev_charging_needs": [
            {
                "evse_id": needs.evse_id,
                "at": _time(needs.at),
                "energy_transfer": needs.energy_transfer,
                "departure_time": _time(needs.departure_time),
                "energy_amount_wh": needs.energy_amount_wh,
                "min_current": needs.min_current,
                "max_current": needs.max_current,
                "max_power": needs.max_power,
                "max_voltage": needs.max_voltage,
            }
            for (s, _), needs in sorted(projection.needs.items())
            if s == station
        ],
        "ev_charging_schedules": [
            {
                "evse_id": schedule.evse_id,
                "at": _time(schedule.at),
                "time_base": _time(schedule.time_base),
                "charging_schedule": schedule.wire,
                "within_limit": schedule.within_limit,
            }
            for (s, _), schedule in sorted(projection.ev_schedules.items())
            if s == station
        ],
        "comparisons": [
            {
                "place": comparison.place,
                "position": comparison.position,
                "start": _time(comparison.start),
                "duration": comparison.duration,
                "unit": comparison.unit,
                "station_periods": comparison.station_periods,
                "csms_periods": [
                    {"start": p.start, "limit": p.limit} for p in comparison.csms.periods
                ],
                "matches": not comparison.differences,
            }
            for (s, _), comparison in sorted(projection.comparisons.items())
            if s == station
        ],
        "anomalies": [
            {
                "kind": anomaly.kind,
                "place": anomaly.place,
                "position": anomaly.position,
                "detail": anomaly.detail,
            }
            for anomaly in projection.anomalies
            if anomaly.station == station
        ],
    }
