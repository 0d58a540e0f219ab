"""Commands: what plugins return, and what the executor carries out.

A plugin never does I/O. It answers a hook with a list of these values; the core (the session
for replies, :mod:`chargeledger.core.dispatcher` for the rest) performs them, records what was
sent, and feeds the results back as events. Payloads may be plain dicts or the generated
msgspec types of :mod:`chargeledger.schemas`; either way the core validates them against the
official schema before anything leaves the process.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "CloseSession",
    "Command",
    "Reply",
    "ReplyError",
    "ReplyWithNewTransactionId",
    "SendCall",
    "StartTimer",
]


class Reply(msgspec.Struct, frozen=True):
    """Answer the station's CALL with a CALLRESULT carrying ``payload``."""

    payload: Any


class ReplyError(msgspec.Struct, frozen=True):
    """Answer the station's CALL with a CALLERROR.

    ``code`` is the version-neutral name (``FormatViolation``, ``NotImplemented``,
    ``SecurityError``, ...); the core spells it as the station's protocol version does.
    """

    code: str
    description: str = ""
    details: dict[str, Any] = {}


class ReplyWithNewTransactionId(msgspec.Struct, frozen=True):
    """Answer a 1.6 StartTransaction with ``payload`` plus a freshly allocated
    ``transactionId``: unique across the store, never reused, within signed 32 bits, and
    committed together with the CALLRESULT that carries it."""

    payload: Any


class SendCall(msgspec.Struct, frozen=True):
    """Send a CALL to ``station`` (queued behind any outstanding one) through the one door,
    recorded as asked by ``plugins``. Fire and forget: the station's answer comes back as a
    ``FrameLogged`` event to the react hook."""

    station: str
    action: str
    payload: Any
    request_id: str | None = None
    """Names the recorded ``CommandRequested`` (fresh by default): a plugin names the
    decisions it wants to find in the log (the firmware campaigns do)."""


class CloseSession(msgspec.Struct, frozen=True):
    """Close the station's current WebSocket connection."""

    station: str
    code: int = 1000
    reason: str = ""


class StartTimer(msgspec.Struct, frozen=True):
    """Record ``TimerFired(name, due)`` once the wall clock reaches ``due`` (UNIX seconds;
    at once when it has passed). The dispatcher records ``TimerStarted`` first, so a timer
    pending when the server stops is re-armed from the log at startup; starting a timer of a
    name that is pending re-arms it for the new ``due``. A fired timer is an event like any
    other: it is folded and reaches the react hooks, and a replay reads it from the log
    instead of from a clock. ``name`` should say whose it is (``reservation:CP-1:42``)."""

    name: str
    due: float


Command = Reply | ReplyError | ReplyWithNewTransactionId | SendCall | CloseSession | StartTimer
