"""Availability (1.6 Core, 2.0.1 G): StatusNotification is acknowledged in either version; the
stations projection keeps each connector's and EVSE's status, the problems projection its
faults. ChangeAvailability is a use case of the API (``CentralSystem.change_availability``)."""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall

__all__ = ["chargeledger_answer_call"]


@hookimpl
def chargeledger_answer_call(call: InboundCall) -> list[Command] | None:
    if call.action == "StatusNotification":
        return [Reply({})]
    return None
