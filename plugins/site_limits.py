"""Site limits: a site's limit shared among the charging transactions of its stations.

Whenever a transaction starts or ends on a station of a site, a station connects or goes
offline, a site is defined or deleted, or one of this block's timers fires, the block
computes the allocations (``allocate`` of :mod:`chargeledger.projections.sites`: equal
shares with minimums, offline stations holding their last allocation, the smallest share
of the nested sites, per-phase limits, the lowest limits of the next ``lead`` seconds) and
sends each transaction whose allocation changed a TxProfile (``SetChargingProfile``, id
``site_profile_id(place)``, kind ``Relative``, stack level ``[plugins.site_limits]
stack_level``, 8 by default; ``numberPhases`` for a station on fewer than three phases) in
the site's unit. Each send is a recorded command named ``allocation_request_id(position,
station, place)`` (the event it reacts to), and its allocation is folded in ``views.sites``.

Never above the limit: while some allocation must go down, only the decreases are sent;
the raises and new allocations follow once they are recorded and answered. An allocation is
in flight from the moment it is decided (the plugin host notes it in ``views.sites`` before
the dispatcher records it) until its answer, a timeout or the station's reconnection: its
place gets nothing new meanwhile, and nothing is raised anywhere, so two allocations of one
place reaching the station in either order never add up above a limit. A site's daily periods
(a lower limit from 17:00 to 20:00, ...) bring a timer (``site-limits:period``): the
allocations go down ``[plugins.site_limits] lead`` seconds (60 by default) before a lower
limit begins, and up once a lower one ended. Not flooding the stations: a decrease is sent
at once; an increase only when it exceeds the site's ``deadband`` and no sooner than
``min_interval`` seconds after the previous allocation there (a timer brings it when due).
Pure: the time is the event's, so a replay or ``replay --what-if`` decides the same.
"""

from __future__ import annotations

from typing import Any

from chargeledger.core.plugin import (
    OCPP16,
    SITE_LIMITS_PREFIX,
    CallTimedOut,
    Command,
    Exchange,
    Recorded,
    SendCall,
    SessionClosed,
    SessionOpened,
    Settings,
    SiteDefined,
    SiteDeleted,
    StartTimer,
    TimerFired,
    Views,
    allocate,
    allocation_request_id,
    hookimpl,
    next_change,
    plugin_options,
    reacts_to,
    site_profile_id,
)
from chargeledger.core.usecases_smart_charging import ProfilePeriod, charging_profile

__all__ = ["PERIOD_TIMER", "TIMER_PREFIX", "chargeledger_react", "decide"]

TIMER_PREFIX = SITE_LIMITS_PREFIX
PERIOD_TIMER = f"{TIMER_PREFIX}period"

_TRIGGERS = frozenset({"StartTransaction", "StopTransaction", "TransactionEvent"})


def _triggered(recorded: Recorded, exchange: Exchange | None) -> bool:
    event = recorded.event
    if isinstance(event, SiteDefined | SiteDeleted | SessionOpened | SessionClosed):
        return True
    if isinstance(event, CallTimedOut):
        return event.action == "SetChargingProfile"  # no answer: in flight no more
    if isinstance(event, TimerFired):
        return event.name.startswith(TIMER_PREFIX)
    if exchange is not None and exchange.origin == "out":
        return exchange.action == "SetChargingProfile"  # a decrease answered: raise now?
    return exchange is not None and exchange.action in _TRIGGERS


def decide(
    views: Views,
    now: float,
    stack_level: int = 8,
    lead: float = 60.0,
    position: int = 0,
    in_flight_timeout: float = 120.0,
) -> list[Command]:
    """The SetChargingProfile commands and timers that bring every site transaction to its
    allocation at ``now`` (the lowest limits of the next ``lead`` seconds) in reaction to the
    event at log ``position``: the decreases alone while there are any (the raises follow
    once they are recorded: the answer to a site SetChargingProfile triggers this again), so
    the allocations in the log never sum above a limit; and the timer of the next period
    boundary. A place with an allocation in flight (decided, not answered yet; at most
    ``in_flight_timeout`` seconds) gets nothing new until its answer brings the next
    decision, and while any is in flight only decreases are sent: two allocations of one
    place may reach the station in either order, and a raise elsewhere must not count on
    one that may not have arrived."""
    sites = views.sites
    busy = sites.in_flight(now, in_flight_timeout)
    running = {
        station: views.charging_profiles.running(station)
        for site in sites.all()
        for station in sites.stations_in(site.site)
    }
    connected = [s for s in running if (state := views.stations.get(s)) and state.connected]
    targets = allocate(sites, running, connected, now, lead)
    timers: list[Command] = []
    boundary = next_change(sites, now, lead)
    if boundary is not None and views.timers.pending().get(PERIOD_TIMER) != boundary:
        timers.append(StartTimer(PERIOD_TIMER, boundary))
    decreases: list[Command] = []
    increases: list[Command] = []
    for (station, place), (limit, unit) in sorted(targets.items()):
        if station not in connected or (station, place) in busy:
            continue
        last = sites.allocations.get((station, place))
        tx = running[station][place]
        same_tx = last is not None and str(last.transaction_id) == str(tx.transaction_id)
        site = sites.get(sites.sites_of(station)[0])
        deadband = site.deadband if site is not None else 0.0
        interval = site.min_interval if site is not None else 0.0
        if last is not None and same_tx and last.unit == unit:
            if abs(limit - last.limit) < 1e-9:
                continue
            if limit > last.limit:
                if limit - last.limit <= deadband:
                    continue
                due = last.at + interval
                if due > now:
                    name = f"{TIMER_PREFIX}{station}:{place}"
                    if views.timers.pending().get(name) != due:  # not started again
                        increases.append(StartTimer(name, due))
                    continue
        state = views.stations.get(station)
        protocol = state.protocol if state is not None and state.protocol else OCPP16
        phases = len(sites.phases_of(station))
        profile = charging_profile(
            protocol,
            site_profile_id(place),
            "TxProfile",
            [ProfilePeriod(0, limit, phases if phases < 3 else None)],
            unit=unit,
            kind="Relative",
            stack_level=stack_level,
            transaction_id=tx.transaction_id,
        )
        if protocol == OCPP16:
            payload: dict[str, Any] = {"connectorId": place, "csChargingProfiles": profile}
        else:
            payload = {"evseId": place, "chargingProfile": profile}
        request_id = allocation_request_id(position, station, place)
        command = SendCall(station, "SetChargingProfile", payload, request_id)
        going_down = last is not None and same_tx and limit < last.limit
        (decreases if going_down else increases).append(command)
    # Raises only once every decrease is in the log and answered: the sum never exceeds a
    # limit.
    return timers + (decreases or ([] if busy else increases))


@hookimpl
@reacts_to(
    SiteDefined,
    SiteDeleted,
    SessionOpened,
    SessionClosed,
    CallTimedOut,
    TimerFired,
    "SetChargingProfile",
    *_TRIGGERS,
)
def chargeledger_react(
    recorded: Recorded, exchange: Exchange | None, views: Views, settings: Settings
) -> list[Command]:
    if not views.sites.all() or not _triggered(recorded, exchange):
        return []
    station = getattr(recorded.event, "station", None)
    if station is not None and not views.sites.sites_of(station):
        return []  # a station in no site changes no allocation
    now = getattr(recorded.event, "at", None)
    if isinstance(recorded.event, TimerFired):
        now = recorded.event.due
    if now is None:
        return []
    options = plugin_options(settings, "site_limits")
    stack_level = int(options.get("stack_level", 8))
    lead = float(options.get("lead", 60.0))
    timeout = float(options.get("in_flight_timeout", 120.0))
    return decide(views, now, stack_level, lead, recorded.position, timeout)
