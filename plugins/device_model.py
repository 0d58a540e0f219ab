"""Device model (2.0.1 B): NotifyReport, the parts of the reports GetBaseReport and GetReport
ask for, is acknowledged; the device-model projection assembles the parts by ``seqNo`` and
``tbc``. GetVariables, SetVariables and the report requests are use cases of the API."""

from __future__ import annotations

from chargeledger.core.plugin import Command, Reply, answers, hookimpl

__all__ = ["chargeledger_answer_call"]


@hookimpl
@answers("NotifyReport")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]
