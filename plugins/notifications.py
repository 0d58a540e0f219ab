"""Station notifications that need only an acknowledgement (diagnostics, log and security
events; 1.6 with its security extension, and 2.0.1): the frames themselves are the record
(the firmware notifications are the ``firmware`` block's). An action the station's version
does not define never gets here (NotImplemented)."""

from __future__ import annotations

from chargeledger.core.plugin import Command, Reply, answers, hookimpl

__all__ = ["ACKNOWLEDGED", "chargeledger_answer_call"]

ACKNOWLEDGED = frozenset(
    {
        "DiagnosticsStatusNotification",
        "LogStatusNotification",
        "SecurityEventNotification",
    }
)


@hookimpl
@answers(*ACKNOWLEDGED)
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]
