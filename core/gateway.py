"""The gateway: the WebSocket accept loop and one session per station connection.

Failure containment, in one place:

* Each connection runs in its own handler; any exception in it (a bad handshake, a peer that
  vanishes mid-frame, a bug in a plugin) is logged and recorded, closes that connection only,
  and never reaches the accept loop. That is why we own the accept loop
  (``trio.serve_tcp`` + ``wrap_server_stream``) instead of ``trio_websocket.serve_websocket``,
  whose handler errors end the whole server.
* A station CALL is answered only after the CALL and its answer are committed. When the store
  fails, the session is closed (1011) without answering: nothing unrecorded is acknowledged.
* A CALL we send is committed before it leaves; it waits at most ``call_timeout`` for its
  answer; the timeout is recorded; a late or unknown CALLRESULT is recorded and ignored.

Limits, so that no peer can exhaust the server (each a setting, each in the metrics through
:meth:`Gateway.statistics`; docs/operations.md, "Limits"):

* a connection must complete its upgrade (TLS included) within ``handshake_timeout``; one
  whose peer leaves mid-handshake is released at once, not at the deadline;
* ``max_connections``, ``max_connections_per_address`` and ``max_handshakes`` (in flight):
  beyond any of them a new connection is answered 503 with Retry-After and recorded
  (``HandshakeRejected``), before any handshake work;
* ``max_frames_per_second`` and ``max_pings_per_second`` per station: a flood is closed with
  1008 (recorded in ``SessionClosed``);
* the retransmission memory (:class:`~chargeledger.core.decide.RetransmissionMemory`),
  bounded per station and in total, released for stations gone ``retransmission_release_after``;
* frames we send are at most ``max_frame_bytes`` (``CallTooLarge``: nothing sent).
"""

from __future__ import annotations

import base64
import heapq
import itertools
import logging
import re
import resource
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import unquote

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, Ping
from wsproto.frame_protocol import MessageDecoder
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from chargeledger.core.allocator import TransactionIdAllocator
from chargeledger.core.commands import Command
from chargeledger.core.decide import (
    Answered,
    Retransmission,
    RetransmissionMemory,
    decide_call,
    error_text,
    reply_text,
)
from chargeledger.core.errors import (
    CallError,
    CallTimeout,
    CallTooLarge,
    FrameError,
    SessionFenced,
    StationBusy,
    StationOffline,
    StoreUnavailable,
)
from chargeledger.core.events import (
    CallTimedOut,
    FrameLogged,
    HandshakeRejected,
    Recorded,
    SessionClosed,
    SessionOpened,
    session_stream,
)
from chargeledger.core.frames import (
    Call,
    CallResult,
    encode_call,
    parse_frame,
    to_wire,
)
from chargeledger.core.nodes import Nodes
from chargeledger.core.ocsp import check_certificates
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.security import Admitted, Refused, admit, server_ssl_context, transport_of
from chargeledger.core.settings import Settings
from chargeledger.core.writer import GroupCommitWriter
from chargeledger.projections import Credentials, Views
from chargeledger.schemas import OCPP16, OCPP201

__all__ = [
    "Gateway",
    "GatewayStatistics",
    "OutboundCall",
    "RateLimit",
    "Session",
    "connection_limit",
    "station_identity",
]

log = logging.getLogger("chargeledger.gateway")

SUBPROTOCOL_PREFERENCE = (OCPP201, OCPP16)
"""When a station offers several versions we speak, the newest wins."""

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_NO_STATUS = 1006
CLOSE_SERVICE_RESTART = 1012
"""Drain (``chargeledger drain``, SIGTERM): "service restart", reconnect (IANA-registered)."""


CLOSE_HANDSHAKE_TIMEOUT = 1.0
"""How long we wait for the peer's close frame; a dead peer never sends one."""

RESERVED_DESCRIPTORS = 256
"""File descriptors kept out of ``max_connections``'s default for the store, the HTTP API,
logs and the process's other files."""

REFUSAL_READ_TIMEOUT = 0.5
"""How long a connection refused for a limit may take to send its request before the 503
(read and discarded so that closing does not reset the connection under the answer)."""

PASSWORD_CHECKS = 2
"""Password checks run at once (each takes about 25 ms of CPU and 19 MiB: argon2id)."""

BASIC_CHALLENGE = b'Basic realm="ChargeLedger", charset="UTF-8"'

MAX_REFUSALS = 64
"""Refusals answered at once; beyond, a refused connection is closed without an answer, so
that answering a flood never holds more than this many descriptors."""


def _address(endpoint: object) -> str:
    """``host:port`` of a trio-websocket endpoint (its repr is not meant for logs)."""
    address, port = getattr(endpoint, "address", None), getattr(endpoint, "port", None)
    return f"{address}:{port}" if address is not None else str(endpoint)


MAX_IDENTITY_LENGTH = 48
"""The longest station identity we accept, in characters: OCPP's identifierString(48)."""

IDENTITY_CHARACTERS = "a-z A-Z 0-9 * - _ = : + | @ ."
"""The characters a station identity may hold once percent-decoded: OCPP 2.0.1's
identifierString (part 2, 2.1.1), which the 1.6 security whitepaper also requires of a
Charge Point identity used as the Basic-auth user name."""

_IDENTITY = re.compile(r"[a-zA-Z0-9*\-_=:+|@.]*")


def station_identity(path: str) -> str:
    """The station identity: the last non-empty segment of the URL path, percent-decoded.

    The path is split on ``/`` before decoding, so an escaped slash belongs to the identity
    (``/ocpp/CP%2F01`` -> ``CP/01``); ``+`` is a literal plus, not a space (``unquote``, not
    ``unquote_plus``); a ``%`` not followed by two hex digits stays as it is; the query string
    is ignored. Empty when there is no segment. Raises ``UnicodeDecodeError`` when the escapes
    do not decode as UTF-8 (``/ocpp/%FF``): such an identity is refused, never mangled into
    U+FFFD. The length limit is the handshake's to enforce (``MAX_IDENTITY_LENGTH``)."""
    path = path.split("?", 1)[0]
    segments = [segment for segment in path.split("/") if segment]
    return unquote(segments[-1], errors="strict") if segments else ""


def _identity_problem(path: str) -> tuple[str, str]:
    """The station identity in ``path`` and why it is refused (empty when it is acceptable).

    The identity comes back empty when it cannot be decoded, so nothing mangled is recorded;
    refused are: no identity, one longer than ``MAX_IDENTITY_LENGTH`` characters, one with a
    character outside ``IDENTITY_CHARACTERS`` (checked in this order)."""
    try:
        station = station_identity(path)
    except UnicodeDecodeError:
        return "", "the station identity in the URL path is not valid UTF-8 once percent-decoded"
    if not station:
        return "", "no station identity in the URL path"
    if len(station) > MAX_IDENTITY_LENGTH:
        return station, (
            f"the station identity is {len(station)} characters long;"
            f" at most {MAX_IDENTITY_LENGTH} are allowed"
        )
    if not _IDENTITY.fullmatch(station):
        outside = "".join(dict.fromkeys(c for c in station if not _IDENTITY.fullmatch(c)))
        return station, (
            f"the station identity holds characters outside {IDENTITY_CHARACTERS}: {outside!r}"
        )
    return station, ""


def connection_limit(settings: Settings) -> int:
    """The effective ``max_connections``: as set, or (0) the process's soft open-file limit
    less ``RESERVED_DESCRIPTORS`` (at least 1)."""
    if settings.max_connections > 0:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - RESERVED_DESCRIPTORS)


class RateLimit:
    """A token bucket: ``rate`` events per second on average, bursts of ``rate`` (at least
    one); a rate of 0 allows everything. Times are ``trio.current_time()``."""

    __slots__ = ("_stamp", "_tokens", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = max(rate, 1.0)
        self._stamp = trio.current_time()

    def allow(self) -> bool:
        """Take one event: whether it is within the rate."""
        if self.rate <= 0:
            return True
        now = trio.current_time()
        self._tokens = min(max(self.rate, 1.0), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class _LenientTextDecoder(MessageDecoder):
    """wsproto's message decoder, but a text message that is not UTF-8 is decoded with
    ``surrogateescape`` instead of failing the connection (wsproto turns that failure into a
    1007 close, and the bytes are gone). :meth:`Session._read_frames` recognises such text by
    its lone surrogates, recovers the exact bytes and records them before closing with 1007.
    wsproto sets ``decoder`` (an incremental UTF-8 decoder) for each text message; its
    ``errors`` attribute is read on every decode."""

    @property
    def decoder(self) -> Any:
        return self._lenient

    @decoder.setter
    def decoder(self, value: Any) -> None:
        if value is not None:
            value.errors = "surrogateescape"
        self._lenient = value


_SPENT_HANDSHAKE = H11Handshake(ConnectionType.SERVER)
"""What an upgraded connection's wsproto side keeps as its handshake: nothing to read."""


class _StationWire(WSConnection):
    """The wsproto side of one station connection: notes why wsproto refused the opening
    request (``refused``: trio-websocket answers that 400 itself, before our handshake code
    runs), counts the pings the station sends (``on_ping`` is called for each, from
    trio-websocket's reader task) and, once upgraded, decodes text with
    :class:`_LenientTextDecoder`."""

    def __init__(self) -> None:
        super().__init__(ConnectionType.SERVER)
        self.on_ping: Callable[[], None] | None = None
        self.refused = ""

    def receive_data(self, data: bytes | None) -> None:
        try:
            super().receive_data(data)
        except RemoteProtocolError as exc:
            if self.connection is None:
                self.refused = str(exc) or type(exc).__name__
            raise

    def send(self, event: Event) -> bytes:
        data = super().send(event)
        if isinstance(event, AcceptConnection) and self.connection is not None:
            # Upgraded: the handshake (its h11 connection, buffers and the request's
            # headers, about 3 KiB) is not used again; one spent handshake stands in for all.
            if not getattr(self.handshake, "_events", True):  # nothing of it left to read
                self.handshake = _SPENT_HANDSHAKE
            # wsproto keeps its decoders private: replace the message decoder where it is
            # (wsproto 1.x), or keep wsproto's behaviour (an unrecorded 1007) and say so.
            frames = getattr(self.connection, "_proto", None)
            if isinstance(getattr(frames, "_message_decoder", None), MessageDecoder):
                frames._message_decoder = _LenientTextDecoder()  # type: ignore[union-attr]
            else:
                log.warning("this wsproto cannot be told to keep text that is not UTF-8")
        return data

    def events(self) -> Iterator[Event]:  # type: ignore[override]
        for event in super().events():
            if isinstance(event, Ping) and self.on_ping is not None:
                self.on_ping()
            yield event


def _not_utf8(text: str) -> bytes | None:
    """The bytes a text message arrived as when they are not UTF-8 (decoded by
    :class:`_LenientTextDecoder`, they hold lone surrogates); ``None`` for proper text."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return None


def _peer_host(stream: trio.abc.Stream) -> str:
    """The remote address of a plain or TLS socket stream ("" when it has none)."""
    transport = getattr(stream, "transport_stream", stream)
    sock = getattr(transport, "socket", None)
    try:
        return str(sock.getpeername()[0]) if sock is not None else ""
    except OSError:
        return ""


_REQUEST_LINE = re.compile(rb"GET (\S+) HTTP/")


def _busy_response(reason: str, retry_after: int) -> bytes:
    body = reason.encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        + f"Retry-After: {retry_after}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        + body
    )


@dataclass(frozen=True)
class GatewayStatistics:
    """The gateway's limits, what they hold now and what they refused (for metrics)."""

    connections: int
    """Connections held now, handshakes included."""
    handshakes: int
    """Handshakes in flight now."""
    limits: dict[str, float]
    """Each limit's effective value, by setting name."""
    refused: dict[str, int]
    """Connections answered 503, by the limit that refused them (``max_connections``,
    ``max_connections_per_address``, ``max_handshakes``)."""
    handshakes_timed_out: int
    """Connections closed at ``handshake_timeout`` before their upgrade."""
    handshakes_abandoned: int
    """Connections whose peer left (or broke the stream) before the upgrade."""
    floods: dict[str, int]
    """Sessions closed with 1008 for a flood, by kind (``frames``, ``pings``)."""
    retransmission_bytes: int
    """What the retransmission memory costs now (at most its total limit)."""
    retransmission_stations: int
    retransmission_calls: int
    retransmission_dropped: int
    """Station windows dropped to stay within the total (idle releases not counted)."""


class OutboundCall:
    """A CALL to a station, waiting in the station's queue or for its answer; ``text`` is
    the frame as it will be recorded and sent."""

    def __init__(self, action: str, payload: dict[str, Any]) -> None:
        self.action = action
        self.payload = payload
        self.message_id = str(uuid.uuid4())
        self.text = encode_call(self.message_id, action, payload)
        self._done = trio.Event()
        self.result: dict[str, Any] | None = None
        self.error: Exception | None = None

    def resolve(self, result: dict[str, Any] | None, error: Exception | None = None) -> None:
        if not self._done.is_set():
            self.result, self.error = result, error
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> dict[str, Any]:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Session:
    """One accepted WebSocket connection of one station.

    The session task is the only writer of its stream. It reads frames one at a time (a
    station may have one CALL outstanding, so answering in order costs nothing), sends our
    CALLs from a queue one at a time, and pings the station to detect a dead peer. Whatever
    ends it (the peer, a ping timeout, a newer connection, the store, shutdown), it records
    exactly one ``SessionClosed``.

    An idle session costs one task (its reader) besides trio-websocket's: the queue of our
    CALLs and the task that sends them are made by the first CALL (most stations get none
    between two boots), and the pings are timed by the gateway's one keepalive task, which
    starts a task in the session only for the round trip of each ping (docs/performance.md).
    """

    __slots__ = (
        "_frames",
        "_nursery",
        "_pings",
        "answering",
        "cancel_scope",
        "close_cause",
        "closed",
        "fenced",
        "gateway",
        "id",
        "in_flight",
        "outbound_receive",
        "outbound_send",
        "protocol",
        "station",
        "stream",
        "ws",
    )

    def __init__(
        self,
        gateway: Gateway,
        ws: WebSocketConnection,
        station: str,
        protocol: str,
        wire: _StationWire | None = None,
    ) -> None:
        self.gateway = gateway
        self.ws = ws
        self.station = station
        self.protocol = protocol
        settings = gateway.settings
        self._frames = RateLimit(settings.max_frames_per_second)
        self._pings = RateLimit(settings.max_pings_per_second)
        if wire is not None:
            wire.on_ping = self._pinged
        self.id = str(uuid.uuid4())
        self.stream = session_stream(self.id)
        self.outbound_send: trio.MemorySendChannel[OutboundCall] | None = None
        self.outbound_receive: trio.MemoryReceiveChannel[OutboundCall] | None = None
        """The queue of our CALLs, made by the first one (``enqueue``)."""
        self._nursery: trio.Nursery | None = None
        """The session's tasks, while it runs: where the CALL sender and pings start."""
        self.closed = False
        """The session has ended: it takes no more CALLs and is due no more pings."""
        self.in_flight: OutboundCall | None = None
        self.answering = False
        """A frame of the station is being handled (recorded, decided, answered): a drain
        waits for that before it closes the session."""
        self.cancel_scope = trio.CancelScope()
        # Why the session ended, when we ended it: (close code, reason, replaced_by).
        self.close_cause: tuple[int, str, str | None] | None = None
        self.fenced = False
        """Another node closed this session in the log (took the station over, or released
        it): nothing more is recorded for it, its close included (docs/cluster.md)."""

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; never raises except Cancelled.

        A commit that fails (``StoreUnavailable`` from any of the session's tasks) closes the
        connection with 1011 "event store unavailable", whatever else failed with it; any other
        exception closes it with 1011 "internal error" unless a cause was already set. The
        session's tasks run in a nursery, so their exceptions arrive as an exception group:
        hence ``except*``."""
        try:
            with self.cancel_scope:
                try:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        if self.outbound_receive is not None:  # a CALL came before we ran
                            nursery.start_soon(self._send_calls)
                        self.gateway.keepalive.schedule(self)
                        await self._read_frames()
                        nursery.cancel_scope.cancel()
                finally:
                    self._nursery = None  # closed: nothing more may start in it
        except* SessionFenced:
            log.warning("session of %s was closed by another node: closing", self.station)
            self.fence("session closed by another node")
        except* StoreUnavailable:
            log.error("store failed; closing session of %s", self.station)
            self.close_cause = (CLOSE_INTERNAL_ERROR, "event store unavailable", None)
        except* Exception:
            log.exception("session of %s failed", self.station)
            self.close_cause = self.close_cause or (CLOSE_INTERNAL_ERROR, "internal error", None)
        finally:
            with trio.CancelScope(shield=True):
                await self._finish()

    def end(self, code: int, reason: str, replaced_by: str | None = None) -> None:
        """Ask the session to close with ``code`` and ``reason`` (recorded)."""
        if self.close_cause is None:
            self.close_cause = (code, reason, replaced_by)
        self.cancel_scope.cancel()

    def fence(self, reason: str) -> None:
        """Close the session that another node closed in the log (its close is recorded
        there already: nothing is recorded here)."""
        self.fenced = True
        self.end(CLOSE_POLICY, reason)

    @property
    def queued(self) -> int:
        """How many of our CALLs wait in the queue (the one in flight not counted)."""
        send = self.outbound_send
        return 0 if send is None else send.statistics().current_buffer_used

    def enqueue(self, call: OutboundCall) -> None:
        """Queue ``call`` to be sent after those before it; the first CALL makes the queue
        and the task that sends them. ``trio.WouldBlock`` when the queue is full,
        ``trio.ClosedResourceError`` when the session has ended."""
        if self.closed:
            raise trio.ClosedResourceError
        if self.outbound_send is None:
            self.outbound_send, self.outbound_receive = trio.open_memory_channel[OutboundCall](
                self.gateway.settings.outbound_queue
            )
            if self._nursery is not None:  # else ``run`` starts it
                self._nursery.start_soon(self._send_calls)
        self.outbound_send.send_nowait(call)

    async def _finish(self) -> None:
        self.closed = True
        if self.outbound_send is not None:
            self.outbound_send.close()
        if self.in_flight is not None:
            self.in_flight.resolve(None, self._gone(self.in_flight))
        while self.outbound_receive is not None:
            try:
                queued = self.outbound_receive.receive_nowait()
                queued.resolve(None, self._gone(queued))
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        by: Literal["station", "csms"]
        if self.close_cause is None and self.ws.closed is None:
            # Nobody closed the connection: we were cancelled, i.e. the server is stopping.
            self.close_cause = (CLOSE_GOING_AWAY, "server shutting down", None)
        if self.close_cause is not None:
            code, reason, replaced_by = self.close_cause
            by = "csms"
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await self.ws.aclose(code, reason)
        else:
            closed = self.ws.closed
            code = closed.code if closed is not None else CLOSE_NO_STATUS
            reason = (closed.reason or "") if closed is not None else ""
            replaced_by, by = None, "station"
            if code == CLOSE_MESSAGE_TOO_BIG:  # trio-websocket closed it for us
                reason, by = (
                    f"frame larger than {self.gateway.settings.max_frame_bytes} bytes",
                    "csms",
                )
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await self.ws.aclose()
        self.gateway.forget(self)
        if self.fenced:
            log.info(
                "session %s of %s closed (%s): recorded by another node",
                self.id,
                self.station,
                reason,
            )
            return
        event = SessionClosed(
            station=self.station,
            session=self.id,
            at=time.time(),
            code=code,
            reason=reason,
            by=by,
            replaced_by=replaced_by,
        )
        try:
            with trio.move_on_after(10):
                await self.gateway.writer.append([(self.stream, event)])
        except SessionFenced:
            log.info(
                "the close of %s's session %s was recorded by another node", self.station, self.id
            )
        except StoreUnavailable:
            log.error("could not record the close of %s's session", self.station)

    def ping(self) -> None:
        """The keepalive's call when a ping is due: ping in a task of the session (which
        lives for the round trip only); the next ping is due ``ping_interval`` after the
        pong."""
        if self._nursery is not None and not self.closed:
            self._nursery.start_soon(self._ping)

    async def _ping(self) -> None:
        with trio.move_on_after(self.gateway.settings.ping_timeout) as scope:
            try:
                await self.ws.ping()
            except ConnectionClosed:
                return  # the reader sees the close too and ends the session
        if scope.cancelled_caught:
            self.end(CLOSE_GOING_AWAY, "no pong: dead peer")
            return
        self.gateway.keepalive.schedule(self)

    # -- frames from the station ---------------------------------------------------------

    async def _log(self, *frames: FrameLogged | CallTimedOut) -> list[Recorded]:
        return await self.gateway.writer.append([(self.stream, frame) for frame in frames])

    def _frame(self, direction: str, text: str, note: str | None = None) -> FrameLogged:
        return FrameLogged(
            station=self.station,
            session=self.id,
            at=time.time(),
            direction="in" if direction == "in" else "out",
            text=text,
            note=note,
        )

    def _pinged(self) -> None:
        """A ping from the station (called by the reader task): a flood ends the session."""
        if not self._pings.allow():
            self._flood("pings", self.gateway.settings.max_pings_per_second)

    def _flood(self, kind: str, rate: float) -> None:
        if self.close_cause is None:  # counted once, however long the flood goes on
            self.gateway._floods[kind] += 1
        self.end(CLOSE_POLICY, f"more than {rate:g} {kind} per second")

    async def _read_frames(self) -> None:
        """Read and handle frames until the connection ends or the session must close.

        Every frame is recorded, even one that ends the session: beyond the frame rate
        (note ``rate-limited``, 1008), a binary one (``binary``, 1003), a text frame that is
        not UTF-8 (its bytes in ``binary``, note ``invalid-utf8``, 1007)."""
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                return
            raw = message if isinstance(message, bytes) else _not_utf8(message)
            if not self._frames.allow():
                await self._log(self._received(message, raw, "rate-limited"))
                self._flood("frames", self.gateway.settings.max_frames_per_second)
                return
            if raw is not None:
                await self._log(self._received(message, raw, None))
                if isinstance(message, bytes):
                    self.end(CLOSE_UNSUPPORTED_DATA, "OCPP-J uses text frames only")
                else:
                    self.end(CLOSE_INVALID_PAYLOAD, "a text frame that is not UTF-8")
                return
            assert isinstance(message, str)
            self.answering = True
            await self._handle_text(message)
            self.answering = False

    def _received(self, message: str | bytes, raw: bytes | None, note: str | None) -> FrameLogged:
        """The record of an inbound frame: its text, or when it has no text (binary, or not
        UTF-8) its bytes in base64 (note ``binary`` or ``invalid-utf8`` unless ``note``)."""
        if raw is None:
            assert isinstance(message, str)
            return self._frame("in", message, note)
        default = "binary" if isinstance(message, bytes) else "invalid-utf8"
        return FrameLogged(
            station=self.station,
            session=self.id,
            at=time.time(),
            direction="in",
            text="",
            binary=base64.b64encode(raw).decode(),
            note=note or default,
        )

    async def _handle_text(self, text: str) -> None:
        inbound = self._frame("in", text)
        try:
            frame = parse_frame(text, self.protocol)
        except FrameError as exc:
            await self._answer(inbound, exc.message_id, self._error_text(exc), "malformed")
            return
        if isinstance(frame, Call):
            await self._handle_call(inbound, frame)
            return
        call = self.in_flight
        if call is not None and frame.message_id == call.message_id:
            await self._log(inbound)
            if isinstance(frame, CallResult):
                call.resolve(frame.payload)
            else:
                error = CallError(
                    frame.code,
                    frame.description,
                    frame.details,
                    station=self.station,
                    action=call.action,
                )
                call.resolve(None, error)
        else:
            await self._log(
                FrameLogged(
                    station=inbound.station,
                    session=inbound.session,
                    at=inbound.at,
                    direction="in",
                    text=text,
                    note="unmatched-result",
                )
            )

    async def _handle_call(self, inbound: FrameLogged, frame: Call) -> None:
        gateway = self.gateway
        answered = gateway.answered(self.station)
        if answered.classify(inbound.text, frame, self.id) is Retransmission.NEW:
            # Plug & Charge: the OCSP checks it needs, made and recorded before it is decided.
            await check_certificates(
                gateway.plugins,
                gateway.views,
                gateway.writer,
                frame,
                station=self.station,
                session=self.id,
                protocol=self.protocol,
                at=inbound.at,
                node=gateway.settings.node,
            )
        decision = decide_call(
            answered,
            gateway.plugins,
            gateway.views,
            frame,
            inbound.text,
            station=self.station,
            session=self.id,
            protocol=self.protocol,
            at=inbound.at,
        )
        transaction_id = None
        if decision.needs_transaction_id:
            transaction_id = await gateway.allocator.allocate()
        reply = reply_text(self.protocol, frame, decision.answer, transaction_id)
        limit = gateway.settings.max_frame_bytes
        if len(reply.encode()) > limit:
            log.error("withheld a %s answer over %d bytes to %s", frame.action, limit, self.station)
            oversize = FrameError(frame.message_id, "InternalError", "answer too large withheld")
            reply = self._error_text(oversize)
        await self._answer(inbound, frame.message_id, reply, decision.note)
        if decision.note is not None:  # answered by the core: nothing to remember or do
            return
        answered.remember(frame.message_id, inbound.text, reply, self.id)
        gateway.execute(decision.later)

    def _error_text(self, error: FrameError) -> str:
        return error_text(self.protocol, error)

    async def _answer(
        self, inbound: FrameLogged, message_id: str, reply: str, note: str | None
    ) -> None:
        """Commit the inbound frame and our reply, then send the reply."""
        if note is not None:
            inbound = msgspec.structs.replace(inbound, note=note)
        outbound = self._frame("out", reply, note)
        await self._log(inbound, outbound)
        try:
            await self.ws.send_message(reply)
        except ConnectionClosed:
            # Committed but not delivered: the station retransmits and gets the same answer.
            log.info("%s left before its answer to %s was sent", self.station, message_id)

    # -- our CALLs to the station ------------------------------------------------------------

    async def _send_calls(self) -> None:
        timeout = self.gateway.settings.call_timeout
        assert self.outbound_receive is not None
        async for call in self.outbound_receive:
            if call.done:  # the caller gave up while it was queued
                continue
            text = call.text
            # In flight from here: a session that ends while the frame is being recorded (the
            # station left, the server stops) resolves it (``_finish``) and tells its caller,
            # who would otherwise wait forever; a drain sees it outstanding.
            self.in_flight = call
            try:
                await self._log(self._frame("out", text))
            except SessionFenced:
                # Nothing was sent; another node holds the station now.
                call.resolve(None, self._gone(call, "session closed by another node"))
                raise
            except StoreUnavailable as exc:
                call.resolve(None, exc)  # nothing was sent; the session ends with 1011
                raise
            try:
                await self.ws.send_message(text)
            except ConnectionClosed:
                call.resolve(None, self._gone(call))
                return
            with trio.move_on_after(timeout):
                await call._done.wait()
            self.in_flight = None
            if not call.done:
                await self._log(
                    CallTimedOut(
                        station=self.station,
                        session=self.id,
                        at=time.time(),
                        message_id=call.message_id,
                        action=call.action,
                    )
                )
                call.resolve(
                    None, CallTimeout(station=self.station, action=call.action, timeout=timeout)
                )

    def _gone(
        self, call: OutboundCall, reason: str = "disconnected before answering"
    ) -> StationOffline:
        """The error of ``call`` when the connection ended before it was answered."""
        return StationOffline(station=self.station, action=call.action, reason=reason)


class Keepalive:
    """The gateway's one keepalive timer: pings every session ``interval`` seconds after it
    opened or answered its last ping, from a heap of deadlines, instead of a task per
    session sleeping between pings. An interval of 0 (or less) pings nobody."""

    __slots__ = ("_due", "_kept", "_order", "_wakeup", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._due: list[tuple[float, int, Session]] = []
        self._order = itertools.count()  # ties in time: first scheduled, first pinged
        self._wakeup = trio.Event()
        self._kept = 0
        """The heap's size after it was last cleared of ended sessions."""

    def __len__(self) -> int:
        """Pings due (entries of sessions that ended meanwhile included)."""
        return len(self._due)

    def schedule(self, session: Session) -> None:
        """Ping ``session`` ``interval`` seconds from now."""
        if self.interval <= 0:
            return
        at = trio.current_time() + self.interval
        if not self._due or at < self._due[0][0]:
            self._wakeup.set()
        heapq.heappush(self._due, (at, next(self._order), session))
        if len(self._due) > 2 * self._kept + 1024:
            # Ended sessions wait in the heap until they fall due: under a reconnect storm
            # drop them sooner, so that the heap holds them at most twice over.
            self._due = [entry for entry in self._due if not entry[2].closed]
            heapq.heapify(self._due)
            self._kept = len(self._due)

    async def run(self) -> None:
        """Start the pings as they fall due, until cancelled."""
        while True:
            self._wakeup = trio.Event()
            if not self._due:
                await self._wakeup.wait()
                continue
            at = self._due[0][0]
            if at > trio.current_time():
                with trio.move_on_at(at):
                    await self._wakeup.wait()  # an earlier deadline came meanwhile
                continue
            _, _, session = heapq.heappop(self._due)
            session.ping()  # a session that ended meanwhile is skipped (and dropped)


class Gateway:
    """Accepts station connections and routes CALLs to their current session.

    The newest connection of a station wins: a new handshake closes the old session (recorded
    with ``replaced_by``) before the new one is recorded as opened.
    """

    def __init__(
        self,
        settings: Settings,
        writer: GroupCommitWriter,
        allocator: TransactionIdAllocator,
        plugins: PluginHost,
        views: Views,
        execute: Callable[[Sequence[Command]], None],
        nodes: Nodes | None = None,
    ) -> None:
        self.settings = settings
        self.nodes = nodes
        """With a PostgreSQL store: records which node holds each station, fences the
        sessions other nodes take over (docs/cluster.md); ``None`` alone."""
        if nodes is not None:
            nodes.on_fenced = self._fenced
        self.writer = writer
        self.allocator = allocator
        self.plugins = plugins
        self.views = views
        self.execute = execute
        """Queues the commands a plugin returns besides its answer (the commit dispatcher's)."""
        self.node = settings.node
        self.sessions: dict[str, Session] = {}
        self.keepalive = Keepalive(settings.ping_interval)
        """Times every session's pings (one task: ``serve`` runs it)."""
        self.retransmission = RetransmissionMemory(
            calls=settings.retransmission_calls,
            station_bytes=settings.retransmission_station_bytes,
            total_bytes=settings.retransmission_total_bytes,
        )
        """Every station's retransmission window (see ``answered``)."""
        self._nursery: trio.Nursery | None = None
        self.listen_port: int | None = None
        self._max_connections = connection_limit(settings)
        self._connections = 0
        self._per_address: Counter[str] = Counter()
        self._handshakes = 0
        self._refusing = 0
        self._refused: Counter[str] = Counter()
        self._timed_out = self._abandoned = 0
        self._floods: Counter[str] = Counter()
        self.tls_port: int | None = None
        """The bound ``wss://`` port (``None`` without ``settings.tls``)."""
        self._password_checks = trio.CapacityLimiter(PASSWORD_CHECKS)
        self.draining = False
        """Set by :meth:`stop_accepting`: the listeners are closed, readiness is false."""
        self._accepting = trio.CancelScope()

    # -- serving -----------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``settings.host:port`` until cancelled; ``task_status`` gets the port.

        With ``settings.tls``, ``wss://`` is served on ``tls.port`` (``tls_port`` holds the
        bound one), or instead of ``ws://`` on ``port`` when ``tls.port`` is ``None``. Every
        connection, plain or TLS, goes through ``_handle_connection`` (the limits, and the
        handshake deadline, TLS included). ``OSError`` / ``ssl.SSLError`` when a certificate or
        key file cannot be loaded.

        On cancellation every session is closed with 1001 (going away) and recorded."""
        tls = self.settings.tls
        context = server_ssl_context(tls) if tls is not None else None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._release_idle_windows)
            nursery.start_soon(self.keepalive.run)
            plain = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host)
            self.listen_port = plain[0].socket.getsockname()[1]
            listeners: list[trio.abc.Listener[Any]] = []
            if context is not None and tls is not None:
                tcp = plain
                if tls.port is not None:
                    tcp = await trio.open_tcp_listeners(tls.port, host=self.settings.host)
                    listeners.extend(plain)
                listeners.extend(
                    trio.SSLListener(each, context, https_compatible=True) for each in tcp
                )
                self.tls_port = tcp[0].socket.getsockname()[1]
            else:
                listeners.extend(plain)
            task_status.started(self.listen_port)
            with self._accepting:  # serve_listeners closes the listeners when cancelled
                await trio.serve_listeners(
                    self._handle_connection, listeners, handler_nursery=nursery
                )

    def stop_accepting(self) -> None:
        """The first step of a drain (``chargeledger.core.drain``): close the listening
        sockets, so new connections are refused by the operating system and a load balancer
        sends them to other nodes, and mark the node ``draining`` (readiness false). The
        sessions already open go on until they are closed."""
        self.draining = True
        self._accepting.cancel()

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted connection: refuse it for a limit, upgrade it within
        ``handshake_timeout``, run its session; close it whatever happens.

        Never raises (but Cancelled): any failure is logged and closes this connection only.
        """
        address = _peer_host(stream)
        limit = self._over_limit(address)
        if limit is not None:
            await self._refuse(stream, address, limit)
            return
        self._connections += 1
        self._per_address[address] += 1
        try:
            async with trio.open_nursery() as nursery:
                upgraded = await self._upgrade(nursery, stream, address)
                if upgraded is not None:
                    await self._run_session(*upgraded)
                nursery.cancel_scope.cancel()
        except Exception:
            # Contained: one broken connection never takes the server down.
            log.exception("connection handler failed")
        finally:
            self._connections -= 1
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    def _over_limit(self, address: str) -> str | None:
        """The setting whose limit a new connection from ``address`` would exceed."""
        settings = self.settings
        if self._connections >= self._max_connections:
            return "max_connections"
        per_address = settings.max_connections_per_address
        if per_address > 0 and self._per_address[address] >= per_address:
            return "max_connections_per_address"
        if self._handshakes >= settings.max_handshakes:
            return "max_handshakes"
        return None

    async def _refuse(self, stream: trio.abc.Stream, address: str, limit: str) -> None:
        """Answer 503 with Retry-After, close, and record the refusal. A TLS connection is
        closed before its TLS handshake (which is what the limit spares), and so is any
        connection while ``MAX_REFUSALS`` others are being answered."""
        self._refused[limit] += 1
        reason = f"server busy ({limit} reached); retry later"
        path = ""
        self._refusing += 1
        try:
            if isinstance(stream, trio.SSLStream) or self._refusing > MAX_REFUSALS:
                await trio.aclose_forcefully(stream)
            else:
                with trio.move_on_after(REFUSAL_READ_TIMEOUT):
                    found = _REQUEST_LINE.match(await stream.receive_some(65536))
                    path = found[1].decode("latin-1") if found else ""
                with trio.move_on_after(REFUSAL_READ_TIMEOUT):
                    await stream.send_all(_busy_response(reason, self.settings.busy_retry_after))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._refusing -= 1
            await trio.aclose_forcefully(stream)
        await self._record_rejection(address, 503, reason, path=path)

    async def _record_rejection(
        self,
        remote: str,
        status: int,
        reason: str,
        *,
        station: str = "",
        path: str = "",
        offered: Sequence[str] = (),
        cause: str = "",
        fingerprint: str | None = None,
    ) -> None:
        """Record a refused connection as ``HandshakeRejected`` in the stream of a fresh
        session id (``station`` empty when it was refused before its identity was known). A
        store failure is logged: the connection is refused anyway."""
        session = str(uuid.uuid4())
        refusal = HandshakeRejected(
            station=station,
            session=session,
            at=time.time(),
            path=path,
            offered=list(offered),
            remote=remote,
            status=status,
            reason=reason,
            cause=cause,
            tls_fingerprint=fingerprint,
        )
        try:
            await self.writer.append([(session_stream(session), refusal)], new_stream=True)
        except StoreUnavailable as exc:
            log.warning("refusal of %s not recorded: %s", remote or station, exc)

    async def _upgrade(
        self, nursery: trio.Nursery, stream: trio.abc.Stream, address: str
    ) -> tuple[WebSocketConnection, str, str, list[str], Admitted, str | None, _StationWire] | None:
        """The opening handshake of a connection from ``address``, TLS included, within
        ``handshake_timeout``: what ``_handshake`` accepted (and our wsproto side), or
        ``None`` when it refused, wsproto refused the request (recorded here), the deadline
        passed, or the peer left (released at once, not at the deadline).

        Does what ``trio_websocket.wrap_server_stream`` does (its two private calls
        included, trio-websocket 0.12), with our wsproto side and a reader task whose end
        before the upgrade ends the wait: trio-websocket would wait for the request forever,
        even after the peer's EOF."""
        self._handshakes += 1
        wire = _StationWire()
        peer_gone = trio.CancelScope()
        try:
            with trio.move_on_after(self.settings.handshake_timeout) as deadline:
                if isinstance(stream, trio.SSLStream) and not await self._tls_handshake(
                    stream, address
                ):
                    return None
                connection = WebSocketConnection(
                    stream, wire, max_message_size=self.settings.max_frame_bytes
                )
                nursery.start_soon(self._read_then_release, connection, deadline, peer_gone)
                request = await connection._get_request()
                accepted = await self._handshake(request, stream)
                return None if accepted is None else (*accepted, wire)
            if wire.refused:  # trio-websocket answered it 400 itself
                reason = f"malformed opening handshake: {wire.refused}"
                await self._record_rejection(address, 400, reason)
            elif peer_gone.cancel_called:
                self._abandoned += 1
            else:
                self._timed_out += 1
                log.info("no upgrade in %s s: closed", self.settings.handshake_timeout)
            return None
        finally:
            self._handshakes -= 1

    async def _tls_handshake(self, stream: trio.SSLStream[Any], address: str) -> bool:
        """Complete the TLS handshake; a failure (e.g. a client certificate not from the
        operator CA) is recorded as ``HandshakeRejected`` (cause ``tls_handshake_failed``)."""
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            reason = f"TLS handshake failed: {exc.__cause__ or exc}"
            await self._record_rejection(address, 0, reason, cause="tls_handshake_failed")
            return False
        return True

    @staticmethod
    async def _read_then_release(
        connection: WebSocketConnection, handshake: trio.CancelScope, marker: trio.CancelScope
    ) -> None:
        """trio-websocket's reader task; when it ends (EOF, a broken or malformed stream),
        a handshake still waiting is cancelled, ``marker`` noting why.

        A ping that arrives while we close makes trio-websocket answer with a pong wsproto
        refuses to send (``LocalProtocolError``, trio-websocket issue #184): that ends the
        reading of a connection that is closing anyway, not the connection's handler."""
        try:
            await connection._reader_task()
        except LocalProtocolError as exc:
            log.debug("reader of a closing connection stopped: %s", exc)
        marker.cancel()
        handshake.cancel()

    async def _handshake(
        self, request: WebSocketRequest, stream: trio.abc.Stream
    ) -> tuple[WebSocketConnection, str, str, list[str], Admitted, str | None] | None:
        """Accept or refuse the handshake.

        First the identity rules (``station_identity``, ``MAX_IDENTITY_LENGTH``) and the
        subprotocol policy: a refusal is answered 400 with its reason as the body. Then the
        station's security (``chargeledger.core.security.admit``: registration, profile,
        password, client certificate): a refusal is answered 401 or 403 with nothing but the
        status's name, so a prober learns nothing. Every refusal is recorded as
        ``HandshakeRejected`` with its reason (and ``cause`` for a security refusal).

        Returns the connection, station identity, protocol, the offered subprotocols, how the
        station authenticated and its client certificate's fingerprint."""
        path = request.path
        station, reason = _identity_problem(path)
        # An empty header (seen in the field) offers nothing.
        offered = [p for p in request.proposed_subprotocols if p]
        remote = _address(request.remote)
        protocol = next((p for p in SUBPROTOCOL_PREFERENCE if p in offered), None)
        if reason:
            protocol = None
        elif not offered:
            policy = self.settings.no_subprotocol
            if policy == "reject":
                reason = "no Sec-WebSocket-Protocol offered"
            else:
                protocol = policy
        elif protocol is None:
            reason = f"none of the offered subprotocols is supported: {offered}"
        if reason or protocol is None:
            await self._record_rejection(
                remote, 400, reason, station=station, path=path, offered=offered
            )
            await request.reject(400, body=reason.encode())
            return None
        decision, fingerprint = await self._authenticate(request, stream, station)
        if isinstance(decision, Refused):
            await self._record_rejection(
                remote,
                decision.status,
                decision.reason,
                station=station,
                path=path,
                offered=offered,
                cause=decision.cause,
                fingerprint=fingerprint,
            )
            headers = [(b"WWW-Authenticate", BASIC_CHALLENGE)] if decision.status == 401 else []
            body = HTTPStatus(decision.status).phrase.encode()
            await request.reject(decision.status, extra_headers=headers, body=body)
            return None
        ws = await request.accept(subprotocol=protocol if offered else None)
        return ws, station, protocol, offered, decision, fingerprint

    async def _authenticate(
        self, request: WebSocketRequest, stream: trio.abc.Stream, station: str
    ) -> tuple[Admitted | Refused, str | None]:
        """The security decision for ``station`` on this connection and the client
        certificate's fingerprint. When a password is to be checked the decision runs off the
        trio thread, at most ``PASSWORD_CHECKS`` at a time: a check is slow and memory-hard
        on purpose."""
        peer = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        certificate = (
            stream.getpeercert(binary_form=True) if isinstance(stream, trio.SSLStream) else None
        )
        transport = transport_of(
            request.headers,
            _peer_host(peer) or None,
            certificate,
            isinstance(stream, trio.SSLStream),
            self.settings,
        )
        registration = self.views.registry.get(station)
        credentials = self.views.registry.credentials(station)
        decide = partial(
            admit,
            station,
            transport,
            registered=registration is not None,
            profile=registration.profile if registration is not None else 0,
            enabled=registration.enabled if registration is not None else True,
            credentials=credentials,
            open_registration=self.settings.registration == "open",
        )
        if transport.password is None or credentials == Credentials():
            return decide(), transport.fingerprint  # no password to check: quick
        decision = await trio.to_thread.run_sync(decide, limiter=self._password_checks)
        return decision, transport.fingerprint

    async def _run_session(
        self,
        ws: WebSocketConnection,
        station: str,
        protocol: str,
        offered: list[str],
        admitted: Admitted,
        fingerprint: str | None,
        wire: _StationWire | None = None,
    ) -> None:
        """Record the session opened and run it. When the store cannot record the opening,
        the connection is closed with 1011 "event store unavailable" (nothing recorded)."""
        session = Session(self, ws, station, protocol, wire)
        old = self.sessions.get(station)
        self.sessions[station] = session
        self.retransmission.returned(station)
        if old is not None:
            old.end(CLOSE_POLICY, "replaced by a newer connection", replaced_by=session.id)
        try:
            await self._record_opened(session, offered, old, admitted, fingerprint)
        except StoreUnavailable as exc:
            log.error("store failed; refusing the session of %s: %s", station, exc)
            self.forget(session)
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await ws.aclose(CLOSE_INTERNAL_ERROR, "event store unavailable")
            return
        await session.run()

    async def _record_opened(
        self,
        session: Session,
        offered: list[str],
        old: Session | None,
        admitted: Admitted,
        fingerprint: str | None,
    ) -> None:
        ws, station, protocol = session.ws, session.station, session.protocol
        opened = SessionOpened(
            station=station,
            session=session.id,
            at=time.time(),
            protocol=protocol,
            offered=offered,
            path=ws.path or "",
            remote=_address(ws.remote),
            node=self.node,
            replaces=old.id if old is not None else None,
            auth=admitted.auth,
            profile=admitted.profile,
            credential=admitted.credential,
            tls_fingerprint=fingerprint,
        )
        if self.nodes is not None:
            # Recorded with the station's holder, fencing another node's session of it.
            answered = await self.nodes.hold(opened, old.id if old is not None else None)
            if answered is not None:
                # The other node's last answer, maybe never delivered: a retransmission of
                # that CALL gets it again (a StartTransaction: its transaction id).
                self.answered(station).remember(*answered)
            return
        await self.writer.append([(session.stream, opened)], new_stream=True)

    def _fenced(self, session_id: str, reason: str) -> None:
        """Another node closed this node's session ``session_id`` in the log: close it."""
        for session in list(self.sessions.values()):
            if session.id == session_id:
                session.fence(reason)

    def forget(self, session: Session) -> None:
        """Drop ``session`` from the routing table if it is still the station's current one."""
        if self.sessions.get(session.station) is session:
            del self.sessions[session.station]
            self.retransmission.left(session.station, trio.current_time())

    def close_session(self, station: str, code: int, reason: str) -> bool:
        """Close the station's current session with ``code`` and ``reason`` (recorded);
        whether it had one here."""
        session = self.sessions.get(station)
        if session is None:
            return False
        session.end(code, reason)
        return True

    def answered(self, station: str) -> Answered:
        """The station's retransmission window: kept across its reconnects, dropped
        ``retransmission_release_after`` seconds after it left (or earlier, least recently
        used first, when all windows together exceed ``retransmission_total_bytes``)."""
        return self.retransmission.window(station)

    async def _release_idle_windows(self) -> None:
        after = self.settings.retransmission_release_after
        while True:
            await trio.sleep(max(1.0, min(after / 4, 60.0)))
            self.retransmission.release_idle(trio.current_time(), after)

    def statistics(self) -> GatewayStatistics:
        """The limits, what they hold now and what they refused (a snapshot)."""
        settings, memory = self.settings, self.retransmission
        return GatewayStatistics(
            connections=self._connections,
            handshakes=self._handshakes,
            limits={
                "max_connections": self._max_connections,
                "max_connections_per_address": settings.max_connections_per_address,
                "max_handshakes": settings.max_handshakes,
                "handshake_timeout": settings.handshake_timeout,
                "max_frames_per_second": settings.max_frames_per_second,
                "max_pings_per_second": settings.max_pings_per_second,
                "max_frame_bytes": settings.max_frame_bytes,
                "retransmission_station_bytes": memory.station_bytes,
                "retransmission_total_bytes": memory.total_bytes,
            },
            refused=dict(self._refused),
            handshakes_timed_out=self._timed_out,
            handshakes_abandoned=self._abandoned,
            floods=dict(self._floods),
            retransmission_bytes=memory.bytes,
            retransmission_stations=len(memory),
            retransmission_calls=memory.entries(),
            retransmission_dropped=memory.dropped,
        )

    # -- our CALLs -----------------------------------------------------------------------------

    async def call(self, station: str, action: str, payload: Any) -> dict[str, Any]:
        """Send a CALL to ``station`` and return the payload of its CALLRESULT.

        Raises ``OutboundValidationError`` (invalid payload: nothing sent), ``StationOffline``
        (not connected here, or gone before answering), ``CallError`` (it answered with a
        CALLERROR), ``CallTimeout`` (no answer within ``call_timeout``; recorded), and
        ``StationBusy`` when the station's queue of CALLs is full (nothing sent or recorded),
        ``CallTooLarge`` when the frame would exceed ``max_frame_bytes`` (nothing sent or
        recorded). All but the first are ``OutboundCallFailed`` naming ``station`` and
        ``action``.
        """
        session = self.sessions.get(station)
        if session is None:
            raise StationOffline(station=station, action=action)
        wire = to_wire(session.protocol, action, msgspec.to_builtins(payload), "request")
        outbound = OutboundCall(action, wire)
        size, limit = len(outbound.text.encode()), self.settings.max_frame_bytes
        if size > limit:
            raise CallTooLarge(station=station, action=action, size=size, limit=limit)
        try:
            session.enqueue(outbound)
        except trio.WouldBlock:
            limit = self.settings.outbound_queue
            raise StationBusy(station=station, action=action, limit=limit) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StationOffline(station=station, action=action, reason="disconnected") from None
        try:
            return await outbound.wait()
        finally:
            # Cancelled while queued: mark it done so the session skips it.
            outbound.resolve(
                None, StationOffline(station=station, action=action, reason="the caller gave up")
            )
