"""Sites: stations grouped by the grid connection they share (nestable: feeder -> site), each
with a limit the ``site_limits`` plugin shares among their charging transactions, and the
allocations it decided.

A site is defined (or redefined) and deleted by an admin (``SiteDefined`` / ``SiteDeleted``).
An allocation decision is the plugin's SetChargingProfile of a site TxProfile (id
:func:`site_profile_id`), recorded as its outbound CALL: the fold keeps, per station and
connector (EVSE), the newest one decided and whether the station accepted it.

A site's limit (A or W) may be given in total, per phase (``phase_limits``: L1, L2, L3; a
one-phase station, ``station_phases``, loads only its phase: its allocation in A on that
phase, in W all of it there; a three-phase one the allocation in A on each phase, a third of
it in W), and may change by daily periods (``periods``, UTC): :func:`limits_at` says which
limits hold at an instant, :func:`limits_within` the lowest over a lead time, and
:func:`next_change` when that changes next (the plugin's timer).

:func:`allocate` is the rule, pure: for each site with a limit, its transactions on stations
offline hold their last allocation and the rest share what remains (of the total and of
every phase): equally (at most ``max_allocation``; each at least ``min_allocation``: while
the share of some is below it, the last served of those gets none and the rest share
again), or by ``priority`` (in priority order, then by start, each up to
``max_allocation`` and what remains of its phases while at least ``min_allocation``
remains); a transaction gets the smallest share of the sites it is in, so no site's sum ever
exceeds its limit, in total nor on any phase (unless held allocations alone already do).
:func:`site_load` is what the allocations draw, in total and per phase, to check that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar, NamedTuple

import msgspec

from chargeledger.core.commands import Command, SendCall
from chargeledger.core.events import (
    CallTimedOut,
    CommandRequested,
    FrameLogged,
    Recorded,
    SessionClosed,
    SessionOpened,
    SiteDefined,
    SiteDeleted,
    SitePeriod,
)
from chargeledger.core.times import rfc3339
from chargeledger.projections.composite import TransactionContext, convert
from chargeledger.projections.exchanges import (
    Exchange,
    Kind,
    as_dict,
    as_int,
    as_list,
    decode_frame,
)

__all__ = [
    "PHASES",
    "SITE_LIMITS_PREFIX",
    "SITE_PROFILE_BASE",
    "Allocation",
    "Limits",
    "SiteState",
    "SitesProjection",
    "allocate",
    "allocation_request_id",
    "check_site_phases",
    "limits_at",
    "limits_within",
    "next_change",
    "parse_time_of_day",
    "site_json",
    "site_load",
    "site_profile_id",
]

PHASES = ("L1", "L2", "L3")
"""The phases a site's limit may be given per."""

SITE_PROFILE_BASE = 2_000_000_000
"""Site TxProfiles have ids ``SITE_PROFILE_BASE + place``: one per connector (EVSE), each
replacing the previous allocation there, above the ids the CSMS allocates from log
positions."""


PLUGINS_CALLER = "plugins"
"""Who the one door records plugins' commands as asked by."""

SITE_LIMITS_PREFIX = "site-limits:"
"""Names the site_limits plugin's decisions: its timers (``site-limits:period``,
``site-limits:STATION:PLACE``) and the ``CommandRequested`` of each allocation it sends
(:func:`allocation_request_id`), so that a replay finds them in the log."""


def allocation_request_id(position: int, station: str, place: int) -> str:
    """The request id of the allocation sent to ``station``'s ``place`` on the event at log
    ``position``: the same when a replay decides it again."""
    return f"{SITE_LIMITS_PREFIX}{position}:{station}:{place}"


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
    phase_limits: dict[str, float] = {}
    station_phases: dict[str, list[str]] = {}
    periods: list[SitePeriod] = []
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

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            SiteDefined,
            SiteDeleted,
            CommandRequested,
            CallTimedOut,
            SessionOpened,
            SessionClosed,
            "SetChargingProfile",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._sites: dict[str, SiteState] = {}
        self.allocations: dict[tuple[str, int], Allocation] = {}
        """(station, place) -> the newest allocation decided there."""
        self._pending: dict[int, tuple[str, int]] = {}
        """Log position of a site SetChargingProfile CALL -> its (station, place)."""
        self._in_flight: dict[tuple[str, int], dict[str, _InFlight]] = {}
        """(station, place) -> request id -> an allocation decided and not answered yet."""
        self._calls: dict[tuple[str, str], int] = {}
        """(session, message id) of a site SetChargingProfile CALL -> its log position."""
        self._sent: dict[int, float] = {}
        """Log position of a site SetChargingProfile CALL not answered yet -> its limit."""

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

    def phases_of(self, station: str) -> tuple[str, ...]:
        """The phases ``station`` draws on: as the innermost site naming them says, else
        all three."""
        for name in self.sites_of(station):
            named = self._sites[name].station_phases.get(station)
            if named:
                return tuple(named)
        return PHASES

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
                phase_limits=dict(event.phase_limits),
                station_phases={k: list(v) for k, v in event.station_phases.items()},
                periods=list(event.periods),
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
        elif (
            isinstance(event, CommandRequested)
            and event.key == PLUGINS_CALLER
            and event.request_id.startswith(SITE_LIMITS_PREFIX)
        ):
            self._track(event.request_id, event.station, event.payload, event.at, recorded=True)
        elif isinstance(event, CallTimedOut):
            position = self._calls.pop((event.session, event.message_id), None)
            if position is not None:
                self._answered(position)
        elif isinstance(event, SessionOpened | SessionClosed):
            # What was recorded for the old connection is answered on it or never.
            for (station, _), flying in self._in_flight.items():
                if station == event.station:
                    for request_id in [r for r, f in flying.items() if f.recorded]:
                        del flying[request_id]
        if (
            exchange is not None
            and exchange.origin == "out"
            and exchange.action == "SetChargingProfile"
        ):
            key = self._answered(exchange.call_position)
            held = None if key is None else self.allocations.get(key)
            if key is not None and held is not None and held.position == exchange.call_position:
                status = as_dict(exchange.response).get("status")
                accepted = exchange.error is None and status == "Accepted"
                self.allocations[key] = msgspec.structs.replace(held, accepted=accepted)

    def note(self, commands: Iterable[Command], at: float) -> None:
        """Take note of the site allocations plugins just decided at ``at`` (the plugin host
        calls it with every reaction): in flight from now, although the log holds them only
        once the dispatcher has recorded them, so a decision on the next event already sees
        them."""
        for command in commands:
            if (
                isinstance(command, SendCall)
                and command.action == "SetChargingProfile"
                and (command.request_id or "").startswith(SITE_LIMITS_PREFIX)
            ):
                payload = msgspec.to_builtins(command.payload)
                self._track(command.request_id or "", command.station, payload, at, recorded=False)

    def in_flight(self, now: float, timeout: float) -> dict[tuple[str, int], float]:
        """(station, place) -> the highest allocation decided there and not answered yet
        (decided less than ``timeout`` seconds before ``now``: an older one was lost)."""
        found: dict[tuple[str, int], float] = {}
        for key, flying in self._in_flight.items():
            for entry in flying.values():
                if now - entry.at < timeout:
                    found[key] = max(found.get(key, 0.0), entry.limit)
        return found

    def _track(
        self, request_id: str, station: str, request: Any, at: float, *, recorded: bool
    ) -> None:
        parsed = _site_allocation(request)
        if parsed is not None:
            place, limit, _, _ = parsed
            flying = self._in_flight.setdefault((station, place), {})
            flying[request_id] = _InFlight(limit, at, recorded)

    def _answered(self, position: int) -> tuple[str, int] | None:
        """The CALL at ``position`` was answered (or timed out): one allocation decided at
        its place (the one of its limit, else the oldest) is no longer in flight."""
        key = self._pending.pop(position, None)
        sent = self._sent.pop(position, None)
        self._calls = {call: at for call, at in self._calls.items() if at != position}
        flying = self._in_flight.get(key) if key is not None else None
        if flying:
            same = [r for r, entry in flying.items() if entry.limit == sent]
            del flying[(same or list(flying))[0]]
        return key

    def _decided(self, position: int, event: FrameLogged) -> None:
        frame = decode_frame(event.text)
        if frame is None or frame[0] != 2 or len(frame) < 4 or frame[2] != "SetChargingProfile":
            return
        parsed = _site_allocation(frame[3])
        if parsed is None:
            return
        place, limit, unit, transaction_id = parsed
        key = (event.station, place)
        self.allocations[key] = Allocation(
            station=event.station,
            place=place,
            limit=limit,
            unit=unit,
            transaction_id=transaction_id,
            at=event.at,
            position=position,
        )
        self._pending[position] = key
        self._sent[position] = limit
        self._calls[(event.session, str(frame[1]))] = position


class _InFlight(NamedTuple):
    limit: float
    at: float
    recorded: bool
    """Whether its ``CommandRequested`` is in the log (else only noted)."""


def _site_allocation(request: Any) -> tuple[int, float, str, Any] | None:
    """A site SetChargingProfile request (1.6 or 2.0.1) as (place, limit, unit, transaction
    id); ``None`` for any other request."""
    request = as_dict(request)
    v16 = "csChargingProfiles" in request
    place = as_int(request.get("connectorId" if v16 else "evseId"))
    profile = as_dict(request.get("csChargingProfiles" if v16 else "chargingProfile"))
    profile_id = as_int(profile.get("chargingProfileId", profile.get("id")))
    if place is None or profile_id != site_profile_id(place):
        return None
    schedule = profile.get("chargingSchedule")
    schedule = as_dict(schedule[0] if type(schedule) is list and schedule else schedule)
    periods = as_list(schedule.get("chargingSchedulePeriod"))
    limit = as_dict(periods[0]).get("limit") if periods else None
    if not isinstance(limit, int | float) or isinstance(limit, bool):
        return None
    unit = str(schedule.get("chargingRateUnit", "A"))
    return place, float(limit), unit, profile.get("transactionId")


class Limits(msgspec.Struct, frozen=True):
    """A site's limits at some time: in total (``None``: none) and per phase, in its unit."""

    total: float | None
    phases: dict[str, float]

    @property
    def any(self) -> bool:
        return self.total is not None or bool(self.phases)


_DAY = 86400.0


def parse_time_of_day(text: str) -> float:
    """``HH:MM`` or ``HH:MM:SS`` as seconds after midnight; ``ValueError`` otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"{text!r} is not a time of day HH:MM or HH:MM:SS")
    hours, minutes, seconds = (int(p) for p in [*parts, "00"][:3])
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a time of day HH:MM or HH:MM:SS")
    return float(hours * 3600 + minutes * 60 + seconds)


def check_site_phases(
    phase_limits: dict[str, float],
    station_phases: dict[str, list[str]],
    periods: Iterable[SitePeriod],
) -> None:
    """``ValueError`` naming the first thing wrong: a phase other than L1, L2, L3, a station
    on no phase or on one twice, a period's time that is not ``HH:MM[:SS]`` or a period of no
    length."""
    named = [*phase_limits, *(p for period in periods for p in period.phase_limits)]
    for station, wired in station_phases.items():
        if not wired or len(set(wired)) != len(wired):
            raise ValueError(f"station {station!r}: name each of its phases once")
        named += wired
    unknown = sorted(set(named) - set(PHASES))
    if unknown:
        raise ValueError(f"phases are L1, L2, L3, not {', '.join(map(repr, unknown))}")
    for period in periods:
        if parse_time_of_day(period.start) == parse_time_of_day(period.end):
            raise ValueError(f"the period {period.start}-{period.end} has no length")


def _covers(period: SitePeriod, t: float) -> bool:
    start, end = parse_time_of_day(period.start), parse_time_of_day(period.end)
    day = t % _DAY
    return start <= day < end if start < end else (day >= start or day < end)


def limits_at(site: SiteState, t: float | None) -> Limits:
    """The limits of ``site`` at the instant ``t`` (``None``: its own, periods aside): those
    of the first of its periods covering the time of day (UTC), each falling back to the
    site's own."""
    for period in site.periods:
        if t is not None and _covers(period, t):
            phases = {**site.phase_limits, **period.phase_limits}
            total = site.limit if period.limit is None else period.limit
            return Limits(total, phases)
    return Limits(site.limit, dict(site.phase_limits))


def _boundaries(site: SiteState, after: float, until: float) -> list[float]:
    """The instants in ``(after, until]`` where one of the site's periods starts or ends."""
    found = []
    for period in site.periods:
        for text in (period.start, period.end):
            offset = parse_time_of_day(text)
            first = math.floor((after - offset) / _DAY) * _DAY + offset
            found += [first + k * _DAY for k in range(3) if after < first + k * _DAY <= until]
    return sorted(set(found))


def limits_within(site: SiteState, t: float | None, lead: float = 0.0) -> Limits:
    """The lowest limits of ``site`` from ``t`` to ``t + lead``: what allocations decided at
    ``t`` must respect so that they are below a lower limit already when it begins (``lead``
    seconds ahead, the time the stations need to apply them)."""
    now = limits_at(site, t)
    if t is None or lead <= 0:
        return now
    total, phases = now.total, dict(now.phases)
    for point in _boundaries(site, t, t + lead):
        later = limits_at(site, point)
        total = _lowest(total, later.total)
        for phase in set(phases) | set(later.phases):
            lowest = _lowest(phases.get(phase), later.phases.get(phase))
            if lowest is not None:
                phases[phase] = lowest
    return Limits(total, phases)


def _lowest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def next_change(sites: SitesProjection, t: float, lead: float = 0.0) -> float | None:
    """The next instant after ``t`` where :func:`limits_within` of some site may change: a
    period boundary coming within ``lead`` (the allocations go down ahead of it) or passing
    (they may go up); ``None`` when no site has periods."""
    found = [
        point
        for site in sites.all()
        for boundary in _boundaries(site, t, t + 2 * _DAY + lead)
        for point in (boundary - lead, boundary)
        if point > t
    ]
    return min(found, default=None)


def _load(value: float, unit: str, phases: tuple[str, ...]) -> float:
    """What an allocation of ``value`` (in ``unit``) draws on each of its ``phases``."""
    return value if unit == "A" else value / len(phases)


def allocate(
    sites: SitesProjection,
    running: dict[str, dict[int, TransactionContext]],
    connected: Iterable[str],
    at: float | None = None,
    lead: float = 0.0,
) -> dict[tuple[str, int], tuple[float, str]]:
    """The allocation (limit, unit) of every transaction running on a station of a site with
    a limit, by (station, place): the rule of the module docstring, with each site's limits
    the lowest from ``at`` to ``at + lead`` (``at`` ``None``: the sites' own, periods
    aside). ``running`` maps each station to its transactions by place; ``connected`` names
    the stations online."""
    online = set(connected)
    shares: dict[tuple[str, int], tuple[float, str]] = {}
    for site in sites.all():
        limits = limits_within(site, at, lead)
        if not limits.any:
            continue
        members = [
            (station, place, tx)
            for station in sites.stations_in(site.site)
            for place, tx in sorted(running.get(station, {}).items())
        ]
        # Who is served first: higher priority, then the earlier start.
        members.sort(key=lambda m: (-site.priorities.get(m[0], 0), m[2].started_at, m[0], m[1]))
        remaining = math.inf if limits.total is None else limits.total
        per_phase = {phase: limits.phases.get(phase, math.inf) for phase in PHASES}
        free: list[tuple[str, int, tuple[str, ...]]] = []
        for station, place, tx in members:
            phases = sites.phases_of(station)
            if station in online:
                free.append((station, place, phases))
                continue
            last = sites.allocations.get((station, place))
            if last is not None and str(last.transaction_id) == str(tx.transaction_id):
                held = convert(last.limit, _unit(last.unit), _unit(site.unit), len(phases))
                remaining -= held
                for phase in phases:
                    per_phase[phase] -= _load(held, site.unit, phases)
        values = _shares(site, free, max(0.0, remaining), per_phase)
        for (station, place, phases), value in zip(free, values, strict=True):
            if math.isinf(value):
                continue  # no limit of this site reaches it
            value = math.floor(value * 10) / 10  # OCPP limits are multiples of 0.1
            previous = shares.get((station, place))
            if previous is not None:
                value = min(
                    value,
                    convert(previous[0], _unit(previous[1]), _unit(site.unit), len(phases)),
                )
            shares[(station, place)] = (value, site.unit)
    return shares


def _shares(
    site: SiteState,
    free: list[tuple[str, int, tuple[str, ...]]],
    remaining: float,
    per_phase: dict[str, float],
) -> list[float]:
    """The values of ``free`` (in service order) out of ``remaining`` in total and
    ``per_phase``, by the site's strategy (``inf``: not limited by this site)."""
    per_phase = {phase: max(0.0, left) for phase, left in per_phase.items()}
    most = math.inf if site.max_allocation is None else site.max_allocation
    if site.strategy == "priority":
        values = []
        for _, _, phases in free:
            value = min(
                remaining, most, *(per_phase[p] / _load(1.0, site.unit, phases) for p in phases)
            )
            value = value if value >= site.min_allocation else 0.0
            values.append(value)
            if not math.isinf(value):
                remaining -= value
                for phase in phases:
                    per_phase[phase] -= _load(value, site.unit, phases)
        return values
    values = [0.0] * len(free)
    loads = [_load(1.0, site.unit, phases) for _, _, phases in free]
    # An equal value v for each: on phase p the active ones draw v x their load factors.
    factors = dict.fromkeys(PHASES, 0.0)
    for (_, _, phases), load in zip(free, loads, strict=True):
        for phase in phases:
            factors[phase] += load
    active = list(range(len(free)))
    while active:
        share = remaining / len(active)
        caps = {p: per_phase[p] / factors[p] if factors[p] else math.inf for p in PHASES}
        for i in active:
            values[i] = min(share, most, *(caps[p] for p in free[i][2]))
        short = [i for i in active if values[i] < site.min_allocation]
        if not short:
            break
        # The last served of those below the minimum get none, and the rest share again:
        # at once as many as the total cannot give the minimum to (one by one would drop
        # the same), else one.
        fit = remaining / site.min_allocation + 1e-9
        excess = 1 if math.isinf(fit) else len(active) - math.floor(fit)
        dropped = set(short[-max(1, excess) :])
        for i in dropped:
            values[i] = 0.0
            for phase in free[i][2]:
                factors[phase] -= loads[i]
        active = [i for i in active if i not in dropped]
    return values


def site_load(
    sites: SitesProjection, site: str, allocations: dict[tuple[str, int], tuple[float, str]]
) -> Limits:
    """What ``allocations`` ((station, place) -> (value, unit)) of the site's stations draw,
    in the site's unit: in total and on each phase (the load of :func:`allocate`'s rule)."""
    state = sites.get(site)
    assert state is not None
    members = set(sites.stations_in(site))
    total = 0.0
    phases = dict.fromkeys(PHASES, 0.0)
    for (station, _), (value, unit) in allocations.items():
        if station not in members:
            continue
        wired = sites.phases_of(station)
        value = convert(value, _unit(unit), _unit(state.unit), len(wired))
        total += value
        for phase in wired:
            phases[phase] += _load(value, state.unit, wired)
    return Limits(total, phases)


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
        "phase_limits": state.phase_limits,
        "station_phases": state.station_phases,
        "periods": [msgspec.to_builtins(period) for period in state.periods],
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
