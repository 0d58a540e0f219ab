"""Station notifications that need only an acknowledgement (firmware, diagnostics, log and
security events, 1.6 and its security extension): the frames themselves are the record."""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall

__all__ = ["ACKNOWLEDGED", "chargeledger_answer_call"]

ACKNOWLEDGED = frozenset(
    {
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignedFirmwareStatusNotification",
    }
)


@hookimpl
def chargeledger_answer_call(call: InboundCall) -> list[Command] | None:
    if call.protocol == "ocpp1.6" and call.action in ACKNOWLEDGED:
        return [Reply({})]
    return None
