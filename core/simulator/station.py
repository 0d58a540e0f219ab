"""One simulated station: its connection, its CALLs and their answers, and the tally they go to.

A station is driven by one task. :meth:`Station.call` sends one CALL and waits for its
answer (OCPP-J allows one outstanding CALL per direction), answering on the way whatever the
CSMS sends: pings (in the transport) and CSMS CALLs, answered as a real station would
(:mod:`.responder`: remote start and stop, configuration, reset, trigger, ...). What an
answer leads to (a remotely started transaction, a reboot, a triggered message) is done by
the station's task once it is idle (:meth:`Station.idle_until`). Every outcome is counted in
a :class:`Tally`; nothing a CSMS does wrong is swallowed:

* a CALLERROR answer counts in ``call_errors``, a refusal (boot not Accepted, id tag not
  Accepted) in ``rejected``; the connection stays up;
* no answer within the call timeout counts in ``timeouts``, and the station drops the
  connection (its state in the CSMS is unknown from then on). The timeout is enforced by
  :func:`expire_overdue_calls`, one task for many stations, because a cancel scope per CALL
  (``trio.fail_after``) costs about 15 µs, a quarter of the simulator's whole cost of a CALL;
* a refused or failed connection (a TLS handshake that fails, an HTTP 401 for a wrong
  password included), or one the CSMS closes while in use, counts in
  ``connection_failures``; an unreadable frame, an answer to an id we did not send, or a
  WebSocket rule the CSMS broke (we close then) counts in ``protocol_errors``.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter
from typing import Any

import msgspec
import trio

from chargeledger.core.simulator.credentials import StationKeys
from chargeledger.core.simulator.frames import StationFrames
from chargeledger.core.simulator.responder import FollowUp, Responder
from chargeledger.core.simulator.websocket import (
    CLOSE_NORMAL,
    ConnectionClosed,
    HandshakeFailed,
    WebSocketClient,
    connect,
)

__all__ = ["COUNTS", "FAILURES", "Station", "Tally", "Target", "expire_overdue_calls"]

COUNTS = (
    "connections",
    "sent",
    "answered",
    "call_errors",
    "rejected",
    "timeouts",
    "connection_failures",
    "protocol_errors",
    "csms_calls",
    "transactions",
)
"""The counters of a :class:`Tally`, in report order."""

FAILURES = ("call_errors", "rejected", "timeouts", "connection_failures", "protocol_errors")
"""The counters that make a run fail."""

CONNECT_TIMEOUT = 10.0
"""Seconds for the TCP connection and the WebSocket handshake together."""

REBOOT_SECONDS = 1.0
"""How long after accepting a Reset a station goes down: its answer reaches the CSMS, and
is recorded there, before the connection closes."""

OVERDUE = "no answer in time"
"""The reason :func:`expire_overdue_calls` drops a connection with."""

_decode = msgspec.json.Decoder().decode


class Target(msgspec.Struct, frozen=True):
    """Where stations connect: ``address`` (already checked to be allowed) and ``port``;
    ``host`` goes into the Host header; ``path`` is the URL path the station id is appended
    to."""

    host: str
    address: str
    port: int
    path: str


class Tally:
    """What happened in one phase of one worker: counters (see ``COUNTS``), failure reasons,
    and the latency of every answered CALL per action, in seconds."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.latencies: dict[str, array[float]] = {}

    def fail(self, counter: str, reason: str) -> None:
        self.counts[counter] += 1
        self.failures[reason] += 1

    def merge(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.failures.update(other.failures)
        for action, samples in other.latencies.items():
            self.latencies.setdefault(action, array("d")).extend(samples)

    @property
    def failed(self) -> int:
        return sum(self.counts[name] for name in FAILURES)


class Station:
    """A simulated station named ``identity``; ``token`` makes its message ids unique across
    runs (a CSMS that remembers answered ids, as ChargeLedger does for retransmissions, must
    never see an old id again with a new payload)."""

    def __init__(
        self,
        identity: str,
        target: Target,
        protocol: str,
        frames: StationFrames,
        token: str,
        call_timeout: float,
        keys: StationKeys,
    ) -> None:
        self.identity = identity
        self.keys = keys
        self.target = target
        self.protocol = protocol
        self.frames = frames
        self.ws: WebSocketClient | None = None
        self._token = token
        self._call_timeout = call_timeout
        self._calls = 0
        self.answer_due = math.inf
        """When the answer to the CALL in flight is overdue (trio clock)."""
        self.responder = Responder(protocol, frames)
        self._follow_ups: list[FollowUp] = []
        """What answered CSMS CALLs lead to, in order, done when idle."""
        self._meter_due = math.inf
        """When a remotely started transaction's next MeterValues is due (trio clock)."""
        self._reboot_when_idle = False
        self._reboot_at = math.inf
        """When an accepted Reset takes the station down (trio clock)."""

    @property
    def connected(self) -> bool:
        return self.ws is not None

    async def connect(self, tally: Tally) -> bool:
        """Open the connection; False (counted) when it fails or is refused."""
        path = f"{self.target.path}/{self.identity}"
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                self.ws = await connect(
                    self.target.address,
                    self.target.port,
                    path,
                    self.protocol,
                    host=self.target.host,
                    ssl_context=self.keys.ssl_context(self.identity),
                    server_hostname=self.keys.credentials.server_name,
                    headers=self.keys.headers(self.identity),
                )
        except trio.TooSlowError:
            tally.fail("connection_failures", f"connect: no handshake within {CONNECT_TIMEOUT} s")
        except HandshakeFailed as exc:
            tally.fail("connection_failures", f"handshake refused: {exc}")
        except (OSError, trio.BrokenResourceError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            tally.fail("connection_failures", f"connect: {reason}")
        else:
            tally.counts["connections"] += 1
            return True
        return False

    async def close(self) -> None:
        """Close the connection (code 1000), if open."""
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.aclose(CLOSE_NORMAL)

    def abort(self, reason: str) -> None:
        """Drop the connection at once (no close handshake), if open."""
        if self.ws is not None:
            ws, self.ws = self.ws, None
            ws.abort(reason)

    async def call(self, kind: str, tally: Tally, *args: Any) -> dict[str, Any] | None:
        """Send the frame ``kind`` (a :class:`StationFrames` method) and wait for its answer.

        Returns the CALLRESULT payload, or None when there is none to use (CALLERROR,
        refusal, timeout, lost connection: each counted, see the module doc)."""
        ws = self.ws
        if ws is None:
            return None
        self._calls += 1
        message_id = f"{self._token}-{self._calls}"
        action, text = getattr(self.frames, kind)(message_id.encode(), *args)
        counts = tally.counts
        counts["sent"] += 1
        started = time.perf_counter()
        self.answer_due = trio.current_time() + self._call_timeout
        try:
            await ws.send_text(text)
            while True:
                answer = await self._answer(ws, message_id, tally)
                if answer is not None:
                    break
        except ConnectionClosed as exc:
            self._lost(exc, action, tally)
            return None
        finally:
            self.answer_due = math.inf
        latency = time.perf_counter() - started
        counts["answered"] += 1
        samples = tally.latencies.get(action)
        if samples is None:
            samples = tally.latencies[action] = array("d")
        samples.append(latency)
        if answer[0] == 4:
            code = answer[2] if len(answer) == 5 else "(malformed)"
            tally.fail("call_errors", f"{action}: CALLERROR {code}")
            return None
        if len(answer) != 3 or type(answer[2]) is not dict:
            tally.fail("protocol_errors", f"{action}: malformed CALLRESULT")
            return None
        payload: dict[str, Any] = answer[2]
        refusal = self.frames.check_answer(kind, payload)
        if refusal is not None:
            tally.fail("rejected", f"{action}: {refusal}")
            return None
        return payload

    def _lost(self, exc: ConnectionClosed, doing: str, tally: Tally) -> None:
        """Count the connection lost while ``doing``: an overdue answer, the CSMS breaking
        the protocol (we closed), or the CSMS or the network closing it."""
        self.ws = None
        if exc.reason == OVERDUE:
            tally.fail("timeouts", f"{doing}: no answer within {self._call_timeout:g} s")
        elif exc.by == "client":
            tally.fail("protocol_errors", f"{doing}: {exc.reason}")
        else:
            tally.fail("connection_failures", f"{doing}: connection {exc}")

    async def _answer(self, ws: WebSocketClient, message_id: str, tally: Tally) -> list[Any] | None:
        """Read one frame: the CALLRESULT/CALLERROR for ``message_id``, or None after dealing
        with anything else (a CSMS CALL is refused, an unexpected frame is counted)."""
        text = await ws.receive_text()
        try:
            frame = _decode(text)
            kind, frame_id = frame[0], frame[1]
        except (msgspec.DecodeError, TypeError, IndexError, KeyError):
            tally.fail("protocol_errors", "unreadable frame from the CSMS")
            return None
        if kind in (3, 4) and frame_id == message_id:
            return frame
        if kind == 2:
            await self._respond(ws, frame, tally)
        else:
            tally.fail("protocol_errors", f"answer to an id we did not send: {frame_id!r}")
        return None

    async def _respond(self, ws: WebSocketClient, frame: Any, tally: Tally) -> None:
        """Answer a CSMS CALL (see :mod:`.responder`); queue what it leads to."""
        tally.counts["csms_calls"] += 1
        if len(frame) == 4 and type(frame[2]) is str:
            text, follow = self.responder.answer(str(frame[1]), frame[2], frame[3])
            self._follow_ups += follow
        else:
            error = [4, str(frame[1]), "ProtocolError", "a CALL has four elements", {}]
            text = msgspec.json.encode(error)
        with trio.CancelScope(shield=True):  # half a frame would corrupt the stream
            await ws.send_text(text)

    async def idle_until(self, deadline: float, tally: Tally) -> None:
        """Stay connected until ``deadline`` (trio clock), answering pings and CSMS CALLs and
        doing what those lead to (:meth:`_follow_up`), and sending a remotely started
        transaction's MeterValues when due; a connection the CSMS closes meanwhile is
        counted."""
        while trio.current_time() < deadline:
            ws = self.ws
            if ws is None:
                await trio.sleep_until(deadline)
                return
            if self._follow_ups:
                await self._follow_up(self._follow_ups.pop(0), tally)
                continue
            now = trio.current_time()
            if self._reboot_at <= now:
                self._reboot_at = math.inf
                await self.reboot(tally)
                continue
            if self._meter_due <= now:
                await self._remote_meter_values(tally)
                continue
            with trio.move_on_at(min(deadline, self._meter_due, self._reboot_at)):
                try:
                    while not self._follow_ups:
                        await self._answer(ws, "", tally)
                except ConnectionClosed as exc:
                    self._lost(exc, "idle", tally)

    async def _follow_up(self, follow: FollowUp, tally: Tally) -> None:
        """Do what an answered CSMS CALL led to."""
        if follow.what == "reboot":
            self._reboot_at = trio.current_time() + REBOOT_SECONDS
        elif follow.what == "reboot_when_idle":
            self._reboot_when_idle = True
        elif follow.kind == "stop":
            await self.stop(tally, *follow.args)
        elif follow.kind == "remote_start_transaction":
            self.responder.starting = False
            started = await self.call(follow.kind, tally, *follow.args) is not None
            if self.frames.transaction is not None:
                if not started:  # the id tag was refused: the station does not charge
                    await self.stop(tally, "local")
                elif self.responder.meter_interval > 0:
                    self._meter_due = trio.current_time()
        else:
            await self.call(follow.kind, tally, *follow.args)

    async def _remote_meter_values(self, tally: Tally) -> None:
        if self.frames.transaction is None:
            self._meter_due = math.inf
            return
        await self.call("meter_values", tally)
        interval = self.responder.meter_interval
        self._meter_due = trio.current_time() + interval if interval > 0 else math.inf

    async def stop(self, tally: Tally, why: str = "local") -> None:
        """End the open transaction, if any (counted in ``transactions`` when answered);
        ``why`` as :meth:`StationFrames.stop_transaction` takes it. A reset scheduled for
        when the station is idle follows."""
        self.responder.stopping = False
        self._meter_due = math.inf
        if (
            self.frames.transaction is not None
            and await self.call("stop_transaction", tally, why) is not None
        ):
            tally.counts["transactions"] += 1
        if self._reboot_when_idle:
            self._reboot_when_idle = False
            await self.reboot(tally)

    async def reboot(self, tally: Tally) -> None:
        """Reset as a station does: end the open transaction, close the connection, connect
        again, boot (BootNotification) and report the connector Available."""
        self._reboot_when_idle = False
        await self.stop(tally, "reset")
        await self.close()
        if await self.connect(tally) and await self.call("boot", tally) is not None:
            await self.call("status_notification", tally, "Available")

    async def idle_until_set(self, event: trio.Event, tally: Tally) -> None:
        """:meth:`idle_until` the ``event`` is set."""
        async with trio.open_nursery() as nursery:

            async def stop_idling() -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_idling)
            await self.idle_until(math.inf, tally)


async def expire_overdue_calls(stations: list[Station], call_timeout: float) -> None:
    """Forever: drop the connection of every station whose answer is overdue, checking a
    few times per ``call_timeout`` (so a timeout fires up to a quarter of it late)."""
    period = min(1.0, call_timeout / 4)
    while True:
        await trio.sleep(period)
        now = trio.current_time()
        for station in stations:
            if station.answer_due < now and station.ws is not None:
                station.ws.abort(OVERDUE)  # the station's call() counts the timeout
