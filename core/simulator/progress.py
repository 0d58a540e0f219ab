"""The progress line of a running simulation: stations connected, calls per second, errors.

Each worker takes a :class:`Snapshot` of its stations every ``every`` seconds
(:func:`~chargeledger.core.simulator.scenarios.run_worker`); :class:`ProgressLine` adds up the
latest one of each worker and writes the line: on a terminal one line rewritten in place
(``\\r``), elsewhere (a log file, CI) one line per period.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

import msgspec

__all__ = ["ProgressLine", "Snapshot"]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One worker's stations at a moment: how many are connected, the CALLs answered and the
    failures counted so far (all phases), the CSMS CALLs answered, and its phase."""

    connected: int
    answered: int
    failed: int
    csms_calls: int
    phase: str


class ProgressLine:
    """Writes the sum of the workers' latest snapshots to ``stream`` (thread-safe)."""

    def __init__(self, stream: TextIO, stations: int, workers: int = 1) -> None:
        self._stream = stream
        self._stations = stations
        self._latest: dict[int, Snapshot] = {}
        self._workers = workers
        self._tty = stream.isatty()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last: tuple[float, int] | None = None
        self._width = 0

    def update(self, worker: int, snapshot: Snapshot) -> None:
        """Worker ``worker``'s newest snapshot; writes the line once every worker has given
        one for this period (the first worker's report paces it)."""
        with self._lock:
            self._latest[worker] = snapshot
            if len(self._latest) == self._workers and worker == min(self._latest):
                self._write()

    def _write(self) -> None:
        snapshots = self._latest.values()
        answered = sum(s.answered for s in snapshots)
        now = time.monotonic()
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = (answered - self._last[1]) / (now - self._last[0])
        self._last = (now, answered)
        phase = min(snapshots, key=lambda s: _PHASES.index(s.phase)).phase
        text = (
            f"{phase} {now - self._started:6.1f} s: "
            f"{sum(s.connected for s in snapshots)}/{self._stations} stations connected, "
            f"{rate:,.0f} calls/s, {answered} answered, "
            f"{sum(s.failed for s in snapshots)} errors, "
            f"{sum(s.csms_calls for s in snapshots)} CSMS calls"
        )
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the rewritten line (on a terminal), so that what follows starts afresh."""
        with self._lock:
            if self._tty and self._width:
                self._stream.write("\n")
                self._stream.flush()
                self._width = 0


_PHASES = ("setup", "measure", "hold", "teardown")
