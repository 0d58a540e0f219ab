"""Messages a station sends in parts (2.0.1 NotifyReport, NotifyDisplayMessages, and the
monitoring and customer-information reports): which parts arrived, by ``seqNo`` and ``tbc``."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

__all__ = ["Parts", "report_of"]

R = TypeVar("R")


class Parts(msgspec.Struct, kw_only=True):
    """The parts of one multi-part message received so far. A part received again (its
    CALLRESULT was lost and the station sent it again) is counted once."""

    seq_nos: list[int] = []
    """The parts received, ascending."""
    last_seq_no: int | None = None
    """The ``seqNo`` of the part sent with ``tbc`` false (the last one)."""
    complete: bool = False
    """Every part from 0 to ``last_seq_no`` arrived, and no other."""

    def receive(self, seq_no: int, tbc: Any) -> bool:
        """Count part ``seq_no`` (``tbc`` as sent: ``true`` when more follow); ``False`` when
        it was received before, and must not be applied again."""
        index = bisect_left(self.seq_nos, seq_no)
        if index < len(self.seq_nos) and self.seq_nos[index] == seq_no:
            return False
        self.seq_nos.insert(index, seq_no)
        if tbc is not True:
            self.last_seq_no = seq_no
        last, parts = self.last_seq_no, self.seq_nos
        self.complete = last is not None and parts[0] == 0 and parts[-1] == last == len(parts) - 1
        return True


def report_of(reports: dict[int, R], request_id: int, make: Callable[[int], R], limit: int) -> R:
    """The report ``request_id`` of a station's ``reports`` (oldest first), made with
    ``make(request_id)`` when new; beyond ``limit`` reports the oldest is forgotten."""
    report = reports.get(request_id)
    if report is None:
        report = reports[request_id] = make(request_id)
        if len(reports) > limit:
            del reports[next(iter(reports))]
    return report
