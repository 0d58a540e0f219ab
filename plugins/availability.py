"""Availability (1.6 Core, 2.0.1 G): StatusNotification is acknowledged in either version; the
stations projection keeps each connector's and EVSE's status, the problems projection its
faults. ChangeAvailability is a use case of the API (``CentralSystem.change_availability``)."""

from __future__ import annotations

from chargeledger.core.plugin import Command, Reply, answers, hookimpl

__all__ = ["chargeledger_answer_call"]


@hookimpl
@answers("StatusNotification")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]
