"""The customer-information projection: each 2.0.1 CustomerInformation we sent (OCPP 2.0.1
N09 report, N10 clear), who asked for it, and the report the station sent back in
NotifyCustomerInformation parts, assembled by ``requestId``, ``seqNo`` and ``tbc``.

Who asked comes from the ``CommandRequested`` the one door records before sending: the
newest such request of the station for the same customer (and the same report and clear
flags) recorded before our CALL.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import CommandRequested, Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import (
    Exchange,
    ExchangeFold,
    Kind,
    as_bool,
    as_dict,
    as_int,
    as_str,
    is_v16,
)
from chargeledger.projections.parts import Parts, report_of

__all__ = [
    "MAX_CUSTOMER_REQUESTS_PER_STATION",
    "AskedBy",
    "CustomerInformationProjection",
    "CustomerRequest",
    "StationCustomerInformation",
    "customer_information_json",
    "customer_request_json",
]

MAX_CUSTOMER_REQUESTS_PER_STATION = 32
"""Requests remembered per station (the oldest is forgotten first)."""

_PENDING_PER_STATION = 16
"""Recorded requests not yet matched to a CALL kept per station (a request refused before
it was sent never is)."""

USE_CASE = "customer_information"
ACTION = "CustomerInformation"


class AskedBy(msgspec.Struct, frozen=True, kw_only=True):
    """The ``CommandRequested`` behind a request: who asked, and when."""

    key: str
    """The API key's name, the name a Python caller gave, or ``plugins``."""
    role: str
    command_request_id: str
    """The ``CommandRequested.request_id`` (the API's ``X-Request-Id``)."""
    position: int
    at: float


class _Pending(msgspec.Struct, frozen=True):
    who: tuple[Any, ...]
    asked_by: AskedBy


class CustomerRequest(Parts, kw_only=True):
    """One CustomerInformation and the report assembled from its NotifyCustomerInformation
    parts (:class:`~chargeledger.projections.parts.Parts`: ``seq_nos``, ``last_seq_no``,
    ``complete``)."""

    request_id: int
    report: bool | None = None
    """We asked for a report; ``None`` when the log holds no answered request of ours."""
    clear: bool | None = None
    """We asked the station to clear the customer's data."""
    id_token: dict[str, Any] | None = None
    customer_identifier: str | None = None
    customer_certificate: dict[str, Any] | None = None
    status: str | None = None
    """The station's answer: ``Accepted``, ``Rejected``, ``Invalid``."""
    asked_by: AskedBy | None = None
    """Who asked (``None``: the log holds no recorded request for this CALL)."""
    position: int | None = None
    """Log position of our CALL."""
    requested_at: float | None = None
    data: dict[int, str] = {}
    """The parts' ``data`` by ``seqNo``."""
    generated_at: str | None = None
    at: float | None = None
    """When the latest part arrived."""

    @property
    def text(self) -> str:
        """The report: the parts' data in ``seqNo`` order."""
        return "".join(text for _, text in sorted(self.data.items()))


class StationCustomerInformation(msgspec.Struct, kw_only=True):
    """A station's customer-information requests. Read-only for everyone but the
    projection."""

    station: str
    requests: dict[int, CustomerRequest] = {}
    """By ``requestId``, oldest first."""


def _new_request(request_id: int) -> CustomerRequest:
    return CustomerRequest(request_id=request_id)


def _who(
    id_token: Any, customer_identifier: Any, certificate: Any, report: Any, clear: Any
) -> tuple[Any, ...]:
    token = as_dict(id_token)
    serial = as_dict(certificate).get("serialNumber", as_dict(certificate).get("serial_number"))
    return (token.get("idToken"), customer_identifier, serial, report is True, clear is True)


def _who_asked_in(event: CommandRequested) -> tuple[Any, ...] | None:
    """Whom (and what) a recorded request is about, as a CALL would say it."""
    payload = event.payload
    if event.mode == "message" and event.command == ACTION:
        return _who(
            payload.get("idToken"),
            payload.get("customerIdentifier"),
            payload.get("customerCertificate"),
            payload.get("report"),
            payload.get("clear"),
        )
    if event.mode == "use_case" and event.command == USE_CASE:
        token = payload.get("id_token")
        return _who(
            None if token is None else {"idToken": token},
            payload.get("customer_identifier"),
            payload.get("customer_certificate"),
            payload.get("report", True),
            payload.get("clear", False),
        )
    return None


class CustomerInformationProjection(ExchangeFold):
    """Customer information folded from the log (see ``docs/device-management.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {CommandRequested, ACTION, "NotifyCustomerInformation"}
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationCustomerInformation] = {}
        self._pending: dict[str, list[_Pending]] = {}

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        event = recorded.event
        if isinstance(event, CommandRequested):
            who = _who_asked_in(event)
            if who is not None:
                pending = self._pending.setdefault(event.station, [])
                asked_by = AskedBy(
                    key=event.key,
                    role=event.role,
                    command_request_id=event.request_id,
                    position=recorded.position,
                    at=event.at,
                )
                pending.append(_Pending(who, asked_by))
                if len(pending) > _PENDING_PER_STATION:
                    del pending[0]
            return
        if (
            exchange is None
            or is_v16(exchange.protocol)
            or not type(exchange.request) is type(exchange.response) is dict
        ):
            return
        if exchange.origin == "out" and exchange.action == ACTION:
            self._requested(exchange)
        elif exchange.origin == "in" and exchange.action == "NotifyCustomerInformation":
            self._notified(exchange)

    def _state(self, station: str) -> StationCustomerInformation:
        state = self._stations.get(station)
        if state is None:
            state = self._stations[station] = StationCustomerInformation(station=station)
        return state

    def _request(self, station: str, request_id: int) -> CustomerRequest:
        requests = self._state(station).requests
        return report_of(requests, request_id, _new_request, MAX_CUSTOMER_REQUESTS_PER_STATION)

    def _asked_by(self, exchange: Exchange) -> AskedBy | None:
        payload = exchange.request
        who = _who(
            payload.get("idToken"),
            payload.get("customerIdentifier"),
            payload.get("customerCertificate"),
            payload.get("report"),
            payload.get("clear"),
        )
        pending = self._pending.get(exchange.station, [])
        for index in range(len(pending) - 1, -1, -1):
            if pending[index].who == who and pending[index].asked_by.position < (
                exchange.call_position
            ):
                return pending.pop(index).asked_by
        return None

    def _requested(self, exchange: Exchange) -> None:
        payload = exchange.request
        request_id = as_int(payload.get("requestId"))
        if request_id is None:
            return
        request = self._request(exchange.station, request_id)
        request.report = as_bool(payload.get("report"))
        request.clear = as_bool(payload.get("clear"))
        token = payload.get("idToken")
        request.id_token = None if token is None else as_dict(token)
        request.customer_identifier = as_str(payload.get("customerIdentifier"))
        certificate = payload.get("customerCertificate")
        request.customer_certificate = None if certificate is None else as_dict(certificate)
        request.status = as_str(exchange.response.get("status"))
        request.asked_by = self._asked_by(exchange)
        request.position = exchange.call_position
        request.requested_at = exchange.at

    def _notified(self, exchange: Exchange) -> None:
        payload = exchange.request
        request_id, seq_no = as_int(payload.get("requestId")), as_int(payload.get("seqNo"))
        if request_id is None or seq_no is None:
            return
        request = self._request(exchange.station, request_id)
        if not request.receive(seq_no, payload.get("tbc")):
            return  # a part received again (its CALLRESULT was lost): applied once
        request.data[seq_no] = as_str(payload.get("data")) or ""
        request.generated_at = request.generated_at or as_str(payload.get("generatedAt"))
        request.at = exchange.at

    def get(self, station: str) -> StationCustomerInformation | None:
        """The station's requests, ``None`` when the log holds none."""
        return self._stations.get(station)

    def all(self) -> list[StationCustomerInformation]:
        """Every station with requests, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def request(self, station: str, request_id: int) -> CustomerRequest | None:
        """The station's request ``request_id``, if the log holds it."""
        state = self._stations.get(station)
        return None if state is None else state.requests.get(request_id)


def _time(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def customer_request_json(request: CustomerRequest) -> dict[str, Any]:
    """One request and its assembled report as JSON-ready builtins."""
    asked_by = request.asked_by
    return {
        "request_id": request.request_id,
        "report": request.report,
        "clear": request.clear,
        "id_token": request.id_token,
        "customer_identifier": request.customer_identifier,
        "customer_certificate": request.customer_certificate,
        "status": request.status,
        "asked_by": None
        if asked_by is None
        else {**msgspec.to_builtins(asked_by), "at": rfc3339(asked_by.at)},
        "position": request.position,
        "requested_at": _time(request.requested_at),
        "seq_nos": list(request.seq_nos),
        "last_seq_no": request.last_seq_no,
        "complete": request.complete,
        "data": request.text,
        "generated_at": request.generated_at,
        "at": _time(request.at),
    }


def customer_information_json(state: StationCustomerInformation) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/device-management.md``)."""
    return {
        "station": state.station,
        "requests": [customer_request_json(request) for request in state.requests.values()],
    }
