"""Local authorization lists (1.6 Local Auth List Management, 2.0.1 D): keep every station's
list equal to what its lists select of the token registry.

Every step is a ``SendCall`` (recorded through the one door) or an event already in the log,
and every decision is taken from the views (``views.local_lists``, ``views.tokens``):

1. a station's boot is accepted: ask its ``GetLocalListVersion`` (when a list is assigned to
   it or it was ever sent one);
2. that answer, a registry change (``TokenRegistered`` / ``TokenRemoved``), a list change
   (``LocalListDefined`` / ``LocalListDeleted``) or an operator's ``LocalListPushRequested``:
   send the next update, full or differential (:func:`plan_update`), one chunk of at most the
   station's items per message;
3. the station's answer: ``Accepted`` sends the next chunk, if any is left; ``VersionMismatch``
   sends a full update; ``Failed``, ``NotSupported`` and a CALLERROR stop (recorded and
   counted by the projection; the next trigger tries again, but a station that answered
   ``NotSupported`` is only retried on an operator's request).

Only stations a list was ever assigned to are managed (``views.local_lists.managed``); the
others keep what ``send_local_list`` gave them, unless an operator pushes to them.

A station with a SendLocalList on its way is left alone until it answers (the answer plans
again from what it then holds). A list larger than the station's ``LocalAuthListMaxLength`` /
``LocalAuthListCtrlr.Entries`` maximum is not sent (``views``' sync state shows it as
``too_large``). Options (``[plugins.local_list]``): ``items_per_message`` (default 20), used
when the station's configuration does not say.
"""

from __future__ import annotations

from chargeledger.core.events import (
    LocalListDefined,
    LocalListDeleted,
    LocalListPushRequested,
    TokenRegistered,
    TokenRemoved,
)
from chargeledger.core.plugin import (
    Command,
    Exchange,
    Recorded,
    SendCall,
    Settings,
    Views,
    as_dict,
    hookimpl,
    plugin_options,
    reacts_to,
)
from chargeledger.core.usecases import (
    get_local_list_version,
    local_list_limits,
    local_list_too_large,
)
from chargeledger.projections.local_lists import (
    DEFAULT_ITEMS_PER_MESSAGE,
    plan_update,
    send_local_list_payload,
)

__all__ = ["REGISTRY_EVENTS", "chargeledger_react", "next_update"]

REGISTRY_EVENTS = (TokenRegistered, TokenRemoved, LocalListDefined, LocalListDeleted)
"""Events after which every connected station is brought up to date."""


def _default_items(settings: Settings) -> int:
    items = plugin_options(settings, "local_list").get("items_per_message")
    return items if isinstance(items, int) and items > 0 else DEFAULT_ITEMS_PER_MESSAGE


def next_update(
    station: str, views: Views, settings: Settings, *, automatic: bool = True
) -> list[Command]:
    """The SendLocalList that brings the connected, accepted ``station`` closer to its lists
    (nothing when it is up to date, busy with one, too small for them, or, ``automatic``,
    answered ``NotSupported`` last or was never assigned a list: an operator's push reaches
    it anyway)."""
    state = views.stations.get(station)
    if state is None or not state.connected or not state.accepted:
        return []
    if automatic and not views.local_lists.managed(station):
        return []
    held = views.local_lists.get(station)
    if held is not None and (held.pending or (automatic and held.last_status == "NotSupported")):
        return []
    if local_list_too_large(views, station):
        return []
    limits = local_list_limits(views, station, _default_items(settings))
    desired = views.local_lists.desired(station, state.protocol, views.tokens.all())
    plan = plan_update(held, desired, items_per_message=limits.items_per_message)
    if plan is None:
        return []
    payload = send_local_list_payload(state.protocol, plan.version, plan.update_type, plan.entries)
    return [SendCall(station, "SendLocalList", payload)]


@hookimpl
@reacts_to(
    LocalListPushRequested,
    *REGISTRY_EVENTS,
    "BootNotification",
    "GetLocalListVersion",
    "SendLocalList",
)
def chargeledger_react(
    recorded: Recorded, exchange: Exchange | None, views: Views, settings: Settings
) -> list[Command]:
    event = recorded.event
    if isinstance(event, LocalListPushRequested):
        return [
            command
            for station in event.stations
            for command in next_update(station, views, settings, automatic=False)
        ]
    if isinstance(event, REGISTRY_EVENTS):
        return [c for s in views.stations.all() for c in next_update(s.station, views, settings)]
    if exchange is None or exchange.error is not None:
        return []
    if exchange.origin == "in" and exchange.action == "BootNotification":
        accepted = as_dict(exchange.response).get("status") == "Accepted"
        if not accepted or not views.local_lists.managed(exchange.station):
            return []
        request = get_local_list_version(exchange.protocol)
        return [SendCall(exchange.station, request.action, request.payload)]
    if exchange.origin == "out" and exchange.action == "GetLocalListVersion":
        return next_update(exchange.station, views, settings)
    if exchange.origin == "out" and exchange.action == "SendLocalList":
        status = as_dict(exchange.response).get("status")
        if status in ("Accepted", "VersionMismatch"):
            return next_update(exchange.station, views, settings)
    return []
