"""The exceptions ChargeLedger raises, and the OCPP error codes as each version spells them.

Our exceptions::

    ChargeLedgerError
     ├── OcppError                 answer the station's CALL with a CALLERROR carrying .code
     │    └── FrameError           an inbound frame or payload violates the protocol
     ├── OutboundValidationError   a payload we were about to send is invalid: never sent
     ├── CallError                 the station answered our CALL with a CALLERROR
     ├── CallTimeout               the station did not answer our CALL in time
     ├── StationOffline            the station is not connected, or left before answering
     ├── UnsupportedUseCase        a use case the station's protocol version cannot express
     ├── StoreError                the event store did not do what was asked
     │    ├── StoreUnavailable
     │    └── StreamConflict
     └── AllocatorExhausted        every 1.6 transaction id (up to 2**31-1) is used up

``OcppError.code`` is a version-neutral code name (the OCPP 2.0.1 spelling); :func:`error_code`
spells it for the station's version. ``OutboundValidationError`` is deliberately not an
``OcppError``: an invalid payload of ours is our bug, and answering the station with the
constraint we broke (say PropertyConstraintViolation) would blame it; answer InternalError.
``CallError.code`` is what the station sent, verbatim, whatever its spelling.

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
    "ChargeLedgerError",
    "FrameError",
    "OcppError",
    "OutboundValidationError",
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


class CallError(ChargeLedgerError):
    """The station answered our CALL with a CALLERROR; ``code`` is as the station sent it."""

    def __init__(self, code: str, description: str = "", details: dict[str, Any] | None = None):
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.details: dict[str, Any] = details if details is not None else {}


class CallTimeout(ChargeLedgerError):
    """The station did not answer our CALL in time (the timeout is recorded)."""


class StationOffline(ChargeLedgerError):
    """The station is not connected to this node, or left before answering."""


class UnsupportedUseCase(ChargeLedgerError):
    """The use case has no equivalent in the station's protocol version; nothing was sent."""


class StoreError(ChargeLedgerError):
    """The event store did not do what was asked."""


class StoreUnavailable(StoreError):
    """The event store cannot be reached or failed; nothing of the request was written."""


class StreamConflict(StoreError):
    """An append used a stream version that is already taken; nothing of it was written."""


class AllocatorExhausted(ChargeLedgerError):
    """Every 1.6 transaction id up to 2**31-1 has been reserved; none is left.

    Not a ``StoreError``: the store is fine, the id space is used up.
    """
