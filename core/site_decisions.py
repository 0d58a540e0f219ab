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

from chargeledger.core.commands import Command
from chargeledger.core.events import Event, Recorded
from chargeledger.core.firmware import Decision, DecisionFamily
from chargeledger.core.plugin_host import PluginHost
from chargeledger.projections import Views
from chargeledger.projections.sites import SITE_LIMITS_PREFIX

__all__ = [
    "SITE_DECISIONS",
    "recorded_site_decision",
    "recorded_site_decisions",
    "replayed_site_decisions",
    "site_decides",
    "site_decisions_in",
]


def site_decides(views: Views) -> bool:
    """Whether the site_limits plugin may decide on the event just folded into ``views``:
    while some site is defined (which events it reacts to is the plugin's own rule)."""
    return bool(views.sites.all())


SITE_DECISIONS = DecisionFamily(
    send_kind="allocation",
    timer_kind="timer",
    sends=lambda request_id: request_id.startswith(SITE_LIMITS_PREFIX),
    times=lambda name: name.startswith(SITE_LIMITS_PREFIX),
    decides=lambda recorded, views: site_decides(views),
)
"""The site limits' decisions: each allocation sent (a ``SendCall`` named
``allocation_request_id``) and each of the block's timers."""


def recorded_site_decision(event: Event) -> Decision | None:
    """The site decision ``event`` records (an allocation's ``CommandRequested`` asked by
    ``plugins``, a site-limits timer's ``TimerStarted``), ``None`` for any other event."""
    return SITE_DECISIONS.recorded(event)


def site_decisions_in(commands: Iterable[Command]) -> list[Decision]:
    """The site decisions among the commands plugins returned."""
    return SITE_DECISIONS.taken(commands)


def recorded_site_decisions(records: Iterable[Recorded]) -> list[Decision]:
    """The site decisions the log holds (:func:`recorded_site_decision`), sorted."""
    return SITE_DECISIONS.recorded_in(records)


def replayed_site_decisions(records: Iterable[Recorded], plugins: PluginHost) -> list[Decision]:
    """The site decisions today's ``plugins`` take when the log is folded again and each
    event is reacted to as the dispatcher does (while a site is defined); sorted. Equal to
    :func:`recorded_site_decisions` of the same log when the allocations replay."""
    return SITE_DECISIONS.replayed(records, plugins)
