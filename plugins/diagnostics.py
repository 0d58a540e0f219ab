"""Diagnostics (2.0.1 N): what the station reports about itself is acknowledged, and folded by
the projections. NotifyEvent goes into the problems projection (each station's active
problems and recent events) and, with its ``variableMonitoringId``, to the monitor that fired
it; NotifyMonitoringReport, the parts of the report GetMonitoringReport asks for, into the
monitors projection; NotifyCustomerInformation, the parts of a CustomerInformation report,
into the customer-information projection. The requests are use cases of the API
(``core/usecases_diagnostics.py``); the upload notifications of diagnostics and logs are
acknowledged by the notifications block and folded by the logs projection."""

from __future__ import annotations

from chargeledger.core.plugin import Command, Reply, answers, hookimpl

__all__ = ["chargeledger_answer_call"]


@hookimpl
@answers("NotifyEvent", "NotifyMonitoringReport", "NotifyCustomerInformation")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]
