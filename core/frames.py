"""The OCPP-J RPC frame codec, and payload validation against the generated schema types.

Inbound, :func:`parse_frame` turns text into a :class:`Call`, :class:`CallResult` or
:class:`CallErrorFrame` (a frame, not the exception :class:`~chargeledger.core.errors.CallError`
a caller of ours gets for it), and :func:`validate_request` / :func:`validate_response` turn a
payload dict into the typed struct of its action. A valid CALL is decoded in one pass: the
envelope with its payload left as text, then that text straight into the request type
(``Call.request``), with no builtins in between (docs/performance.md, "one decode pass per
payload"); anything that pass refuses goes the way of builtins (decode, then
``msgspec.convert``), which words every refusal exactly as before. Both raise
:class:`~chargeledger.core.errors.FrameError` with a version-neutral code; spell it for the
station with :func:`~chargeledger.core.errors.error_code`. Outbound, :func:`to_wire` checks a
payload strictly (raising ``OutboundValidationError``: never send it) and the ``encode_*``
functions write compact frame text.

Frame errors (neutral code -> 1.6 spelling; see :mod:`chargeledger.core.errors`):

* message id unreadable (not JSON with no recognisable id, not an array, no string id) ->
  ``RpcFrameworkError`` with message id "-1", as OCPP 2.0.1 part 4 section 4.2.3 prescribes
  (1.6: FormationViolation). Broken JSON whose prefix still shows the id (``[2,"abc",...``)
  is a FormatViolation for that id, so the station can match the answer.
* message id empty or longer than 36 characters -> ``RpcFrameworkError`` for that id: not a
  valid RPC request, but echoing the id is the only way the station can match the answer.
* message type id not an integer, wrong number of elements, element of the wrong type,
  payload or error details not an object -> ``FormatViolation`` (1.6: FormationViolation).
* unknown message type id -> ``MessageTypeNotSupported`` (1.6: ProtocolError).

Payload errors (from msgspec's validation message, whose text carries the JSON path, which
goes into the error description):

* unknown action -> ``NotImplemented``
* missing required field, array shorter or longer than allowed -> ``OccurrenceConstraintViolation``
  (1.6: OccurenceConstraintViolation); array length is a cardinality, the spec's occurrence.
* wrong JSON type -> ``TypeConstraintViolation``
* enum value, string length, number range -> ``PropertyConstraintViolation``
* unknown field where the schema forbids extra ones -> ``FormatViolation``
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from chargeledger.core.errors import FrameError, OutboundValidationError
from chargeledger.schemas import OCPP201, PROTOCOLS, request_type, response_type

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_MESSAGE_ID",
    "Call",
    "CallErrorFrame",
    "CallResult",
    "Frame",
    "Kind",
    "encode_call",
    "encode_error",
    "encode_result",
    "parse_frame",
    "to_wire",
    "validate_request",
    "validate_response",
]

MAX_MESSAGE_ID = 36
"""Longest message id OCPP-J allows (room for a GUID)."""

MAX_DESCRIPTION = 255
"""Longest CALLERROR errorDescription OCPP 2.0.1 allows; :func:`encode_error` truncates to it."""

Kind = Literal["request", "response"]


class Call:
    """``[2, "<MessageId>", "<Action>", {<Payload>}]``: a request.

    ``payload`` is the payload as builtins. A CALL that :func:`parse_frame` could decode in one
    pass straight into its action's request type also carries that struct (``request``, valid
    for the ``protocol`` it was parsed as; otherwise both are None) and decodes the builtins
    from the payload's text only when they are asked for (the retransmission check, replay).
    Immutable (its attributes are read-only), compared by message id, action and payload, like
    the other frames.
    """

    __slots__ = ("_action", "_message_id", "_payload", "_protocol", "_raw", "_request")

    def __init__(
        self,
        message_id: str,
        action: str,
        payload: dict[str, Any] | None,
        raw: msgspec.Raw | None = None,
        request: msgspec.Struct | None = None,
        protocol: str | None = None,
    ) -> None:
        """``payload``, or when it is None its text ``raw``; ``request`` and ``protocol``
        only from :func:`parse_frame`."""
        self._message_id = message_id
        self._action = action
        self._payload = payload
        self._raw = raw
        self._request = request
        self._protocol = protocol

    message_id = property(operator.attrgetter("_message_id"), doc="The CALL's message id.")
    action = property(operator.attrgetter("_action"), doc="The action, as sent.")
    request = property(
        operator.attrgetter("_request"),
        doc="The payload as its request type, when decoded in one pass; else None.",
    )
    protocol = property(
        operator.attrgetter("_protocol"), doc="The protocol ``request`` is of; else None."
    )

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as builtins (decoded from its text on first use)."""
        payload = self._payload
        if payload is None:
            payload = self._payload = _DECODER.decode(self._raw)  # type: ignore[arg-type]
        return payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Call):
            return NotImplemented
        return (self._message_id, self._action, self.payload) == (
            other._message_id,
            other._action,
            other.payload,
        )

    __hash__ = None  # type: ignore[assignment]  # the payload is a dict, as in a CALLRESULT

    def __repr__(self) -> str:
        fields = f"message_id={self._message_id!r}, action={self._action!r}"
        return f"Call({fields}, payload={self.payload!r})"


class CallResult(msgspec.Struct, frozen=True, array_like=True, tag=3):
    """``[3, "<MessageId>", {<Payload>}]``: the answer to a CALL."""

    message_id: str
    payload: dict[str, Any]


class CallErrorFrame(msgspec.Struct, frozen=True, array_like=True, tag=4):
    """``[4, "<MessageId>", "<errorCode>", "<errorDescription>", {<errorDetails>}]``: a CALL
    refused; ``code`` is spelled as on the wire."""

    message_id: str
    code: str
    description: str
    details: dict[str, Any]


Frame = Call | CallResult | CallErrorFrame


class _CallEnvelope(msgspec.Struct, array_like=True, tag=2, forbid_unknown_fields=True):
    """A CALL with its payload left as text, to be decoded straight into its request type."""

    message_id: str
    action: str
    payload: msgspec.Raw


class _ResultEnvelope(msgspec.Struct, array_like=True, tag=3, forbid_unknown_fields=True):
    message_id: str
    payload: dict[str, Any]


class _ErrorEnvelope(msgspec.Struct, array_like=True, tag=4, forbid_unknown_fields=True):
    message_id: str
    code: str
    description: str
    details: dict[str, Any]


_DECODER = msgspec.json.Decoder()
_ENVELOPE = msgspec.json.Decoder(_CallEnvelope | _ResultEnvelope | _ErrorEnvelope)
_ENCODER = msgspec.json.Encoder()
# The start of a frame whose JSON is broken further on: enough to answer with its id.
_ID_PREFIX = re.compile(r'\s*\[\s*\d+\s*,\s*"([^"\\]{1,36})"')
_UNREADABLE_ID = "-1"

# msgspec validation message -> neutral code. Order matters: array lengths are occurrences,
# other lengths and bounds are property constraints, any other "Expected X, got Y" is a type.
_VIOLATIONS = (
    (re.compile(r"Object missing required field"), "OccurrenceConstraintViolation"),
    (re.compile(r"Object contains unknown field"), "FormatViolation"),
    (re.compile(r"Expected `array` of length"), "OccurrenceConstraintViolation"),
    (re.compile(r"Invalid enum value"), "PropertyConstraintViolation"),
    (re.compile(r"Expected `\w+` (of length )?[<>]="), "PropertyConstraintViolation"),
    (re.compile(r"Expected `[^`]+`, got `"), "TypeConstraintViolation"),
)
_PATH = " - at `"


def parse_frame(text: str, protocol: str) -> Frame:
    """The frame ``text`` as received from a ``protocol`` station.

    Raises ``FrameError`` (see the module doc for the codes) for anything that is not a
    well-formed CALL, CALLRESULT or CALLERROR; never anything else for any text. Raises
    ``ValueError`` for a protocol not in ``PROTOCOLS`` (our bug, not the station's).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown OCPP protocol {protocol!r}")
    try:
        envelope = _ENVELOPE.decode(text)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):
        return _parse_builtins(text)  # every refusal is worded by the builtins path
    if not 0 < len(envelope.message_id) <= MAX_MESSAGE_ID:
        return _parse_builtins(text)
    if type(envelope) is _ResultEnvelope:
        return CallResult(envelope.message_id, envelope.payload)
    if type(envelope) is _ErrorEnvelope:
        return CallErrorFrame(
            envelope.message_id, envelope.code, envelope.description, envelope.details
        )
    assert type(envelope) is _CallEnvelope
    decoder = _request_decoder(protocol, envelope.action)
    # A skipped unknown field is not read as fully as builtins are (a number out of range
    # passes): only 2.0.1's CustomDataType takes unknown fields, so a 2.0.1 text that may
    # name it (spelled out, or with an escape) goes the builtins way.
    if decoder is None or (protocol == OCPP201 and ("\\" in text or "customData" in text)):
        return _parse_builtins(text)
    try:
        request = decoder.decode(envelope.payload)
    except (msgspec.DecodeError, RecursionError):
        return _parse_builtins(text)  # not an object, or a payload error: worded as before
    return Call(envelope.message_id, envelope.action, None, envelope.payload, request, protocol)


@functools.cache
def _request_decoder(protocol: str, action: str) -> msgspec.json.Decoder[Any] | None:
    payload_type = request_type(protocol, action)
    return None if payload_type is None else msgspec.json.Decoder(payload_type)


def _parse_builtins(text: str) -> Frame:
    """:func:`parse_frame` by way of builtins: slower (the payload is decoded, then converted
    by ``validate_request``), and the one place that words every refusal."""
    try:
        value = _DECODER.decode(text)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError) as exc:
        # UnicodeEncodeError: a lone surrogate in the text; RecursionError: absurd nesting.
        prefix = _ID_PREFIX.match(text)
        if prefix is None:
            raise FrameError(_UNREADABLE_ID, "RpcFrameworkError", f"not JSON: {exc}") from None
        raise FrameError(prefix[1], "FormatViolation", f"not JSON: {exc}") from None
    if type(value) is not list or len(value) < 2 or type(value[1]) is not str:
        raise FrameError(
            _UNREADABLE_ID,
            "RpcFrameworkError",
            "not an OCPP-J frame [MessageTypeId, MessageId, ...]",
        )
    message_id: str = value[1]
    if not 0 < len(message_id) <= MAX_MESSAGE_ID:
        raise FrameError(
            message_id,
            "RpcFrameworkError",
            f"message id must have 1 to {MAX_MESSAGE_ID} characters, not {len(message_id)}",
        )
    kind = value[0]
    if type(kind) is not int:
        raise FrameError(message_id, "FormatViolation", "MessageTypeId is not an integer")
    if kind == 2:
        if len(value) == 4 and type(value[2]) is str and type(value[3]) is dict:
            return Call(message_id, value[2], value[3])
        raise FrameError(message_id, "FormatViolation", 'a CALL is [2, "id", "Action", {...}]')
    if kind == 3:
        if len(value) == 3 and type(value[2]) is dict:
            return CallResult(message_id, value[2])
        raise FrameError(message_id, "FormatViolation", 'a CALLRESULT is [3, "id", {...}]')
    if kind == 4:
        if (
            len(value) == 5
            and type(value[2]) is str
            and type(value[3]) is str
            and type(value[4]) is dict
        ):
            return CallErrorFrame(message_id, value[2], value[3], value[4])
        raise FrameError(
            message_id, "FormatViolation", 'a CALLERROR is [4, "id", "code", "description", {...}]'
        )
    raise FrameError(
        message_id, "MessageTypeNotSupported", f"MessageTypeId {kind} is not supported"
    )


def encode_call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    """The compact text of a CALL."""
    return _ENCODER.encode((2, message_id, action, payload)).decode()


def encode_result(message_id: str, payload: dict[str, Any]) -> str:
    """The compact text of a CALLRESULT."""
    return _ENCODER.encode(CallResult(message_id, payload)).decode()


def encode_error(
    message_id: str, code: str, description: str = "", details: dict[str, Any] | None = None
) -> str:
    """The compact text of a CALLERROR; ``code`` as the station's version spells it (see
    ``error_code``). A description longer than ``MAX_DESCRIPTION`` is cut, as 2.0.1 requires."""
    error = CallErrorFrame(message_id, code, description[:MAX_DESCRIPTION], details or {})
    return _ENCODER.encode(error).decode()


def _violation(exc: msgspec.ValidationError) -> tuple[str, str]:
    """The neutral code and the description (with its JSON path) of a validation failure."""
    message = str(exc)
    if _PATH not in message:
        message += f"{_PATH}$`"
    for pattern, code in _VIOLATIONS:
        if pattern.match(message):
            return code, message
    return "FormatViolation", message


def _validate(
    protocol: str, action: str, payload: dict[str, Any], kind: Kind, message_id: str
) -> msgspec.Struct:
    payload_type = (request_type if kind == "request" else response_type)(protocol, action)
    if payload_type is None:
        raise FrameError(message_id, "NotImplemented", f"{action!r} is not an {protocol} action")
    try:
        return msgspec.convert(payload, payload_type)
    except msgspec.ValidationError as exc:
        code, description = _violation(exc)
        raise FrameError(message_id, code, description) from None


def validate_request(
    protocol: str, action: str, payload: dict[str, Any], *, message_id: str = _UNREADABLE_ID
) -> msgspec.Struct:
    """The request ``payload`` of ``action`` as its generated ``<Action>Request`` struct.

    Raises ``FrameError`` carrying ``message_id`` (pass the CALL's: the default "-1" is only
    right when it is unknown) with the codes of the module doc, and ``ValueError`` for a
    protocol not in ``PROTOCOLS``.
    """
    return _validate(protocol, action, payload, "request", message_id)


def validate_response(
    protocol: str, action: str, payload: dict[str, Any], *, message_id: str = _UNREADABLE_ID
) -> msgspec.Struct:
    """The response ``payload`` of ``action`` as its generated ``<Action>Response`` struct.

    Raises like :func:`validate_request`.
    """
    return _validate(protocol, action, payload, "response", message_id)


def to_wire(
    protocol: str, action: str, payload: Mapping[str, Any] | msgspec.Struct, kind: Kind
) -> dict[str, Any]:
    """The JSON-ready dict of a payload we are about to send, checked strictly.

    ``payload`` is a dict (wire names) or a generated struct, possibly nested in a dict. It is
    converted to builtins and back into the action's type, so every constraint is checked
    even for a struct built by hand (msgspec does not validate on construction). Optional
    fields given as None are left out. Raises ``OutboundValidationError`` (unknown action:
    ``NotImplemented``; otherwise the code of the broken constraint): the payload must not be
    sent. Raises ``ValueError`` for a protocol not in ``PROTOCOLS``.
    """
    payload_type = (request_type if kind == "request" else response_type)(protocol, action)
    where = {"protocol": protocol, "action": action, "kind": kind}
    if payload_type is None:
        raise OutboundValidationError(
            "NotImplemented", f"{action!r} is not an {protocol} action", **where
        )
    try:
        typed = msgspec.convert(msgspec.to_builtins(payload), payload_type)
    except msgspec.ValidationError as exc:
        code, description = _violation(exc)
        raise OutboundValidationError(code, description, **where) from None
    except TypeError as exc:  # to_builtins: a value JSON cannot carry
        raise OutboundValidationError("TypeConstraintViolation", str(exc), **where) from None
    wire: dict[str, Any] = msgspec.to_builtins(typed)
    return wire
