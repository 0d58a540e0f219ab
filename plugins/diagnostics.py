"""Diagnostics (2.0.1 N): NotifyEvent is acknowledged; the problems projection folds its
events into each station's active problems and recent events."""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall

__all__ = ["chargeledger_answer_call"]


@hookimpl
def chargeledger_answer_call(call: InboundCall) -> list[Command] | None:
    return [Reply({})] if call.action == "NotifyEvent" else None
