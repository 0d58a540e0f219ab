"""Availability (1.6 Core StatusNotification): acknowledged; the stations projection keeps
each connector's status, error code and vendor information."""

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
