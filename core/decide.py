"""How a station CALL is answered: payload validation, the plugins' one answer, its wire text.

Shared by the gateway (which then allocates a transaction id when asked, commits and sends)
and by ``chargeledger replay --what-if`` (which compares with what was recorded). Pure: no
I/O, no clock; the only impure step of answering, allocating a new 1.6 transaction id, is
left to the caller (:class:`Decision` says when one is needed).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from chargeledger.core.commands import Command, Reply, ReplyError, ReplyWithNewTransactionId
from chargeledger.core.errors import FrameError, OutboundValidationError, error_code
from chargeledger.core.frames import Call, encode_error, encode_result, to_wire, validate_request
from chargeledger.core.plugin import InboundCall
from chargeledger.core.plugin_host import PluginHost
from chargeledger.projections import Views

__all__ = ["Answer", "Decision", "answer_wire", "decide", "error_text", "reply_text"]

log = logging.getLogger("chargeledger.gateway")

Answer = Reply | ReplyError | ReplyWithNewTransactionId
"""The answer commands: exactly one of them answers a CALL."""


class Decision(msgspec.Struct, frozen=True):
    """How to answer one CALL."""

    answer: Answer
    later: list[Command]
    """The plugins' other commands, for the executor once the answer is sent."""
    note: str | None = None
    """``invalid`` when the core answered because the payload violates the schema."""


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
        payload = validate_request(
            protocol, frame.action, frame.payload, message_id=frame.message_id
        )
    except FrameError as exc:
        return Decision(ReplyError(exc.code, exc.description, exc.details), [], "invalid")
    call = InboundCall(
        station=station,
        session=session,
        protocol=protocol,
        message_id=frame.message_id,
        action=frame.action,
        payload=payload,
        at=at,
    )
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
    protocol: str, frame: Call, answer: Answer, transaction_id: int | None = None
) -> str:
    """The frame text answering ``frame``: see :func:`answer_wire`."""
    wire = answer_wire(protocol, frame, answer, transaction_id)
    if isinstance(wire, FrameError):
        return error_text(protocol, wire)
    return encode_result(frame.message_id, wire)


def error_text(protocol: str, error: FrameError) -> str:
    """The CALLERROR text of ``error``, its code spelled as ``protocol`` spells it."""
    return encode_error(
        error.message_id, error_code(protocol, error.code), error.description, error.details
    )
