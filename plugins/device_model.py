"""Device model (2.0.1 B): NotifyReport, the parts of the reports GetBaseReport and GetReport
ask for, is acknowledged; the device-model projection assembles the parts by ``seqNo`` and
``tbc``. GetVariables, SetVariables and the report requests are use cases of the API."""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall

__all__ = ["chargeledger_answer_call"]


@hookimpl
def chargeledger_answer_call(call: InboundCall) -> list[Command] | None:
    return [Reply({})] if call.action == "NotifyReport" else None
