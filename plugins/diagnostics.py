"""Diagnostics (2.0.1 N): NotifyEvent is acknowledged; the problems projection folds its
events into each station's active problems and recent events."""

from __future__ import annotations

from chargeledger.core.plugin import Command, Reply, answers, hookimpl

__all__ = ["chargeledger_answer_call"]


@hookimpl
@answers("NotifyEvent")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]
