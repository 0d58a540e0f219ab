"""Display messages (2.0.1 O): NotifyDisplayMessages, the parts of the report GetDisplayMessages
asks for, is acknowledged; the display-message projection assembles the parts and keeps what
each station displays. SetDisplayMessage, GetDisplayMessages and ClearDisplayMessage are use
cases of the API (``chargeledger.core.usecases_display``)."""

from __future__ import annotations

from chargeledger.core.plugin import Command, Reply, answers, hookimpl

__all__ = ["chargeledger_answer_call"]


@hookimpl
@answers("NotifyDisplayMessages")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]
