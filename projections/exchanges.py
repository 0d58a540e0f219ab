"""Tolerant reading of the log: OCPP-J frame decoding, payload conversions, CALL/answer pairing.

Public: the projections, the audit and plugins (through :mod:`chargeledger.core.plugin`) read
recorded frames with these. Nothing here raises on a malformed frame or payload: a station's
deviation is data, and the conversions turn a value of the wrong JSON type into ``None`` or
an empty container.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from chargeledger.core.events import (
    CallTimedOut,
    Direction,
    FrameLogged,
    Recorded,
    SessionClosed,
    SessionOpened,
)

__all__ = [
    "MAX_PENDING_PER_SESSION",
    "MAX_TRACKED_SESSIONS_PER_STATION",
    "Correlator",
    "ErrorAnswer",
    "Exchange",
    "ExchangeFold",
    "Kind",
    "as_bool",
    "as_dict",
    "as_int",
    "as_list",
    "as_str",
    "as_text",
    "decode_frame",
    "is_v16",
    "kind_of",
    "result_only",
    "route",
    "routed_to",
]

MAX_PENDING_PER_SESSION = 64
"""Unanswered CALLs remembered per session and direction. OCPP allows one outstanding CALL
per direction, so only a misbehaving peer reaches this; the oldest is forgotten first."""

MAX_TRACKED_SESSIONS_PER_STATION = 2
"""Sessions per station whose unanswered CALLs are remembered. A node that crashed never
records ``SessionClosed``; without this bound its sessions' CALLs would be kept forever. Two
covers the overlap while the newest connection replaces the previous one."""

_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4

_OTHER_SIDE: dict[str, Direction] = {"in": "out", "out": "in"}
"""For an answer frame's direction, the direction its CALL travelled."""


def as_int(value: Any) -> int | None:
    """``value`` when it is an integer (not a bool), else ``None``."""
    return value if type(value) is int else None


def as_str(value: Any) -> str | None:
    """``value`` when it is a string, else ``None``."""
    return value if type(value) is str else None


def as_text(value: Any) -> str | None:
    """``value`` when it is a string or absent; any other JSON value (a field deviation, such
    as a configuration value sent as a number) as its JSON text: ``60``, ``true``."""
    if value is None or type(value) is str:
        return value
    return msgspec.json.encode(value).decode()


def as_bool(value: Any) -> bool | None:
    """``value`` when it is a boolean, else ``None``."""
    return value if type(value) is bool else None


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if type(value) is dict else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one."""
    return value if type(value) is list else []


def is_v16(protocol: str) -> bool:
    """Whether ``protocol`` is folded with the OCPP 1.6 rules (unknown protocols are, since a
    session only lacks one when the log holds frames without their ``SessionOpened``)."""
    return not protocol.startswith("ocpp2")


def decode_frame(text: str) -> list[Any] | None:
    """The frame as a list whose first item is the message type (int) and second the message
    id (str), or ``None`` for anything else; never raises."""
    try:
        frame = msgspec.json.decode(text)
    except (ValueError, RecursionError):
        # msgspec.DecodeError is a ValueError, and so is the UnicodeEncodeError of a text
        # holding lone surrogates; absurdly deep nesting exhausts the recursion limit.
        return None
    if type(frame) is list and len(frame) >= 3 and type(frame[0]) is int and type(frame[1]) is str:
        return frame
    return None


Kind = type | str
"""What an event is, for routing it only to the folds and react hooks it concerns: an OCPP
action (a frame carrying a CALL of that action, or the CALLRESULT or CALLERROR answering one)
or an event type (any other event; ``FrameLogged`` for a frame without a known action: one
that is not OCPP-J, or an answer to no remembered CALL)."""


def kind_of(event: object, action: str | None) -> Kind:
    """The kind of ``event``, given the action the :class:`Correlator` found in it."""
    return type(event) if action is None else action


def routed_to(kinds: frozenset[Kind] | None, kind: Kind) -> bool:
    """Whether a fold or react hook that declared ``kinds`` is given an event of ``kind``:
    everything when it declared nothing (``None``), else an event of a type it names, a
    frame of an action it names, and every frame when it names ``FrameLogged``."""
    return kinds is None or kind in kinds or (type(kind) is str and FrameLogged in kinds)


class _PendingCall(msgspec.Struct, frozen=True):
    action: str
    payload: Any
    position: int


class ErrorAnswer(msgspec.Struct, frozen=True):
    """What a CALLERROR said (as written: a malformed one has empty or ``None`` fields)."""

    code: str | None
    description: str | None
    details: dict[str, Any]


class Exchange(msgspec.Struct, frozen=True, kw_only=True):
    """A CALL and the answer that closed it, both in the same session.

    A CALLRESULT (``error`` is ``None``) is the only thing that changes projected state: the
    projections are folded with :func:`result_only`. A CALLERROR (``error`` set,
    ``response`` ``None``) closes the CALL too; react hooks see both."""

    station: str
    session: str
    protocol: str
    """The session's subprotocol (empty when the log holds no ``SessionOpened`` for it)."""
    origin: Direction
    """Who sent the CALL: ``in`` the station (we answered), ``out`` us (the station answered)."""
    action: str
    request: Any
    response: Any
    """The CALLRESULT payload; ``None`` for a CALLERROR."""
    call_position: int
    result_position: int
    """The position of the answer (CALLRESULT or CALLERROR)."""
    at: float
    """When the answer was received or sent."""
    error: ErrorAnswer | None = None
    """What the CALLERROR said, when the CALL was answered with one."""


def result_only(exchange: Exchange | None) -> Exchange | None:
    """``exchange`` when a CALLRESULT closed it, else ``None``: what a projection folds."""
    return exchange if exchange is None or exchange.error is None else None


H = TypeVar("H")


def route(
    exchange: Exchange | None, station_calls: Mapping[str, H], csms_calls: Mapping[str, H]
) -> H | None:
    """The handler of ``exchange``'s action, among ``station_calls`` when the station sent the
    CALL and ``csms_calls`` when we did, provided both payloads are JSON objects; ``None`` for
    no exchange or no handler."""
    if exchange is None:
        return None
    handler = (station_calls if exchange.origin == "in" else csms_calls).get(exchange.action)
    if handler is None or not type(exchange.request) is type(exchange.response) is dict:
        return None
    return handler


class _Session:
    __slots__ = ("pending", "protocol", "station")

    def __init__(self, station: str, protocol: str) -> None:
        self.station = station
        self.protocol = protocol
        self.pending: dict[str, dict[str, _PendingCall]] = {"in": {}, "out": {}}
        """Unanswered CALLs by who sent them (the frame direction), then by message id."""


class Correlator:
    """Pairs each CALLRESULT with the CALL it answers, per session and message id.

    A CALLERROR, a ``CallTimedOut`` or the session's end forgets the CALL; a CALLRESULT nobody
    asked for is ignored. O(1) per event.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._by_station: dict[str, list[str]] = {}
        self.action: str | None = None
        """The OCPP action of the event fed last: a CALL's own, or that of the CALL a
        CALLRESULT or CALLERROR answered; ``None`` for any other event or frame (see
        :func:`kind_of`)."""

    def feed(self, recorded: Recorded) -> Exchange | None:
        """Take the next event of the log; the completed exchange when it is a CALLRESULT or
        CALLERROR answering a remembered CALL."""
        event = recorded.event
        self.action = None
        if isinstance(event, FrameLogged):
            return self._frame(recorded.position, event)
        if isinstance(event, SessionOpened):
            self._session(event.station, event.session).protocol = event.protocol
        elif isinstance(event, SessionClosed):
            self._forget(event.session)
        elif isinstance(event, CallTimedOut):
            session = self._sessions.get(event.session)
            if session is not None:
                session.pending["out"].pop(event.message_id, None)
        return None

    def _session(self, station: str, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session(station, "")
            tracked = self._by_station.setdefault(station, [])
            tracked.append(session_id)
            if len(tracked) > MAX_TRACKED_SESSIONS_PER_STATION:
                del self._sessions[tracked.pop(0)]
        return session

    def _forget(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        tracked = self._by_station[session.station]
        tracked.remove(session_id)
        if not tracked:
            del self._by_station[session.station]

    def _frame(self, position: int, event: FrameLogged) -> Exchange | None:
        answered = _OTHER_SIDE.get(event.direction)
        frame = decode_frame(event.text)
        if answered is None or frame is None:
            return None
        kind, message_id = frame[0], frame[1]
        session = self._session(event.station, event.session)
        if kind == _CALL:
            if len(frame) >= 4 and type(frame[2]) is str:
                self.action = frame[2]
                calls = session.pending[event.direction]
                calls.pop(message_id, None)  # a re-used id makes this the newest CALL
                calls[message_id] = _PendingCall(frame[2], frame[3], position)
                if len(calls) > MAX_PENDING_PER_SESSION:
                    del calls[next(iter(calls))]
            return None
        if kind not in (_CALLRESULT, _CALLERROR):
            return None
        call = session.pending[answered].pop(message_id, None)
        if call is None:
            return None
        self.action = call.action
        error = None
        if kind == _CALLERROR:
            error = ErrorAnswer(
                as_str(frame[2]),
                as_str(frame[3]) if len(frame) > 3 else None,
                as_dict(frame[4]) if len(frame) > 4 else {},
            )
        return Exchange(
            station=event.station,
            session=event.session,
            protocol=session.protocol,
            origin=answered,
            action=call.action,
            request=call.payload,
            response=frame[2] if error is None else None,
            call_position=call.position,
            result_position=position,
            at=event.at,
            error=error,
        )


class ExchangeFold:
    """Base of the projections that fold completed exchanges.

    ``apply`` pairs frames itself, for a projection used on its own; ``Views`` pairs each
    frame once and hands the exchange to every projection's ``fold``."""

    def __init__(self) -> None:
        self._correlator = Correlator()

    def apply(self, recorded: Recorded) -> None:
        """Fold the next event of the log."""
        self.fold(recorded, result_only(self._correlator.feed(recorded)))

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes (``None`` when it completes
        none)."""
        raise NotImplementedError
