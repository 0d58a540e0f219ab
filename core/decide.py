"""How a station CALL is answered: the retransmission window, payload validation, the
plugins' one answer, its wire text.

The one inbound decision path, shared by the gateway (``Session._handle_call``, which then
allocates a transaction id when asked, commits and sends) and by ``chargeledger replay
--what-if`` (which compares with what was recorded): :func:`decide_call` and
:func:`reply_text`. Synchronous and pure but for the window it is handed (:class:`Answered`,
which it reads and clears); no I/O, no clock. The only impure step of answering, allocating a
new 1.6 transaction id, is left to the caller (:attr:`Decision.needs_transaction_id`).
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from typing import Any

import msgspec

from chargeledger.core.commands import Command, Reply, ReplyError, ReplyWithNewTransactionId
from chargeledger.core.errors import FrameError, OutboundValidationError, error_code
from chargeledger.core.frames import (
    Call,
    encode_error,
    encode_result,
    parse_frame,
    to_wire,
    validate_request,
)
from chargeledger.core.plugin import InboundCall
from chargeledger.core.plugin_host import PluginHost
from chargeledger.projections import Views
from chargeledger.schemas import OCPP16

__all__ = [
    "ENTRY_OVERHEAD",
    "RETRANSMISSION_WINDOW",
    "Answer",
    "Answered",
    "Decision",
    "Retransmission",
    "RetransmissionMemory",
    "answer_wire",
    "decide",
    "decide_call",
    "error_text",
    "inbound_call",
    "reply_text",
]

log = logging.getLogger("chargeledger.gateway")

Answer = Reply | ReplyError | ReplyWithNewTransactionId
"""The answer commands: exactly one of them answers a CALL."""


RETRANSMISSION_WINDOW = 32
"""How many answered CALLs per station are kept to answer verbatim retransmissions (the
default of ``Settings.retransmission_calls``)."""

ENTRY_OVERHEAD = 200
"""Bytes charged for one remembered CALL besides its texts: the entry, its key and the
dictionary slot (measured with ``sys.getsizeof`` on 3.11, rounded up)."""


class Retransmission(enum.Enum):
    """How a station CALL relates to the CALLs it sent and we answered recently.

    The value of a retransmission is the note recorded on the CALL and its answer
    (``FrameLogged.note``): those strings are in stored logs and stay as they are."""

    NEW = "new"
    """Not seen recently: decided afresh (nothing noted)."""
    VERBATIM = "retransmission"
    """The same CALL again (the station missed our answer): answered with the earlier answer,
    verbatim, without asking the plugins again."""
    ID_REUSED = "id-reused"
    """A different CALL under a message id already answered on the same connection:
    ``ProtocolError``."""


class _Call(msgspec.Struct, frozen=True, gc=False):
    """An answered station CALL, kept to recognise its verbatim retransmission.

    Only texts are kept (three objects per call, invisible to the garbage collector): holding
    the decoded payloads of every station's recent calls cost ~40 % of the server's CPU in
    full collections at 10,000 stations (docs/performance.md)."""

    call: str
    reply: str
    session: str
    """The connection (session id) it arrived on: message ids are unique per connection."""

    @property
    def cost(self) -> int:
        """What keeping it is charged, in bytes (characters of text plus the overhead)."""
        return len(self.call) + len(self.reply) + ENTRY_OVERHEAD

    def repeats(self, text: str, frame: Call) -> bool:
        """Whether ``frame`` (received as ``text``) is this call again: the same text, or the
        same action and payload written differently."""
        if text == self.call:
            return True
        earlier = parse_frame(self.call, OCPP16)  # the envelope is the same in every version
        return (
            isinstance(earlier, Call)
            and earlier.action == frame.action
            and earlier.payload == frame.payload
        )


class Answered:
    """One station's recently answered CALLs, by message id: its retransmission window.

    Holds at most the last ``size`` CALLs answered by the plugins (not those the core
    answered: an invalid payload, a retransmission), and at most ``max_bytes`` of them as
    charged by ``_Call.cost`` (the oldest go first; a CALL that alone costs more is not kept,
    so its retransmission is decided afresh). A BootNotification empties it: a rebooted
    station restarts its message ids.

    OCPP-J message ids are unique per connection only, so the window remembers which session
    answered each CALL: under an id answered on an earlier connection, the same CALL is a
    retransmission (a StartTransaction retried after a reconnect gets its transaction id
    again) unless its payload is empty, and a different CALL is a new one; on the same
    connection a different CALL is ``ID_REUSED``. The gateway keeps one per station across
    reconnects, in memory only, within a :class:`RetransmissionMemory`; the what-if replay
    keeps its own.
    """

    __slots__ = ("_calls", "_memory", "bytes", "max_bytes", "size")

    def __init__(
        self,
        size: int = RETRANSMISSION_WINDOW,
        max_bytes: int | None = None,
        memory: RetransmissionMemory | None = None,
    ) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        """What the remembered CALLs cost (``_Call.cost``), in bytes."""
        self._memory = memory
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    def classify(self, text: str, frame: Call, session: str) -> Retransmission:
        """How the CALL ``frame``, received as ``text`` on ``session``, relates to the
        answered ones."""
        earlier = self._calls.get(frame.message_id)
        if earlier is None:
            return Retransmission.NEW
        same_connection = earlier.session == session
        # An empty payload (a Heartbeat) cannot tell a retransmission after a reconnect from
        # a station that restarted its ids: new, so that it is not answered a stale time.
        if earlier.repeats(text, frame) and (same_connection or frame.payload):
            return Retransmission.VERBATIM
        return Retransmission.ID_REUSED if same_connection else Retransmission.NEW

    def reply(self, message_id: str) -> str:
        """The text that answered ``message_id``; ``KeyError`` when it is not in the window."""
        return self._calls[message_id].reply

    def remember(self, message_id: str, text: str, reply: str, session: str) -> None:
        """Keep the CALL ``text`` that arrived on ``session`` and the ``reply`` text that
        answered it (replacing an earlier CALL under the same id), forgetting the oldest
        beyond ``size`` and ``max_bytes``."""
        entry = _Call(text, reply, session)
        delta = entry.cost
        earlier = self._calls.pop(message_id, None)
        if earlier is not None:
            delta -= earlier.cost
        self._calls[message_id] = entry
        budget = self.max_bytes if self.max_bytes is not None else delta + self.bytes
        while self._calls and (len(self._calls) > self.size or self.bytes + delta > budget):
            delta -= self._calls.popitem(last=False)[1].cost
        self._changed(delta)

    def clear(self) -> None:
        """Forget every answered CALL."""
        self._calls.clear()
        self._changed(-self.bytes)

    def _changed(self, delta: int) -> None:
        self.bytes += delta
        if self._memory is not None:
            self._memory._charge(self, delta)


class RetransmissionMemory:
    """Every station's retransmission window, bounded per station and in total.

    ``window(station)`` hands out the station's :class:`Answered` (``calls`` CALLs and
    ``station_bytes`` at most). When all windows together cost more than ``total_bytes``,
    whole windows of the least recently used stations are dropped until they fit: a station
    that retransmits after its window was dropped is decided afresh (for a StartTransaction,
    a new transaction id), which is what a restarted server does too. :meth:`release_idle`
    drops the windows of stations that have been away for a while; the gateway calls it.

    Not thread-safe: the gateway's trio thread is its only user.
    """

    def __init__(self, *, calls: int, station_bytes: int, total_bytes: int) -> None:
        if min(calls, station_bytes, total_bytes) < 1 or station_bytes > total_bytes:
            raise ValueError("retransmission limits must be positive, per station <= total")
        self.calls = calls
        self.station_bytes = station_bytes
        self.total_bytes = total_bytes
        self.bytes = 0
        """What every window together costs, in bytes; at most ``total_bytes``."""
        self.dropped = 0
        """Windows dropped to stay within ``total_bytes`` (not counting idle releases)."""
        self._windows: OrderedDict[str, Answered] = OrderedDict()  # least recently used first
        self._owners: dict[int, str] = {}
        self._left: dict[str, float] = {}

    def __len__(self) -> int:
        """The number of stations with a window."""
        return len(self._windows)

    def entries(self) -> int:
        """The number of CALLs remembered, all stations together."""
        return sum(len(window) for window in self._windows.values())

    def window(self, station: str) -> Answered:
        """The station's window (a new empty one when it has none), now the most recently
        used."""
        window = self._windows.get(station)
        if window is None:
            window = Answered(self.calls, self.station_bytes, self)
            self._windows[station] = window
            self._owners[id(window)] = station
        else:
            self._windows.move_to_end(station)
        return window

    def returned(self, station: str) -> None:
        """Note that ``station`` is connected again: its window is no longer idle."""
        self._left.pop(station, None)

    def left(self, station: str, at: float) -> None:
        """Note that ``station`` has no connection since ``at`` (``trio.current_time()``)."""
        if station in self._windows:
            self._left[station] = at

    def release_idle(self, now: float, after: float) -> int:
        """Drop the windows of stations that left at least ``after`` seconds before ``now``
        and have not come back; how many were dropped."""
        gone = [station for station, at in self._left.items() if now - at >= after]
        for station in gone:
            self._drop(station)
        return len(gone)

    def _charge(self, window: Answered, delta: int) -> None:
        self.bytes += delta
        if delta <= 0 or self.bytes <= self.total_bytes:
            return  # within the budget: no copy of every station's name (1,000s) per CALL
        station = self._owners[id(window)]
        for other in list(self._windows):
            if self.bytes <= self.total_bytes:
                break
            if other != station:
                self._drop(other)
                self.dropped += 1

    def _drop(self, station: str) -> None:
        window = self._windows.pop(station)
        del self._owners[id(window)]
        self._left.pop(station, None)
        self.bytes -= window.bytes
        window._memory = None


class Decision(msgspec.Struct, frozen=True):
    """How to answer one CALL."""

    answer: Answer | str
    """The answer command, or for a verbatim retransmission the earlier answer's text."""
    later: list[Command]
    """The plugins' other commands, for the executor once the answer is sent."""
    note: str | None = None
    """What the core notes on the CALL and its answer when it answered without the plugins:
    ``invalid`` (the payload violates the schema) or a :class:`Retransmission` value."""
    retransmission: Retransmission = Retransmission.NEW

    @property
    def needs_transaction_id(self) -> bool:
        """Whether the answer carries a new 1.6 transaction id the caller must allocate."""
        return isinstance(self.answer, ReplyWithNewTransactionId)


def decide_call(
    answered: Answered,
    plugins: PluginHost,
    views: Views,
    frame: Call,
    text: str,
    *,
    station: str,
    session: str,
    protocol: str,
    at: float,
) -> Decision:
    """The answer to the CALL ``frame``, received as ``text`` from ``station``: the whole
    inbound decision, before any transaction id is allocated.

    A verbatim retransmission of a CALL in ``answered`` gets the earlier answer's text; a
    different CALL under a message id answered on the same ``session`` gets ``ProtocolError``
    (under one answered on an earlier connection it is a new CALL); neither asks the plugins.
    A BootNotification empties ``answered`` before it is decided. Everything else is
    :func:`decide`. The caller remembers the answer in ``answered`` once it is committed
    (when ``note`` is ``None``), with ``session``, and carries out ``later``.
    """
    retransmission = answered.classify(text, frame, session)
    if retransmission is Retransmission.VERBATIM:
        reply = answered.reply(frame.message_id)
        return Decision(reply, [], retransmission.value, retransmission)
    if retransmission is Retransmission.ID_REUSED:
        refusal = ReplyError("ProtocolError", "message id reused by a different CALL")
        return Decision(refusal, [], retransmission.value, retransmission)
    if frame.action == "BootNotification":
        answered.clear()  # a reboot restarts the station's message ids
    return decide(plugins, views, frame, station=station, session=session, protocol=protocol, at=at)


def decide(
    plugins: PluginHost,
    views: Views,
    frame: Call,
    *,
    station: str,
    session: str,
    protocol: str,
    at: float,
) -> Decision:
    """The answer to the CALL ``frame`` a ``protocol`` station sent at ``at``, given the
    projections ``views`` as of the event before it.

    A payload that violates the schema is answered with the version's error code (note
    ``invalid``) without asking the plugins. A plugin that raises, or plugins that give no or
    several answers, get ``InternalError``: logged, never guessed at. No answer at all is
    ``NotSupported``.
    """
    try:
        call = inbound_call(frame, station=station, session=session, protocol=protocol, at=at)
    except FrameError as exc:
        return Decision(ReplyError(exc.code, exc.description, exc.details), [], "invalid")
    try:
        commands = plugins.answer_call(call, views)
    except Exception:
        # A plugin bug: the station gets InternalError and the frames are still recorded.
        log.exception("plugins failed to answer %s from %s", call.action, station)
        commands = [ReplyError("InternalError", "the CSMS failed to decide")]
    commands = commands or [ReplyError("NotSupported", f"{call.action} is not handled here")]
    answers = [
        command
        for command in commands
        if isinstance(command, Reply | ReplyError | ReplyWithNewTransactionId)
    ]
    later = [command for command in commands if command not in answers]
    if len(answers) != 1:
        log.error("plugins gave %d answers to %s", len(answers), call.action)
        return Decision(ReplyError("InternalError", "no single answer"), later)
    return Decision(answers[0], later)


def inbound_call(
    frame: Call, *, station: str, session: str, protocol: str, at: float
) -> InboundCall:
    """The CALL ``frame`` as the plugins see it, its payload validated into its typed
    request; raises ``FrameError`` (with the version's code) when the payload breaks the
    schema."""
    payload = frame.request
    if payload is None or frame.protocol != protocol:  # not decoded in one pass as ``protocol``
        payload = validate_request(
            protocol, frame.action, frame.payload, message_id=frame.message_id
        )
    return InboundCall(
        station=station,
        session=session,
        protocol=protocol,
        message_id=frame.message_id,
        action=frame.action,
        payload=payload,
        at=at,
    )


def answer_wire(
    protocol: str, frame: Call, answer: Answer, transaction_id: int | None = None
) -> dict[str, Any] | FrameError:
    """The CALLRESULT payload of ``answer`` as it goes on the wire (checked strictly against
    the schema), or the error to send instead: the answer's own ``ReplyError``, or
    ``InternalError`` for an answer that fails the schema (logged; never sent).

    ``transaction_id`` is the id allocated for a ``ReplyWithNewTransactionId``.
    """
    if isinstance(answer, ReplyError):
        return FrameError(frame.message_id, answer.code, answer.description, answer.details)
    payload = msgspec.to_builtins(answer.payload)
    if isinstance(answer, ReplyWithNewTransactionId):
        payload = {**payload, "transactionId": transaction_id}
    try:
        return to_wire(protocol, frame.action, payload, "response")
    except OutboundValidationError as exc:
        log.error("refusing to send an invalid %s answer: %s", frame.action, exc)
        return FrameError(frame.message_id, "InternalError", "invalid answer withheld")


def reply_text(
    protocol: str, frame: Call, answer: Answer | str, transaction_id: int | None = None
) -> str:
    """The frame text answering ``frame``: see :func:`answer_wire`; a text (the earlier
    answer to a retransmission) as it is."""
    if isinstance(answer, str):
        return answer
    wire = answer_wire(protocol, frame, answer, transaction_id)
    if isinstance(wire, FrameError):
        return error_text(protocol, wire)
    return encode_result(frame.message_id, wire)


def error_text(protocol: str, error: FrameError) -> str:
    """The CALLERROR text of ``error``, its code spelled as ``protocol`` spells it."""
    return encode_error(
        error.message_id, error_code(protocol, error.code), error.description, error.details
    )
