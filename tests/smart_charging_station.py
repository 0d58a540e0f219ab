"""What the test charge points do with charging profiles (1.6 and 2.0.1), as mixins of the
``ocpp`` package's ``ChargePoint``: they hold what SetChargingProfile installs (replacing
by id), clear by id or criteria (``Unknown`` when nothing matched), answer
GetCompositeSchedule with ``composite`` (a list of (start, limit); default: the newest
profile's periods) from now, and (2.0.1) report their profiles in ReportChargingProfiles.
The ``ocpp`` package hands handlers snake_case payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

__all__ = ["SmartCharging16", "SmartCharging201"]


def _plain(value: Any) -> Any:
    """``value`` with the ``Decimal`` numbers the ``ocpp`` package parses as floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _Profiles:
    """Profiles by id, each with its place (connector/EVSE)."""

    def _init_profiles(self) -> None:
        if not hasattr(self, "profiles"):
            self.profiles: dict[int, tuple[int, dict[str, Any]]] = {}
            self.composite: list[tuple[int, float]] | None = None
            self.profile_status = "Accepted"

    def _install(self, place: int, profile_id: int, profile: dict[str, Any]) -> str:
        self._init_profiles()
        profile = _plain(profile)
        if self.profile_status == "Accepted":
            for held_id, (held_place, held) in list(self.profiles.items()):
                if held_place == place and (
                    held["stack_level"],
                    held["charging_profile_purpose"],
                ) == (profile["stack_level"], profile["charging_profile_purpose"]):
                    del self.profiles[held_id]
            self.profiles[profile_id] = (place, profile)
        return self.profile_status

    def _clear(
        self,
        profile_id: int | None,
        place: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str:
        self._init_profiles()
        matching = [
            held_id
            for held_id, (held_place, held) in self.profiles.items()
            if (profile_id is not None and held_id == profile_id)
            or (
                profile_id is None
                and place in (None, held_place)
                and purpose in (None, held["charging_profile_purpose"])
                and stack_level in (None, held["stack_level"])
            )
        ]
        for held_id in matching:
            del self.profiles[held_id]
        return "Accepted" if matching else "Unknown"

    def _periods(self, unit: str | None) -> tuple[str, list[dict[str, Any]]]:
        self._init_profiles()
        if self.composite is not None:
            periods = [{"start_period": s, "limit": v} for s, v in self.composite]
            return unit or "W", periods
        if not self.profiles:
            return unit or "W", [{"start_period": 0, "limit": 22000.0}]
        _, newest = list(self.profiles.values())[-1]
        schedule = newest["charging_schedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        periods = [
            {"start_period": p["start_period"], "limit": p["limit"]}
            for p in schedule["charging_schedule_period"]
        ]
        return schedule["charging_rate_unit"], periods


class SmartCharging16(_Profiles):
    @on(Action16.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: Any) -> Any:
        status = self._install(
            connector_id, cs_charging_profiles["charging_profile_id"], cs_charging_profiles
        )
        return result16.SetChargingProfile(status=status)

    @on(Action16.clear_charging_profile)
    def on_clear_charging_profile(self, **criteria: Any) -> Any:
        status = self._clear(
            criteria.get("id"),
            criteria.get("connector_id"),
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
        )
        return result16.ClearChargingProfile(status=status)

    @on(Action16.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> Any:
        unit, periods = self._periods(charging_rate_unit)
        return result16.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=_now(),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": unit,
                "charging_schedule_period": periods,
            },
        )


class SmartCharging201(_Profiles):
    ems_profiles: list[dict[str, Any]] = []
    """Profiles an EMS set (reported with ``chargingLimitSource`` ``EMS``)."""

    @on(Action201.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: Any) -> Any:
        status = self._install(evse_id, charging_profile["id"], charging_profile)
        return result201.SetChargingProfile(status=status)

    @on(Action201.clear_charging_profile)
    def on_clear_charging_profile(
        self, charging_profile_id: int | None = None, charging_profile_criteria: Any = None
    ) -> Any:
        criteria = charging_profile_criteria or {}
        status = self._clear(
            charging_profile_id,
            criteria.get("evse_id"),
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
        )
        return result201.ClearChargingProfile(status=status)

    @on(Action201.get_composite_schedule)
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None
    ) -> Any:
        unit, periods = self._periods(charging_rate_unit)
        return result201.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": _now(),
                "charging_rate_unit": unit,
                "charging_schedule_period": periods,
            },
        )

    @on(Action201.get_charging_profiles)
    def on_get_charging_profiles(self, request_id: int, charging_profile: Any, **_: Any) -> Any:
        self._init_profiles()
        held = bool(self.profiles) or bool(self.ems_profiles)
        return result201.GetChargingProfiles(status="Accepted" if held else "NoProfiles")

    @after(Action201.get_charging_profiles)
    async def report_charging_profiles(self, request_id: int, **_: Any) -> None:
        self._init_profiles()
        by_place: dict[int, list[dict[str, Any]]] = {}
        for place, profile in self.profiles.values():
            by_place.setdefault(place, []).append(profile)
        parts: list[tuple[str, int, list[dict[str, Any]]]] = [
            ("CSO", place, profiles) for place, profiles in sorted(by_place.items())
        ]
        if self.ems_profiles:
            parts.append(("EMS", 0, list(self.ems_profiles)))
        for index, (source, place, profiles) in enumerate(parts):
            await self.call(  # type: ignore[attr-defined]
                call201.ReportChargingProfiles(
                    request_id=request_id,
                    charging_limit_source=source,
                    charging_profile=profiles,
                    evse_id=place,
                    tbc=index < len(parts) - 1,
                )
            )
