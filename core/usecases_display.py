"""Display messages (OCPP 2.0.1 O): set, read back and clear the messages a station displays.

Pure builders, as every use case (:mod:`chargeledger.core.usecases`): :func:`set_display_message`
is public so that other blocks (a tariff shown on the station, ...) can build the same request
and send it with ``SendCall(station, request.action, request.payload)``. What each station
displays is folded in ``views.display_messages``
(:mod:`chargeledger.projections.display_messages`); ``get_display_messages`` waits for the
station's NotifyDisplayMessages parts like ``get_base_report`` waits for NotifyReport's. 1.6
has no display messages: the use cases answer ``UnsupportedUseCase`` there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from chargeledger.core.errors import InvalidUseCaseArguments
from chargeledger.core.times import rfc3339
from chargeledger.core.usecase_base import (
    ReportProbe,
    ReportProgress,
    Request,
    UseCase,
    UseCaseArgs,
    only_201,
    present,
    time_argument,
)
from chargeledger.projections import Views
from chargeledger.projections.display_messages import display_message_json

__all__ = [
    "USE_CASES",
    "ClearDisplayMessageArgs",
    "GetDisplayMessagesArgs",
    "MessageFormat",
    "MessagePriority",
    "MessageState",
    "SetDisplayMessageArgs",
    "clear_display_message",
    "display_report",
    "get_display_messages",
    "set_display_message",
    "validity_window",
]

MessagePriority = Literal["AlwaysFront", "InFront", "NormalCycle"]
MessageState = Literal["Charging", "Faulted", "Idle", "Unavailable"]
MessageFormat = Literal["ASCII", "HTML", "URI", "UTF8"]


def _time(name: str, text: str | None) -> tuple[str | None, float | None]:
    """An RFC 3339 argument as sent (UTC) and as UNIX seconds; ``InvalidUseCaseArguments``
    when it is not a time."""
    if text is None:
        return None, None
    at = time_argument(name, text)
    return rfc3339(at), at


def validity_window(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    """A message's ``start`` and ``end`` (RFC 3339, either absent) as sent: in UTC;
    ``InvalidUseCaseArguments`` when one is not a time or ``end`` is not after ``start``."""
    start_text, start_at = _time("start", start)
    end_text, end_at = _time("end", end)
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise InvalidUseCaseArguments(f"end {end} is not after start {start}: nothing was sent")
    return start_text, end_text


def set_display_message(
    protocol: str,
    message_id: int,
    content: str,
    *,
    priority: MessagePriority = "NormalCycle",
    format: MessageFormat = "UTF8",
    language: str | None = None,
    state: MessageState | None = None,
    start: str | None = None,
    end: str | None = None,
    transaction_id: str | None = None,
) -> Request:
    """2.0.1 SetDisplayMessage of message ``message_id`` (a message with that id is replaced)
    showing ``content`` in ``format`` and ``language`` with ``priority``, in station
    ``state`` (``None``: every state), from ``start`` until ``end`` (RFC 3339, sent in UTC;
    ``None``: at once, until cleared), during transaction ``transaction_id`` only (it ends
    with it). ``status``: ``Accepted``, ``NotSupportedMessageFormat``, ``Rejected``,
    ``NotSupportedPriority``, ``NotSupportedState`` or ``UnknownTransaction``.
    ``InvalidUseCaseArguments`` when a time is not one, or ``end`` is not after ``start``."""
    only_201(protocol, "SetDisplayMessage")
    start_text, end_text = validity_window(start, end)
    message = present(
        id=message_id,
        priority=priority,
        state=state,
        startDateTime=start_text,
        endDateTime=end_text,
        transactionId=transaction_id,
        message=present(format=format, language=language, content=content),
    )
    return Request(protocol, "SetDisplayMessage", {"message": message})


def display_report(request_id: int) -> ReportProbe:
    """The probe of a GetDisplayMessages report: complete once every NotifyDisplayMessages
    part of ``request_id`` is folded; ``values``: ``{"messages": [...]}``, the messages the
    station reported, as the projection holds them (``display_message_json``), in the order
    they came."""

    def probe(views: Views, station: str) -> ReportProgress:
        display = views.display_messages.get(station)
        report = None if display is None else display.reports.get(request_id)
        if display is None or report is None:
            return ReportProgress(False, {"messages": []})
        held = display.messages
        messages = [
            display_message_json(held[message_id])
            for message_id in dict.fromkeys(report.reported)
            if message_id in held
        ]
        return ReportProgress(report.complete, {"messages": messages})

    return probe


def get_display_messages(
    protocol: str,
    request_id: int,
    ids: list[int] | None = None,
    priority: MessagePriority | None = None,
    state: MessageState | None = None,
) -> Request:
    """2.0.1 GetDisplayMessages of the messages with ``ids`` / ``priority`` / ``state``
    (none: all), reported in NotifyDisplayMessages parts with ``requestId`` ``request_id``.
    ``status`` ``Accepted`` (the parts follow; the use case waits for them) or ``Unknown``
    (no message matches: nothing follows)."""
    only_201(protocol, "GetDisplayMessages")
    payload = present(requestId=request_id, id=ids, priority=priority, state=state)
    return Request(protocol, "GetDisplayMessages", payload, report=display_report(request_id))


def clear_display_message(protocol: str, message_id: int) -> Request:
    """2.0.1 ClearDisplayMessage of message ``message_id``; ``status`` ``Accepted`` or
    ``Unknown`` (the station does not hold it)."""
    only_201(protocol, "ClearDisplayMessage")
    return Request(protocol, "ClearDisplayMessage", {"id": message_id})


class SetDisplayMessageArgs(UseCaseArgs, tag="set_display_message"):
    """2.0.1: show `content` on the station's display as message `id` (replacing a message
    with that id) with `priority` (`AlwaysFront`, `InFront`, `NormalCycle`), in `format`
    (`UTF8`, `ASCII`, `HTML`, `URI`) and `language`, in station `state` (`Charging`,
    `Faulted`, `Idle`, `Unavailable`; absent: always), from `start` until `end` (RFC 3339),
    during `transaction_id` only. Folds into `/api/stations/{id}/display-messages`."""

    id: Annotated[int, msgspec.Meta(ge=0)]
    content: Annotated[str, msgspec.Meta(max_length=512)]
    priority: MessagePriority = "NormalCycle"
    format: MessageFormat = "UTF8"
    language: Annotated[str, msgspec.Meta(max_length=8)] | None = None
    state: MessageState | None = None
    start: str | None = None
    end: str | None = None
    transaction_id: Annotated[str, msgspec.Meta(max_length=36)] | None = None


class GetDisplayMessagesArgs(UseCaseArgs, tag="get_display_messages"):
    """2.0.1: ask which messages the station displays (those with `ids`, `priority`,
    `state`; absent: all) and wait for every NotifyDisplayMessages part; `values.messages`
    lists them. `Unknown`: none matches."""

    ids: list[int] | None = None
    priority: MessagePriority | None = None
    state: MessageState | None = None


class ClearDisplayMessageArgs(UseCaseArgs, tag="clear_display_message"):
    """2.0.1: remove message `id` from the station's display (`Unknown`: it held none)."""

    id: int


def _set(protocol: str, a: SetDisplayMessageArgs, _: int) -> Request:
    return set_display_message(
        protocol,
        a.id,
        a.content,
        priority=a.priority,
        format=a.format,
        language=a.language,
        state=a.state,
        start=a.start,
        end=a.end,
        transaction_id=a.transaction_id,
    )


def _check_window(
    views: Views, station: str, protocol: str, a: SetDisplayMessageArgs, now: float
) -> None:
    """Refuse a wrong validity window before anything is recorded."""
    validity_window(a.start, a.end)


USE_CASES: tuple[UseCase[Any], ...] = (
    UseCase[SetDisplayMessageArgs](
        "set_display_message",
        SetDisplayMessageArgs,
        _set,
        check=_check_window,
    ),
    UseCase[GetDisplayMessagesArgs](
        "get_display_messages",
        GetDisplayMessagesArgs,
        lambda protocol, a, request_id: get_display_messages(
            protocol, request_id, a.ids, a.priority, a.state
        ),
    ),
    UseCase[ClearDisplayMessageArgs](
        "clear_display_message",
        ClearDisplayMessageArgs,
        lambda protocol, a, _: clear_display_message(protocol, a.id),
    ),
)
"""The display-message use cases, gathered by ``chargeledger.core.usecases.USE_CASES``."""
