"""The site_limits plugin's allocation decisions, as recorded and as a replay through today's
plugins takes them again (docs/smart-charging.md#replay-and-what-if).

Each allocation the plugin sends is a ``CommandRequested`` asked by ``plugins`` whose request
id names the event it reacted to (``allocation_request_id``), and each of its timers a
``TimerStarted`` named ``site-limits:...``. Replaying the log folds the views event by event
and asks today's plugins to react to each event, as the dispatcher did: the same plugins
with the same settings take the same decisions, under the same names; another stack level,
minimum share or limit rule takes others, and the comparison shows which.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from chargeledger.core.commands import Command, SendCall, StartTimer
from chargeledger.core.events import CommandRequested, Event, Recorded, TimerStarted
from chargeledger.core.firmware import PLUGINS_CALLER, Decision, sort_decisions
from chargeledger.core.plugin_host import PluginHost
from chargeledger.projections import Views
from chargeledger.projections.sites import SITE_LIMITS_PREFIX

__all__ = [
    "recorded_site_decision",
    "recorded_site_decisions",
    "replayed_site_decisions",
    "site_decides",
    "site_decisions_in",
]


def recorded_site_decision(event: Event) -> Decision | None:
    """The site decision ``event`` records (an allocation's ``CommandRequested`` asked by
    ``plugins``, a site-limits timer's ``TimerStarted``), ``None`` for any other event."""
    if (
        isinstance(event, CommandRequested)
        and event.key == PLUGINS_CALLER
        and event.request_id.startswith(SITE_LIMITS_PREFIX)
    ):
        return Decision(
            kind="allocation",
            name=event.request_id,
            station=event.station,
            action=event.command,
            payload=event.payload,
        )
    if isinstance(event, TimerStarted) and event.name.startswith(SITE_LIMITS_PREFIX):
        return Decision(kind="timer", name=event.name, due=event.due)
    return None


def site_decides(views: Views) -> bool:
    """Whether the site_limits plugin may decide on the event just folded into ``views``:
    while some site is defined (which events it reacts to is the plugin's own rule)."""
    return bool(views.sites.all())


def site_decisions_in(commands: Iterable[Command]) -> list[Decision]:
    """The site decisions among the commands plugins returned."""
    decisions = []
    for command in commands:
        if isinstance(command, SendCall) and (command.request_id or "").startswith(
            SITE_LIMITS_PREFIX
        ):
            decisions.append(
                Decision(
                    kind="allocation",
                    name=command.request_id or "",
                    station=command.station,
                    action=command.action,
                    payload=msgspec.to_builtins(command.payload),
                )
            )
        elif isinstance(command, StartTimer) and command.name.startswith(SITE_LIMITS_PREFIX):
            decisions.append(Decision(kind="timer", name=command.name, due=command.due))
    return decisions


def recorded_site_decisions(records: Iterable[Recorded]) -> list[Decision]:
    """The site decisions the log holds (:func:`recorded_site_decision`), sorted."""
    found = (recorded_site_decision(recorded.event) for recorded in records)
    return sort_decisions(decision for decision in found if decision is not None)


def replayed_site_decisions(records: Iterable[Recorded], plugins: PluginHost) -> list[Decision]:
    """The site decisions today's ``plugins`` take when the log is folded again and each
    event is reacted to as the dispatcher does (while a site is defined); sorted. Equal to
    :func:`recorded_site_decisions` of the same log when the allocations replay."""
    views = Views()
    decisions = []
    for recorded in records:
        views.apply(recorded)
        if site_decides(views):
            decisions += site_decisions_in(plugins.react(recorded, views))
    return sort_decisions(decisions)
