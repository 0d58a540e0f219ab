"""Provisioning (1.6 Core / 2.0.1 B): BootNotification by the boot policy, Heartbeat, and the
boot gate that refuses other CALLs from stations whose boot was not accepted."""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply, ReplyError
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall
from chargeledger.core.settings import Settings
from chargeledger.plugins._common import rfc3339
from chargeledger.projections import Views

__all__ = ["boot_status", "chargeledger_answer_call"]


def boot_status(station: str, settings: Settings) -> str:
    """The answer the boot policy gives ``station``: its own list first, then the default."""
    policy = settings.boot
    if station in policy.rejected:
        return "Rejected"
    if station in policy.accepted:
        return "Accepted"
    return policy.status


def _gate(call: InboundCall, views: Views, settings: Settings) -> list[Command] | None:
    """Refuse every CALL but BootNotification from a station not (or no longer) accepted.

    OCPP 2.0.1 B02/B03 prescribe CALLERROR SecurityError for that; we do the same for 1.6.
    A station never seen booting is let through only with ``unbooted_calls = "allow"``.
    """
    state = views.stations.get(call.station)
    booted = state is not None and state.boot is not None
    if state is not None and state.accepted:
        return None
    if not booted and settings.boot.unbooted_calls == "allow":
        return None
    why = "BootNotification not accepted" if booted else "no BootNotification accepted yet"
    return [ReplyError("SecurityError", f"{call.action} refused: {why}")]


@hookimpl(tryfirst=True)
def chargeledger_answer_call(
    call: InboundCall, views: Views, settings: Settings
) -> list[Command] | None:
    if call.action == "BootNotification":
        status = boot_status(call.station, settings)
        interval = settings.boot.interval if status == "Accepted" else settings.boot.retry_interval
        return [Reply({"status": status, "currentTime": rfc3339(call.at), "interval": interval})]
    gate = _gate(call, views, settings)
    if gate is not None:
        return gate
    if call.action == "Heartbeat":
        return [Reply({"currentTime": rfc3339(call.at)})]
    return None
