"""Sites: stations grouped by the grid connection they share (nestable: feeder -> site), each
with a limit the ``site_limits`` plugin shares among their charging transactions, and the
allocations it decided.

A site is defined (or redefined) and deleted by an admin (``SiteDefined`` / ``SiteDeleted``).
An allocation decision is the plugin's SetChargingProfile of a site TxProfile (id
:func:`site_profile_id`), recorded as its outbound CALL: the fold keeps, per station and
connector (EVSE), the newest one decided and whether the station accepted it.

:func:`allocate` is the rule, pure: for each site with a limit, its transactions on stations
offline hold their last allocation and the rest share what remains: equally (at most
``max_allocation``; each at least ``min_allocation`` when there is room for that many, the
lower-priority and later ones none otherwise), or by ``priority`` (in priority order, then
by start, each up to ``max_allocation`` while at least ``min_allocation`` remains); a
transaction gets the smallest share of the sites it is in, so no site's sum ever exceeds its
limit (unless held allocations alone already do).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

from chargeledger.core.events import FrameLogged, Recorded, SiteDefined, SiteDeleted
from chargeledger.core.times import rfc3339
from chargeledger.projections.composite import TransactionContext, convert
from chargeledger.projections.exchanges import (
    Exchange,
    as_dict,
    as_int,
    as_list,
    decode_frame,
)

__all__ = [
    "SITE_PROFILE_BASE",
    "Allocation",
    "SiteState",
    "SitesProjection",
    "allocate",
    "site_json",
    "site_profile_id",
]

SITE_PROFILE_BASE = 2_000_000_000
"""Site TxProfiles have ids ``SITE_PROFILE_BASE + place``: one per connector (EVSE), each
replacing the previous allocation there, above the ids the CSMS allocates from log
positions."""


def site_profile_id(place: int) -> int:
    """The id of the site TxProfile of connector (EVSE) ``place``."""
    return SITE_PROFILE_BASE + place


class SiteState(msgspec.Struct, kw_only=True):
    """A site as defined (fields as :class:`~chargeledger.core.events.SiteDefined`)."""

    site: str
    parent: str | None
    stations: list[str]
    limit: float | None
    unit: str
    min_allocation: float
    deadband: float
    min_interval: float
    description: str
    strategy: str = "equal"
    priorities: dict[str, int] = {}
    max_allocation: float | None = None
    defined_at: float
    defined_by: str


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """An allocation decided for the transaction on a connector (EVSE)."""

    station: str
    place: int
    limit: float
    unit: str
    transaction_id: int | str | None
    at: float
    position: int
    """Log position of the SetChargingProfile CALL that sent it."""
    accepted: bool | None = None
    """The station's answer: ``None`` until it arrives."""


class SitesProjection:
    """Every site, the stations' memberships and the allocations decided."""

    def __init__(self) -> None:
        self._sites: dict[str, SiteState] = {}
        self.allocations: dict[tuple[str, int], Allocation] = {}
        """(station, place) -> the newest allocation decided there."""
        self._pending: dict[int, tuple[str, int]] = {}
        """Log position of a site SetChargingProfile CALL -> its (station, place)."""

    # -- reading ---------------------------------------------------------------------------

    def get(self, site: str) -> SiteState | None:
        return self._sites.get(site)

    def all(self) -> list[SiteState]:
        """Every site, by name."""
        return [self._sites[name] for name in sorted(self._sites)]

    def sites_of(self, station: str) -> list[str]:
        """The sites the station is in, innermost first: those naming it, then their parents
        outwards (each once)."""
        found: list[str] = []
        for name in sorted(self._sites):
            if station in self._sites[name].stations:
                site: str | None = name
                while site is not None and site in self._sites and site not in found:
                    found.append(site)
                    site = self._sites[site].parent
        direct = [s for s in found if station in self._sites[s].stations]
        return direct + [s for s in found if s not in direct]

    def stations_in(self, site: str) -> list[str]:
        """The stations of the site and of its sub-sites, sorted."""
        found: set[str] = set()
        todo, seen = [site], set()
        while todo:
            name = todo.pop()
            if name in seen or name not in self._sites:
                continue
            seen.add(name)
            found.update(self._sites[name].stations)
            todo += [s.site for s in self._sites.values() if s.parent == name]
        return sorted(found)

    def ancestors(self, site: str) -> list[str]:
        """``site`` and its parents outwards."""
        chain: list[str] = []
        current: str | None = site
        while current is not None and current in self._sites and current not in chain:
            chain.append(current)
            current = self._sites[current].parent
        return chain

    # -- folding ---------------------------------------------------------------------------

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        event = recorded.event
        if isinstance(event, SiteDefined):
            self._sites[event.site] = SiteState(
                site=event.site,
                parent=event.parent,
                stations=list(event.stations),
                limit=event.limit,
                unit=event.unit,
                min_allocation=event.min_allocation,
                deadband=event.deadband,
                min_interval=event.min_interval,
                description=event.description,
                strategy=event.strategy,
                priorities=dict(event.priorities),
                max_allocation=event.max_allocation,
                defined_at=event.at,
                defined_by=event.key,
            )
        elif isinstance(event, SiteDeleted):
            self._sites.pop(event.site, None)
            for state in self._sites.values():
                if state.parent == event.site:
                    state.parent = None
        elif (
            isinstance(event, FrameLogged)
            and event.direction == "out"
            and '"SetChargingProfile"' in event.text
        ):
            self._decided(recorded.position, event)
        if (
            exchange is not None
            and exchange.origin == "out"
            and exchange.action == "SetChargingProfile"
        ):
            key = self._pending.pop(exchange.call_position, None)
            held = None if key is None else self.allocations.get(key)
            if key is not None and held is not None and held.position == exchange.call_position:
                status = as_dict(exchange.response).get("status")
                self.allocations[key] = msgspec.structs.replace(held, accepted=status == "Accepted")

    def _decided(self, position: int, event: FrameLogged) -> None:
        frame = decode_frame(event.text)
        if frame is None or frame[0] != 2 or len(frame) < 4:
            return
        request = as_dict(frame[3])
        v16 = "csChargingProfiles" in request
        place = as_int(request.get("connectorId" if v16 else "evseId"))
        profile = as_dict(request.get("csChargingProfiles" if v16 else "chargingProfile"))
        profile_id = as_int(profile.get("chargingProfileId", profile.get("id")))
        if place is None or profile_id != site_profile_id(place):
            return
        schedule = profile.get("chargingSchedule")
        schedule = as_dict(schedule[0] if type(schedule) is list and schedule else schedule)
        periods = as_list(schedule.get("chargingSchedulePeriod"))
        limit = as_dict(periods[0]).get("limit") if periods else None
        if not isinstance(limit, int | float) or isinstance(limit, bool):
            return
        key = (event.station, place)
        self.allocations[key] = Allocation(
            station=event.station,
            place=place,
            limit=float(limit),
            unit=str(schedule.get("chargingRateUnit", "A")),
            transaction_id=profile.get("transactionId"),
            at=event.at,
            position=position,
        )
        self._pending[position] = key


def allocate(
    sites: SitesProjection,
    running: dict[str, dict[int, TransactionContext]],
    connected: Iterable[str],
) -> dict[tuple[str, int], tuple[float, str]]:
    """The allocation (limit, unit) of every transaction running on a station of a site with
    a limit, by (station, place): the rule of the module docstring. ``running`` maps each
    station to its transactions by place; ``connected`` names the stations online."""
    online = set(connected)
    shares: dict[tuple[str, int], tuple[float, str]] = {}
    for site in sites.all():
        if site.limit is None:
            continue
        members = [
            (station, place, tx)
            for station in sites.stations_in(site.site)
            for place, tx in sorted(running.get(station, {}).items())
        ]
        # Who is served first: higher priority, then the earlier start.
        members.sort(key=lambda m: (-site.priorities.get(m[0], 0), m[2].started_at, m[0], m[1]))
        held = 0.0
        free = []
        for station, place, tx in members:
            if station in online:
                free.append((station, place))
                continue
            last = sites.allocations.get((station, place))
            if last is not None and str(last.transaction_id) == str(tx.transaction_id):
                held += convert(last.limit, _unit(last.unit), _unit(site.unit))
        remaining = max(0.0, site.limit - held)
        values: list[float] = []
        if free and site.strategy == "priority":
            for _ in free:
                value = min(remaining, site.max_allocation or remaining)
                value = value if value >= site.min_allocation else 0.0
                values.append(value)
                remaining -= value
        elif free:
            share = remaining / len(free)
            if site.max_allocation is not None:
                share = min(share, site.max_allocation)
            if site.min_allocation and share < site.min_allocation:
                room = math.floor(remaining / site.min_allocation + 1e-9)
                values = [site.min_allocation if i < room else 0.0 for i in range(len(free))]
            else:
                values = [share] * len(free)
        for key, value in zip(free, values, strict=True):
            value = math.floor(value * 10) / 10  # OCPP limits are multiples of 0.1
            previous = shares.get(key)
            if previous is not None:
                value = min(value, convert(previous[0], _unit(previous[1]), _unit(site.unit)))
            shares[key] = (value, site.unit)
    return shares


def _unit(unit: str) -> Any:
    return "W" if unit == "W" else "A"


def site_json(sites: SitesProjection, state: SiteState) -> dict[str, Any]:
    """``state`` and the allocations on its stations, as JSON-ready builtins."""
    members = set(sites.stations_in(state.site))
    return {
        "site": state.site,
        "parent": state.parent,
        "stations": state.stations,
        "all_stations": sorted(members),
        "limit": state.limit,
        "unit": state.unit,
        "min_allocation": state.min_allocation,
        "deadband": state.deadband,
        "min_interval": state.min_interval,
        "description": state.description,
        "strategy": state.strategy,
        "priorities": state.priorities,
        "max_allocation": state.max_allocation,
        "defined_at": rfc3339(state.defined_at),
        "defined_by": state.defined_by,
        "allocations": [
            {
                "station": a.station,
                "place": a.place,
                "limit": a.limit,
                "unit": a.unit,
                "transaction_id": a.transaction_id,
                "at": rfc3339(a.at),
                "position": a.position,
                "accepted": a.accepted,
            }
            for key, a in sorted(sites.allocations.items())
            if a.station in members
        ],
    }
