"""Draining a node for a rolling restart: stop accepting, close every session, then stop.

A drain is asked once (``POST /api/node/drain``, ``chargeledger drain``, SIGTERM to
``chargeledger serve``) and runs in this order:

1. the gateway closes its listening sockets and marks itself draining
   (:meth:`~chargeledger.core.gateway.Gateway.stop_accepting`): the operating system refuses
   new connections, ``GET /health/ready`` answers 503, a load balancer sends stations to the
   other nodes;
2. each session is closed, with :data:`~chargeledger.core.gateway.CLOSE_SERVICE_RESTART`
   (1012, "service restart") by default, as soon as it is idle: no frame of the station
   being handled and no CALL of ours in flight or queued. A session still busy after
   ``drain_timeout`` seconds is closed all the same (its caller gets ``StationOffline``).
   Every close is recorded (``SessionClosed``, ``by: csms``, the code and reason);
3. once no connection is left (or ``CLOSE_WAIT`` more seconds passed), :func:`run_drain`
   returns; the server then stops after ``LINGER`` (its API still answering, readiness 503),
   flushing the writer, and ``serve`` exits with status 0.

What goes wrong: a station that does not answer our close frame is let go after the
gateway's close handshake timeout; a store failure while recording a close is logged, as at
any other close. A second request while draining changes nothing.
"""

from __future__ import annotations

import logging
import time

import msgspec
import trio

from chargeledger.core.gateway import CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, Gateway, Session

__all__ = ["CLOSE_WAIT", "DRAIN_CODES", "LINGER", "DrainReport", "NodeDrain", "run_drain"]

log = logging.getLogger("chargeledger.drain")

DRAIN_CODES = (CLOSE_SERVICE_RESTART, CLOSE_GOING_AWAY)
"""The close codes a drain may use: 1012 "service restart" (the default) or 1001 "going away"
(for station firmware that mishandles 1012; both ask for a reconnect, docs/operations.md)."""

LINGER = 1.0
"""Seconds the server goes on after the last session closed, before it stops: the answer to
the drain request and the readiness probes' 503s reach their callers instead of a reset."""

CLOSE_WAIT = 15.0
"""Seconds a drain waits, after closing every session, for the connections to end and their
closes to be recorded."""

_POLL = 0.02
"""Seconds between two looks at the sessions while waiting for them to be idle."""


class DrainReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a drain did."""

    code: int
    closed_idle: int
    """Sessions closed once idle."""
    closed_busy: int
    """Sessions still answering or waiting for an answer after ``drain_timeout``."""
    seconds: float


def _idle(session: Session) -> bool:
    return not session.answering and session.in_flight is None and session.queued == 0


async def run_drain(
    gateway: Gateway, timeout: float, code: int = CLOSE_SERVICE_RESTART
) -> DrainReport:
    """Drain ``gateway`` (see the module docstring); ``timeout`` bounds the wait for busy
    sessions. Raises ``ValueError`` for a ``code`` not in :data:`DRAIN_CODES`."""
    if code not in DRAIN_CODES:
        raise ValueError(f"close code {code}: a drain closes with one of {DRAIN_CODES}")
    started = trio.current_time()
    wall = time.monotonic()
    gateway.stop_accepting()
    log.info("draining: %d sessions to close with %d", len(gateway.sessions), code)
    reason = "node draining: reconnect"
    idle = busy = 0
    closing: set[Session] = set()
    deadline = started + timeout
    # Connections accepted before the listeners closed may still become sessions: look
    # until no connection is left, not only at the sessions there were at the start.
    while gateway.statistics().connections > 0 and trio.current_time() < deadline:
        for session in list(gateway.sessions.values()):
            if session not in closing and _idle(session):
                session.end(code, reason)
                closing.add(session)
                idle += 1
        await trio.sleep(_POLL)
    for session in list(gateway.sessions.values()):
        if session not in closing:
            session.end(code, f"{reason} (still busy after {timeout:g} s)")
            closing.add(session)
            busy += 1
    with trio.move_on_after(CLOSE_WAIT):
        while gateway.statistics().connections > 0:
            await trio.sleep(_POLL)
    report = DrainReport(
        code=code, closed_idle=idle, closed_busy=busy, seconds=time.monotonic() - wall
    )
    log.info(
        "drained: %d sessions closed when idle, %d busy, in %.2f s",
        idle,
        busy,
        report.seconds,
    )
    return report


class NodeDrain:
    """The drain of one running server: asked at most once, by anyone (the API, a signal);
    the server waits for :attr:`requested`, runs :func:`run_drain`, then stops."""

    def __init__(self) -> None:
        self.requested = trio.Event()
        self.code = CLOSE_SERVICE_RESTART
        self.report: DrainReport | None = None

    def request(self, code: int = CLOSE_SERVICE_RESTART) -> bool:
        """Ask for the drain; ``False`` when it was asked already (the first code stands).
        Raises ``ValueError`` for a ``code`` not in :data:`DRAIN_CODES`."""
        if code not in DRAIN_CODES:
            raise ValueError(f"close code {code}: a drain closes with one of {DRAIN_CODES}")
        if self.requested.is_set():
            return False
        self.code = code
        self.requested.set()
        return True
