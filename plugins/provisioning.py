"""Provisioning (1.6 Core / 2.0.1 B): BootNotification by the boot policy, Heartbeat, the boot
gate that refuses other CALLs from stations whose boot was not accepted, and the configuration
of Pending stations before they are accepted.

Pending to Accepted, in either version, every step an event in the log and every decision
taken from the views (options: ``[plugins.provisioning.pending_configuration]``, use-case
configuration key -> value, see :mod:`chargeledger.core.usecases`):

1. the boot policy answers Pending (``[boot] status = "Pending"`` or ``[boot] pending``);
2. once that answer is committed, the react hook sends the configuration the station's
   projections do not show yet (one 2.0.1 SetVariables, or a 1.6 ChangeConfiguration per key);
3. when an answer to those leaves every key with its value in the projections, the react hook
   sends TriggerMessage(BootNotification);
4. the boot the station then sends is answered Accepted, because its projections show it
   provisioned. A station that refuses a value stays Pending and is configured again at its
   next boot.
"""

from __future__ import annotations

from chargeledger.core.errors import UnsupportedUseCase
from chargeledger.core.plugin import (
    Command,
    Exchange,
    InboundCall,
    Reply,
    ReplyError,
    SendCall,
    Settings,
    Views,
    answers,
    hookimpl,
    plugin_options,
    reacts_to,
    rfc3339,
)
from chargeledger.core.usecases import configure, configured_value, trigger_message

__all__ = [
    "ALLOWED_WHILE_PENDING",
    "answer_heartbeat",
    "boot_status",
    "chargeledger_admit_call",
    "chargeledger_answer_call",
    "chargeledger_react",
    "missing_configuration",
]

ALLOWED_WHILE_PENDING = frozenset({"NotifyReport"})
"""CALLs a Pending station may send: the parts of a report the CSMS asked for while
configuring it (2.0.1 B02)."""


def missing_configuration(station: str, views: Views, settings: Settings) -> dict[str, str]:
    """The configured ``pending_configuration`` entries the station's projections do not show
    with their value (a key its version cannot express counts as missing)."""
    wanted: dict[str, str] = plugin_options(settings, "provisioning").get(
        "pending_configuration", {}
    )
    missing = {}
    for key, value in wanted.items():
        try:
            held = configured_value(views, station, key)
        except UnsupportedUseCase:
            held = None
        if held != value:
            missing[key] = value
    return missing


def _provisioned(station: str, views: Views, settings: Settings) -> bool:
    configured = plugin_options(settings, "provisioning").get("pending_configuration")
    return bool(configured) and not missing_configuration(station, views, settings)


def boot_status(station: str, settings: Settings, views: Views) -> str:
    """The answer to the station's boot: its own list first, then the default; Pending
    becomes Accepted once the station is provisioned."""
    policy = settings.boot
    if station in policy.rejected:
        return "Rejected"
    if station in policy.accepted:
        return "Accepted"
    status = "Pending" if station in policy.pending else policy.status
    if status == "Pending" and _provisioned(station, views, settings):
        return "Accepted"
    return status


@hookimpl
def chargeledger_admit_call(
    call: InboundCall, views: Views, settings: Settings
) -> ReplyError | None:
    """Refuse every CALL but BootNotification from a station not (or no longer) accepted.

    OCPP 2.0.1 B02/B03 prescribe CALLERROR SecurityError for that; we do the same for 1.6.
    A station never seen booting is let through only with ``unbooted_calls = "allow"``.
    """
    if call.action == "BootNotification":
        return None
    state = views.stations.get(call.station)
    booted = state is not None and state.boot is not None
    if state is not None and state.accepted:
        return None
    if not booted and settings.boot.unbooted_calls == "allow":
        return None
    pending = state is not None and state.boot is not None and state.boot.status == "Pending"
    if pending and call.action in ALLOWED_WHILE_PENDING:
        return None
    why = "BootNotification not accepted" if booted else "no BootNotification accepted yet"
    return ReplyError("SecurityError", f"{call.action} refused: {why}")


@hookimpl
@answers("BootNotification")
def chargeledger_answer_call(call: InboundCall, views: Views, settings: Settings) -> list[Command]:
    status = boot_status(call.station, settings, views)
    interval = settings.boot.interval if status == "Accepted" else settings.boot.retry_interval
    return [Reply({"status": status, "currentTime": rfc3339(call.at), "interval": interval})]


@hookimpl(specname="chargeledger_answer_call")
@answers("Heartbeat")
def answer_heartbeat(call: InboundCall) -> list[Command]:
    return [Reply({"currentTime": rfc3339(call.at)})]


@hookimpl
@reacts_to("BootNotification", "ChangeConfiguration", "SetVariables")
def chargeledger_react(
    exchange: Exchange | None, views: Views, settings: Settings
) -> list[Command]:
    if exchange is None or exchange.error is not None:
        return []  # only a CALLRESULT changes what the station holds
    if not plugin_options(settings, "provisioning").get("pending_configuration"):
        return []
    state = views.stations.get(exchange.station)
    if state is None or state.boot is None or state.boot.status != "Pending":
        return []
    station = exchange.station
    if exchange.origin == "in" and exchange.action == "BootNotification":
        missing = missing_configuration(station, views, settings)
        requests = configure(state.protocol, missing)
    elif (
        exchange.origin == "out"
        and exchange.action in ("ChangeConfiguration", "SetVariables")
        and _provisioned(station, views, settings)
    ):
        requests = [trigger_message(state.protocol, "BootNotification")]
    else:
        return []
    return [SendCall(station, request.action, request.payload) for request in requests]
