"""The commit feed: the newest committed log position, a wake-up for readers, frame counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import trio

from chargeledger.core.events import CallTimedOut, FrameLogged, HandshakeRejected, Recorded

__all__ = ["CommitFeed"]


class CommitFeed:
    """What the server's ``on_commit`` tells the HTTP API about each committed batch.

    It keeps no events: readers (the event stream) read the store themselves and only wait
    here until something newer than what they have read is committed, so a slow reader
    costs nothing but its own page reads. The counters count this process's commits since it
    started (Prometheus counters). Used on the trio thread only.
    """

    def __init__(self) -> None:
        self.position = 0
        """Position of the newest event committed by this process, or folded from the log
        by its follower (0 before the first)."""
        self.frames_in = 0
        self.frames_out = 0
        self.timeouts = 0
        self.refusals: Counter[str] = Counter()
        """Refused handshakes by ``HandshakeRejected.cause`` (``malformed`` when it has none:
        a bad identity or subprotocol)."""
        self._changed = trio.Event()

    def publish(self, batch: Sequence[Recorded]) -> None:
        """Take a batch this process committed (positions ascending): count it, and wake
        every waiter; never raises."""
        if not batch:
            return
        self.count(batch)
        self.advance(batch[-1].position)

    def count(self, batch: Sequence[Recorded]) -> None:
        """Count the frames, timeouts and refusals of ``batch``, events this process
        committed (a node following the log counts only its own); never raises."""
        for recorded in batch:
            event = recorded.event
            if isinstance(event, FrameLogged):
                if event.direction == "in":
                    self.frames_in += 1
                else:
                    self.frames_out += 1
            elif isinstance(event, CallTimedOut):
                self.timeouts += 1
            elif isinstance(event, HandshakeRejected):
                self.refusals[event.cause or "malformed"] += 1

    def advance(self, position: int) -> None:
        """Everything up to ``position`` is folded: wake every waiter (a node following the
        log calls this for every node's events, see :mod:`chargeledger.core.follower`)."""
        if position <= self.position:
            return
        self.position = position
        self._changed.set()
        self._changed = trio.Event()

    async def wait_beyond(self, position: int, timeout: float) -> bool:
        """Wait until an event after ``position`` is committed here, at most ``timeout``
        seconds; whether one was. On a node following the log (PostgreSQL) every node's
        events wake it once folded; elsewhere another process's events wake nobody, and a
        reader that times out reads again to pick them up."""
        with trio.move_on_after(timeout):
            while self.position <= position:
                await self._changed.wait()
            return True
        return False
