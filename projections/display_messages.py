"""The display-message projection: what each 2.0.1 station displays (2.0.1 O), as far as the
log knows it.

Folded from exchanges answered with a CALLRESULT:

* our **SetDisplayMessage** answered ``Accepted`` adds the message we sent, or replaces the
  one with its ``id``;
* our **ClearDisplayMessage** answered ``Accepted`` or ``Unknown`` (the station does not
  hold it: it does not display it either) removes it;
* our **GetDisplayMessages** and the station's **NotifyDisplayMessages** parts (assembled per
  ``requestId``: they carry no ``seqNo``, so they count in arrival order, a part received
  again verbatim once, and the one with ``tbc`` false is the last): each part's messages are
  added or replace theirs as they arrive; once every part is there, the report *replaces the
  known set for its criteria* (its ``id`` list, ``priority``, ``state``): a message matching
  them that the station did not report, and that was known before it answered, is removed.
  An ``Unknown`` answer (no message matches) removes every message matching the criteria;
* a **TransactionEvent** ``Ended`` removes the messages tied to that transaction (the
  station removes them when it ends, OCPP 2.0.1 O01).

A message's validity window (``start_date_time``, ``end_date_time``) is kept as sent; the
projection has no clock, so whether it is shown *now* is for the reader to compare
(:func:`display_messages_json` with ``now``).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar, Literal

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import (
    Exchange,
    ExchangeFold,
    Kind,
    as_dict,
    as_int,
    as_list,
    as_str,
    is_v16,
)
from chargeledger.projections.parts import Parts, report_of
from chargeledger.projections.reservations import parse_time

__all__ = [
    "MAX_DISPLAY_REPORTS_PER_STATION",
    "DisplayMessage",
    "DisplayMessagesProjection",
    "DisplayReport",
    "StationDisplay",
    "display_message_json",
    "display_messages_json",
    "message_info",
]

MAX_DISPLAY_REPORTS_PER_STATION = 16
"""GetDisplayMessages reports remembered per station (the oldest is forgotten first)."""


class DisplayMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message a station displays (``MessageInfoType``), as we set it or it reported it."""

    id: int
    priority: str | None
    """``AlwaysFront``, ``InFront`` or ``NormalCycle``."""
    state: str | None
    """The station state it is shown in (``Charging``, ``Faulted``, ``Idle``,
    ``Unavailable``); ``None``: in every state."""
    start_date_time: str | None
    """From when it is shown, as sent; ``None``: at once."""
    end_date_time: str | None
    """Until when it is shown, as sent; ``None``: until cleared."""
    transaction_id: str | None
    """The transaction it is shown during; it ends with it."""
    format: str | None
    """``ASCII``, ``HTML``, ``URI`` or ``UTF8``."""
    language: str | None
    content: str | None
    display: str | None
    """The ``display`` component's name, when it names one."""
    source: Literal["SetDisplayMessage", "NotifyDisplayMessages"]
    request_id: int | None
    """The report (``requestId``) it came in, ``None`` when we set it."""
    position: int
    """Log position of the answer that made it known (ours to NotifyDisplayMessages, the
    station's to SetDisplayMessage)."""
    at: float


class DisplayReport(Parts, kw_only=True):
    """A GetDisplayMessages report: our request's criteria and the station's answer, and the
    NotifyDisplayMessages parts received (``seq_nos``, ``last_seq_no``, ``complete``)."""

    request_id: int
    ids: list[int] | None = None
    """The ``id`` list we asked for; ``None``: any."""
    priority: str | None = None
    state: str | None = None
    status: str | None = None
    """The station's answer: ``Accepted`` (parts follow) or ``Unknown`` (nothing matches);
    ``None`` while (or when) the log holds no answered request of ours for it."""
    answered_position: int | None = None
    reported: list[int] = []
    """The message ids the parts listed, in the order they came."""
    parts: list[str] = []
    """Each part received (its ``tbc`` and ``messageInfo``), to count a repeated one once."""
    settled: bool = False
    """The report replaced the known messages matching its criteria (complete and answered,
    or answered ``Unknown``)."""
    at: float | None = None
    """When the latest part (or our request's answer) arrived."""

    def matches(self, message: DisplayMessage) -> bool:
        """Whether ``message`` meets the request's criteria."""
        return (
            (self.ids is None or message.id in self.ids)
            and (self.priority is None or message.priority == self.priority)
            and (self.state is None or message.state == self.state)
        )


class StationDisplay(msgspec.Struct, kw_only=True):
    """What one station displays. Read-only for everyone but the projection."""

    station: str
    messages: dict[int, DisplayMessage] = {}
    """By message id."""
    reports: dict[int, DisplayReport] = {}
    """By ``requestId``, oldest first (at most ``MAX_DISPLAY_REPORTS_PER_STATION``)."""


def message_info(message: dict[str, Any]) -> dict[str, Any]:
    """The fields of a wire ``MessageInfoType`` (``id``, ``priority``, ``state``,
    ``startDateTime``, ``endDateTime``, ``transactionId``, ``message``, ``display``) read
    tolerantly: a field of the wrong JSON type is ``None``."""
    content = as_dict(message.get("message"))
    return {
        "id": as_int(message.get("id")),
        "priority": as_str(message.get("priority")),
        "state": as_str(message.get("state")),
        "start_date_time": as_str(message.get("startDateTime")),
        "end_date_time": as_str(message.get("endDateTime")),
        "transaction_id": as_str(message.get("transactionId")),
        "format": as_str(content.get("format")),
        "language": as_str(content.get("language")),
        "content": as_str(content.get("content")),
        "display": as_str(as_dict(message.get("display")).get("name")),
    }


class DisplayMessagesProjection(ExchangeFold):
    """What each 2.0.1 station displays, folded from the log (see the module docstring)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            "SetDisplayMessage",
            "ClearDisplayMessage",
            "GetDisplayMessages",
            "NotifyDisplayMessages",
            "TransactionEvent",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationDisplay] = {}

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        if (
            exchange is None
            or is_v16(exchange.protocol)
            or type(exchange.request) is not dict
            or type(exchange.response) is not dict
        ):
            return
        action = exchange.action
        if exchange.origin == "out":
            if action == "SetDisplayMessage":
                self._set(exchange)
            elif action == "ClearDisplayMessage":
                self._clear(exchange)
            elif action == "GetDisplayMessages":
                self._requested(exchange)
        elif action == "NotifyDisplayMessages":
            self._part(exchange)
        elif action == "TransactionEvent" and exchange.request.get("eventType") == "Ended":
            self._transaction_ended(exchange)

    def get(self, station: str) -> StationDisplay | None:
        """What the station displays, ``None`` until a display-message exchange is seen."""
        return self._stations.get(station)

    def all(self) -> list[StationDisplay]:
        """Every station's display, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def _state(self, station: str) -> StationDisplay:
        state = self._stations.get(station)
        if state is None:
            state = self._stations[station] = StationDisplay(station=station)
        return state

    def _report(self, exchange: Exchange) -> tuple[StationDisplay, DisplayReport] | None:
        """The station's display and the report the exchange's ``requestId`` names."""
        request_id = as_int(exchange.request.get("requestId"))
        if request_id is None:
            return None
        state = self._state(exchange.station)
        reports = state.reports
        return state, report_of(reports, request_id, _new_report, MAX_DISPLAY_REPORTS_PER_STATION)

    def _set(self, exchange: Exchange) -> None:
        if exchange.response.get("status") != "Accepted":
            return
        info = message_info(as_dict(exchange.request.get("message")))
        if info["id"] is None:
            return
        state = self._state(exchange.station)
        state.messages[info["id"]] = DisplayMessage(
            **info,
            source="SetDisplayMessage",
            request_id=None,
            position=exchange.result_position,
            at=exchange.at,
        )

    def _clear(self, exchange: Exchange) -> None:
        message_id = as_int(exchange.request.get("id"))
        if message_id is not None and exchange.response.get("status") in ("Accepted", "Unknown"):
            self._state(exchange.station).messages.pop(message_id, None)

    def _requested(self, exchange: Exchange) -> None:
        request, found = exchange.request, self._report(exchange)
        if found is None:
            return
        state, report = found
        ids = request.get("id")
        report.ids = None if ids is None else [i for i in as_list(ids) if type(i) is int]
        report.priority = as_str(request.get("priority"))
        report.state = as_str(request.get("state"))
        report.status = as_str(exchange.response.get("status"))
        report.answered_position = exchange.result_position
        report.at = exchange.at
        self._settle(state, report)

    def _part(self, exchange: Exchange) -> None:
        request, found = exchange.request, self._report(exchange)
        if found is None:
            return
        state, report = found
        # NotifyDisplayMessages has no seqNo: parts count in the order they arrive, and one
        # received again verbatim (its CALLRESULT was lost) counts once.
        part = msgspec.json.encode([request.get("tbc"), request.get("messageInfo")]).decode()
        if part in report.parts:
            return
        report.parts.append(part)
        report.receive(len(report.seq_nos), request.get("tbc"))
        report.at = exchange.at
        for item in as_list(request.get("messageInfo")):
            info = message_info(as_dict(item))
            if info["id"] is None:
                continue
            report.reported.append(info["id"])
            state.messages[info["id"]] = DisplayMessage(
                **info,
                source="NotifyDisplayMessages",
                request_id=report.request_id,
                position=exchange.result_position,
                at=exchange.at,
            )
        self._settle(state, report)

    def _settle(self, state: StationDisplay, report: DisplayReport) -> None:
        """Once the station said what matches (all parts, or ``Unknown``), drop the known
        messages that match the criteria, were known before its answer and were not
        reported."""
        answered = report.answered_position
        if report.settled or answered is None:
            return
        if report.status == "Accepted" and not report.complete:
            return
        if report.status not in ("Accepted", "Unknown"):
            return
        report.settled = True
        state.messages = {
            message_id: message
            for message_id, message in state.messages.items()
            if not report.matches(message)
            or message_id in report.reported
            or message.position > answered
        }

    def _transaction_ended(self, exchange: Exchange) -> None:
        state = self._stations.get(exchange.station)
        info = as_dict(exchange.request.get("transactionInfo"))
        transaction_id = as_str(info.get("transactionId"))
        if state is not None and transaction_id is not None:
            state.messages = {
                message_id: message
                for message_id, message in state.messages.items()
                if message.transaction_id != transaction_id
            }


def _new_report(request_id: int) -> DisplayReport:
    return DisplayReport(request_id=request_id)


def _window(message: DisplayMessage, now: float) -> str:
    """``pending`` before its start, ``expired`` after its end, else ``current``; a time
    that does not parse counts as absent."""
    start, end = parse_time(message.start_date_time), parse_time(message.end_date_time)
    if start is not None and now < start:
        return "pending"
    if end is not None and now >= end:
        return "expired"
    return "current"


def display_message_json(message: DisplayMessage, now: float | None = None) -> dict[str, Any]:
    """``message`` as JSON-ready builtins; with ``now`` (UNIX seconds) also ``window``:
    whether its validity window is ``pending``, ``current`` or ``expired`` then."""
    found = {
        "id": message.id,
        "priority": message.priority,
        "state": message.state,
        "start_date_time": message.start_date_time,
        "end_date_time": message.end_date_time,
        "transaction_id": message.transaction_id,
        "format": message.format,
        "language": message.language,
        "content": message.content,
        "display": message.display,
        "source": message.source,
        "request_id": message.request_id,
        "position": message.position,
        "at": rfc3339(message.at),
    }
    if now is not None:
        found["window"] = _window(message, now)
    return found


def display_messages_json(state: StationDisplay, now: float | None = None) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``): ``messages`` sorted by id, ``reports`` oldest first."""
    return {
        "station": state.station,
        "messages": [
            display_message_json(message, now) for _, message in sorted(state.messages.items())
        ],
        "reports": [
            {
                "request_id": report.request_id,
                "ids": report.ids,
                "priority": report.priority,
                "state": report.state,
                "status": report.status,
                "seq_nos": list(report.seq_nos),
                "complete": report.complete,
                "reported": list(report.reported),
                "settled": report.settled,
                "at": None if report.at is None else rfc3339(report.at),
            }
            for report in state.reports.values()
        ],
    }
