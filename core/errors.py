"""The exceptions ChargeLedger raises, and the OCPP error codes as each version spells them.

Our exceptions::

    ChargeLedgerError
     ├── OcppError                 answer the station's CALL with a CALLERROR carrying .code
     │    └── FrameError           an inbound frame or payload violates the protocol
     ├── OutboundValidationError   a payload we were about to send is invalid: never sent
     ├── OutboundCallFailed        our CALL to a station brought no CALLRESULT (.station, .action)
     │    ├── StationOffline       the station is not connected, or left before answering
     │    ├── StationBusy          the station's queue of CALLs is full: not sent, try later
     │    ├── CallTooLarge         the CALL's frame exceeds max_frame_bytes: not sent
     │    ├── CallTimeout          the station did not answer our CALL in time
     │    └── CallError            the station answered our CALL with a CALLERROR
     ├── UnsupportedUseCase        a use case the station's protocol version cannot express
     ├── InvalidUseCaseArguments   use case arguments wrong as things stand (also ValueError)
     ├── StoreError                the event store did not do what was asked
     │    ├── StoreUnavailable
     │    │    └── SessionFenced    the session was closed by another node: never appended to
     │    └── StreamConflict
     └── AllocatorExhausted        every 1.6 transaction id (up to 2**31-1) is used up

``OcppError.code`` is a version-neutral code name (the OCPP 2.0.1 spelling); :func:`error_code`
spells it for the station's version. ``OutboundValidationError`` is deliberately not an
``OcppError``: an invalid payload of ours is our bug, and answering the station with the
constraint we broke (say PropertyConstraintViolation) would blame it; answer InternalError.
``CallError.code`` is what the station sent, verbatim, whatever its spelling.

Every ``OutboundCallFailed`` names the ``station`` and the ``action`` of the CALL it concerns
(``action`` is ``None`` only when the station was found offline before any CALL was chosen),
so one ``except OutboundCallFailed`` handles every way a CALL can fail once its payload is
valid, and its message says which CALL to which station failed and why.

OCPP 1.6 (OCPP-J 1.6 section 4.2.3, kept as is by the 1.6 errata) spells two codes
differently: ``FormationViolation`` and ``OccurenceConstraintViolation``. It has neither
``MessageTypeNotSupported`` nor ``RpcFrameworkError``; for a 1.6 station:

* ``RpcFrameworkError`` (the envelope cannot be read: not JSON, not an array, no message id)
  becomes ``FormationViolation``, which 1.6 defines as "syntactically incorrect or not
  conform the PDU structure": exactly an unreadable frame.
* ``MessageTypeNotSupported`` (a well-formed frame with an unknown message type number)
  becomes ``ProtocolError``: the frame is syntactically fine, so FormationViolation would
  mislead, and ProtocolError is the code 2.0.1 keeps for "not conform the PDU structure".
"""

from __future__ import annotations

from typing import Any

from chargeledger.schemas import OCPP16, OCPP201

__all__ = [
    "ERROR_CODES",
    "AllocatorExhausted",
    "CallError",
    "CallTimeout",
    "CallTooLarge",
    "ChargeLedgerError",
    "FrameError",
    "InvalidUseCaseArguments",
    "OcppError",
    "OutboundCallFailed",
    "OutboundValidationError",
    "SessionFenced",
    "StationBusy",
    "StationOffline",
    "StoreError",
    "StoreUnavailable",
    "StreamConflict",
    "UnsupportedUseCase",
    "error_code",
]

ERROR_CODES = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)
"""The version-neutral code names: the OCPP 2.0.1 spellings."""

_V16_SPELLING = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "MessageTypeNotSupported": "ProtocolError",
    "RpcFrameworkError": "FormationViolation",
}
# The 1.6 spellings are accepted as names too, so that a code already spelled for 1.6 (by a
# plugin, or read back from the log) translates instead of failing.
_NEUTRAL_OF_V16 = {
    "FormationViolation": "FormatViolation",
    "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
}


def error_code(protocol: str, name: str) -> str:
    """The spelling of the error code ``name`` for a ``protocol`` station.

    ``name`` is a neutral name (see ``ERROR_CODES``) or a 1.6 spelling. Raises ``ValueError``
    for an unknown name or protocol: sending a code the station's version does not define
    would itself be a protocol violation.
    """
    neutral = _NEUTRAL_OF_V16.get(name, name)
    if neutral not in ERROR_CODES:
        raise ValueError(f"unknown OCPP error code {name!r}")
    if protocol == OCPP16:
        return _V16_SPELLING.get(neutral, neutral)
    if protocol == OCPP201:
        return neutral
    raise ValueError(f"unknown OCPP protocol {protocol!r}")


class ChargeLedgerError(Exception):
    """Base of every exception ChargeLedger raises on purpose."""


class OcppError(ChargeLedgerError):
    """An error to answer the station's CALL with: a CALLERROR with ``code`` (neutral name)."""

    def __init__(self, code: str, description: str = "", details: dict[str, Any] | None = None):
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.details: dict[str, Any] = details if details is not None else {}


class FrameError(OcppError):
    """An inbound frame or payload violates the protocol; ``message_id`` is "-1" when the
    frame's message id cannot be read."""

    def __init__(
        self,
        message_id: str,
        code: str,
        description: str = "",
        details: dict[str, Any] | None = None,
    ):
        super().__init__(code, description, details)
        self.message_id = message_id


class OutboundValidationError(ChargeLedgerError):
    """A payload we were about to send violates its schema; it was not sent.

    ``code`` names the broken constraint (neutral name), ``description`` where and how.
    """

    def __init__(self, code: str, description: str, *, protocol: str, action: str, kind: str):
        super().__init__(f"{protocol} {action} {kind}: {code}: {description}")
        self.code = code
        self.description = description
        self.protocol = protocol
        self.action = action
        self.kind = kind


class OutboundCallFailed(ChargeLedgerError):
    """Our CALL ``action`` to ``station`` brought no CALLRESULT; ``reason`` says why.

    ``action`` is ``None`` when the station was offline before any CALL was chosen.
    """

    def __init__(self, reason: str, *, station: str, action: str | None) -> None:
        where = f"station {station!r}" if action is None else f"{action} to {station!r}"
        super().__init__(f"{where}: {reason}")
        self.station = station
        self.action = action
        self.reason = reason


class StationOffline(OutboundCallFailed):
    """The station is not connected to this node, or left before answering."""

    def __init__(
        self, *, station: str, action: str | None, reason: str = "not connected to this node"
    ) -> None:
        super().__init__(reason, station=station, action=action)


class StationBusy(OutboundCallFailed):
    """The station's queue of CALLs (``limit`` behind the one in flight) is full; this one
    was not queued, nothing was sent or recorded: try again later."""

    def __init__(self, *, station: str, action: str, limit: int) -> None:
        super().__init__(
            f"the station's call queue is full ({limit} waiting)", station=station, action=action
        )
        self.limit = limit


class CallTooLarge(OutboundCallFailed):
    """The CALL's frame would be ``size`` bytes (UTF-8), more than ``limit``
    (``max_frame_bytes``); it was not sent or recorded."""

    def __init__(self, *, station: str, action: str, size: int, limit: int) -> None:
        super().__init__(
            f"the frame would be {size} bytes, more than max_frame_bytes ({limit})",
            station=station,
            action=action,
        )
        self.size = size
        self.limit = limit


class CallTimeout(OutboundCallFailed):
    """The station did not answer our CALL within ``timeout`` seconds (the timeout is
    recorded; a late answer is recorded and ignored)."""

    def __init__(self, *, station: str, action: str, timeout: float) -> None:
        super().__init__(f"no answer within {timeout:g} s", station=station, action=action)
        self.timeout = timeout


class CallError(OutboundCallFailed):
    """The station answered our CALL with a CALLERROR; ``code``, ``description`` and
    ``details`` are as the station sent them."""

    def __init__(
        self,
        code: str,
        description: str = "",
        details: dict[str, Any] | None = None,
        *,
        station: str,
        action: str,
    ) -> None:
        answer = f"{code}: {description}" if description else code
        super().__init__(f"answered {answer}", station=station, action=action)
        self.code = code
        self.description = description
        self.details: dict[str, Any] = details if details is not None else {}


class UnsupportedUseCase(ChargeLedgerError):
    """The use case has no equivalent in the station's protocol version; nothing was sent."""


class InvalidUseCaseArguments(ChargeLedgerError, ValueError):
    """The use case's arguments are wrong as the station's state or the time stand (a
    reservation expiring in the past); nothing was recorded nor sent."""


class StoreError(ChargeLedgerError):
    """The event store did not do what was asked."""


class StoreUnavailable(StoreError):
    """The event store cannot be reached or failed; nothing of the request was written."""


class StreamConflict(StoreError):
    """An append used a stream version that is already taken; nothing of it was written."""


class SessionFenced(StoreUnavailable):
    """The append was refused because a session stream it appends to was closed by someone
    else (another node took the station over, or released the session of a node presumed
    dead): nothing of it was written, and nothing more ever will be for that session
    (docs/cluster.md, "Fenced sessions")."""


class AllocatorExhausted(ChargeLedgerError):
    """Every 1.6 transaction id up to 2**31-1 has been reserved; none is left.

    Not a ``StoreError``: the store is fine, the id space is used up.
    """
