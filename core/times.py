"""Times as ChargeLedger writes them: UNIX seconds in events, RFC 3339 UTC text everywhere else.

:func:`rfc3339` is the one formatter: OCPP answers (``currentTime``, expiry dates), the JSON
forms of the projections, the CLI, the audit, the simulator's frames. It gives the same text
as ``datetime.fromtimestamp(at, UTC).isoformat(timespec=...)`` with ``Z`` for ``+00:00``
(microseconds rounded half to even, then truncated to the precision asked for), and caches
the part up to the second, which costs more than the rest and repeats from call to call.
"""

from __future__ import annotations

import functools
import math
import time

__all__ = ["rfc3339"]

_SCALE = {3: 1000, 6: 1}
"""Microseconds per unit of the fraction, by the digits written."""


@functools.lru_cache(maxsize=64)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def rfc3339(at: float, digits: int = 3) -> str:
    """``at`` (UNIX seconds) as RFC 3339 UTC text with ``digits`` (3 or 6) fractional digits:
    ``2024-05-01T10:00:00.000Z``.

    Raises ``ValueError`` for other ``digits``, and ``OverflowError`` or ``OSError`` for a
    time outside what the platform's ``gmtime`` accepts (years 1 to 9999 on Linux)."""
    scale = _SCALE.get(digits)
    if scale is None:
        raise ValueError(f"digits must be 3 or 6, not {digits}")
    fraction, whole = math.modf(at)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return f"{_utc_second(int(whole))}.{micros // scale:0{digits}d}Z"
