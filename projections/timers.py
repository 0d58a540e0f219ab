"""The timers plugins started and that have not fired yet: what the dispatcher re-arms."""

from __future__ import annotations

from typing import ClassVar

from chargeledger.core.events import Recorded, TimerFired, TimerStarted
from chargeledger.projections.exchanges import Kind

__all__ = ["TimersProjection"]


class TimersProjection:
    """Folds ``TimerStarted`` / ``TimerFired``: a timer is pending from its latest start until
    it fires. A ``TimerFired`` without a start (a log cut short) is ignored."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({TimerStarted, TimerFired})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._pending: dict[str, float] = {}
        self._versions: dict[str, int] = {}

    def apply(self, recorded: Recorded) -> None:
        """Fold the next event of the log."""
        event = recorded.event
        if isinstance(event, TimerStarted):
            self._pending[event.name] = event.due
            self._versions[event.name] = recorded.version
        elif isinstance(event, TimerFired):
            self._pending.pop(event.name, None)
            self._versions.pop(event.name, None)

    def pending(self) -> dict[str, float]:
        """Each pending timer's name and due time (a copy)."""
        return dict(self._pending)

    def started_version(self, name: str) -> int | None:
        """The stream version of the pending timer ``name``'s latest ``TimerStarted``: its
        ``TimerFired`` is the next version (``None`` when it is not pending)."""
        return self._versions.get(name)
