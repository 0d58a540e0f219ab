"""The timers plugins started and that have not fired yet: what the dispatcher re-arms."""

from __future__ import annotations

from chargeledger.core.events import Recorded, TimerFired, TimerStarted

__all__ = ["TimersProjection"]


class TimersProjection:
    """Folds ``TimerStarted`` / ``TimerFired``: a timer is pending from its latest start until
    it fires. A ``TimerFired`` without a start (a log cut short) is ignored."""

    def __init__(self) -> None:
        self._pending: dict[str, float] = {}

    def apply(self, recorded: Recorded) -> None:
        """Fold the next event of the log."""
        event = recorded.event
        if isinstance(event, TimerStarted):
            self._pending[event.name] = event.due
        elif isinstance(event, TimerFired):
            self._pending.pop(event.name, None)

    def pending(self) -> dict[str, float]:
        """Each pending timer's name and due time (a copy)."""
        return dict(self._pending)
