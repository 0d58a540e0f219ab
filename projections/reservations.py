"""Reservations (1.6 Reservation profile, 2.0.1 block H) folded from the frames that made,
answered, used and ended them, and the timer that expires them.

A reservation is keyed by its station and ``reservationId`` (the CSMS allocates it: the
``reserve_now`` use case takes the one door's fresh request id). Its life:

* ``pending``: our ReserveNow CALL is in the log (whoever asked: use case, message mode, a
  plugin); a later ReserveNow of the same id replaces it, as the station does.
* ``accepted`` or ``rejected``: the station's answer (``station_status``: ``Accepted``,
  ``Faulted``, ``Occupied``, ``Rejected``, ``Unavailable``, or the CALLERROR code).
* ``used``: a 1.6 StartTransaction or a 2.0.1 TransactionEvent ``Started`` carrying its id
  (``transaction_id`` is the transaction it began).
* ``cancelled``: the station accepted our CancelReservation (``ended_by`` ``csms``), or sent a
  2.0.1 ReservationStatusUpdate ``Removed`` (``ended_by`` ``station``).
* ``expired``: its timer fired (``TimerFired`` of :func:`reservation_timer`, ``ended_by``
  ``csms``, at the expiry it was due), or the station sent ReservationStatusUpdate
  ``Expired``. The reservations plugin starts the timer when the ReserveNow is recorded.

A start the reservations do not explain is a :class:`ReservationAnomaly`: one naming a
reservation id the CSMS never sent (``unknown_reservation``) or one no longer open
(``reservation_not_open``), and a start without the reservation's id on a connector (EVSE)
reserved for another token (``reserved_by_other``). Nothing here raises on a malformed frame.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, get_args

import msgspec

from chargeledger.core.events import FrameLogged, Recorded, TimerFired
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import (
    Exchange,
    Kind,
    as_dict,
    as_int,
    as_str,
    decode_frame,
)

__all__ = [
    "OPEN_STATUSES",
    "RESERVATION_ANOMALY_KINDS",
    "ReservationAnomaly",
    "ReservationState",
    "ReservationStatus",
    "ReservationsProjection",
    "parse_time",
    "reservation_json",
    "reservation_timer",
]

ReservationStatus = Literal["pending", "accepted", "rejected", "used", "cancelled", "expired"]
OPEN_STATUSES = frozenset({"pending", "accepted"})
"""Statuses of a reservation that still holds its connector."""

ReservationAnomalyKind = Literal["unknown_reservation", "reservation_not_open", "reserved_by_other"]
RESERVATION_ANOMALY_KINDS: tuple[str, ...] = get_args(ReservationAnomalyKind)


def reservation_timer(station: str, reservation_id: int) -> str:
    """The name of the timer that expires the reservation."""
    return f"reservation:{station}:{reservation_id}"


def parse_time(text: str | None) -> float | None:
    """RFC 3339 text as UNIX seconds (no offset: UTC); ``None`` when it is not a time."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class ReservationState(msgspec.Struct, kw_only=True):
    """One reservation as the log tells it (fields in docs/projections.md)."""

    station: str
    reservation_id: int
    connector_id: int | None
    """1.6 ``connectorId`` (0: any connector of the station); ``None`` in 2.0.1."""
    evse_id: int | None
    """2.0.1 ``evseId`` (``None``: the whole station); ``None`` in 1.6."""
    id_token: str | None
    """1.6 ``idTag``, 2.0.1 ``idToken.idToken``."""
    group_id_token: str | None
    """1.6 ``parentIdTag``, 2.0.1 ``groupIdToken.idToken``."""
    expiry_date: str | None
    """The expiry as sent (1.6 ``expiryDate``, 2.0.1 ``expiryDateTime``); ``expires_at`` is
    it in UNIX seconds (``None``: unreadable)."""
    expires_at: float | None
    status: ReservationStatus = "pending"
    station_status: str | None = None
    """The station's answer to the ReserveNow (or the CALLERROR code)."""
    made_at: float
    made_position: int
    """Log position of the ReserveNow CALL."""
    ended_at: float | None = None
    ended_by: Literal["csms", "station"] | None = None
    transaction_id: int | str | None = None
    """The transaction that used it."""

    @property
    def place(self) -> int | None:
        """The connector (1.6) or EVSE (2.0.1) number, which are one numbering (1.6 connector
        N is EVSE N); 0 or ``None``: the whole station."""
        return self.connector_id if self.connector_id is not None else self.evse_id


class ReservationAnomaly(msgspec.Struct, frozen=True, kw_only=True):
    """A start the reservations do not explain."""

    kind: ReservationAnomalyKind
    station: str
    position: int
    """Log position of our answer to the start."""
    reservation_id: int | None
    transaction_id: int | str | None
    detail: str


class ReservationsProjection:
    """Every reservation, by station and id, and the anomalies of the starts."""

    CONCERNS: ClassVar[frozenset[Kind]]
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._reservations: dict[tuple[str, int], ReservationState] = {}
        self._by_timer: dict[str, tuple[str, int]] = {}
        self.anomalies: list[ReservationAnomaly] = []
        self._made: tuple[int, ReservationState] | None = None

    # -- reading ---------------------------------------------------------------------------

    def get(self, station: str, reservation_id: int) -> ReservationState | None:
        return self._reservations.get((station, reservation_id))

    def all(self, station: str | None = None) -> list[ReservationState]:
        """The reservations (of ``station``), in the order they were made."""
        return [
            state
            for state in self._reservations.values()
            if station is None or state.station == station
        ]

    def open(self) -> list[ReservationState]:
        """The reservations still pending or accepted."""
        return [state for state in self._reservations.values() if state.status in OPEN_STATUSES]

    def made_at(self, position: int) -> ReservationState | None:
        """The reservation whose ReserveNow CALL is the event at ``position``, when it is the
        last one folded (what a react hook asks about the event it is given)."""
        if self._made is not None and self._made[0] == position:
            return self._made[1]
        return None

    # -- folding ---------------------------------------------------------------------------

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange (CALLRESULT or CALLERROR) it completes."""
        event = recorded.event
        if isinstance(event, FrameLogged):
            if event.direction == "out" and '"ReserveNow"' in event.text:
                self._reserve(recorded.position, event)
        elif isinstance(event, TimerFired):
            key = self._by_timer.get(event.name)
            if key is not None:
                self._end(self._reservations[key], "expired", event.due, "csms")
        if exchange is None:
            return
        handler = _HANDLERS.get((exchange.origin, exchange.action))
        if handler is not None:
            handler(self, exchange)

    def _reserve(self, position: int, event: FrameLogged) -> None:
        frame = decode_frame(event.text)
        if frame is None or frame[0] != 2 or len(frame) < 4 or frame[2] != "ReserveNow":
            return
        request = as_dict(frame[3])
        if "reservationId" in request:  # 1.6
            reservation_id = as_int(request.get("reservationId"))
            connector_id, evse_id = as_int(request.get("connectorId")), None
            token, group = as_str(request.get("idTag")), as_str(request.get("parentIdTag"))
            expiry = as_str(request.get("expiryDate"))
        else:
            reservation_id = as_int(request.get("id"))
            connector_id, evse_id = None, as_int(request.get("evseId"))
            token = as_str(as_dict(request.get("idToken")).get("idToken"))
            group = as_str(as_dict(request.get("groupIdToken")).get("idToken"))
            expiry = as_str(request.get("expiryDateTime"))
        if reservation_id is None:
            return
        state = ReservationState(
            station=event.station,
            reservation_id=reservation_id,
            connector_id=connector_id,
            evse_id=evse_id,
            id_token=token,
            group_id_token=group,
            expiry_date=expiry,
            expires_at=parse_time(expiry),
            made_at=event.at,
            made_position=position,
        )
        key = (event.station, reservation_id)
        self._reservations.pop(key, None)  # a replacement is the newest reservation
        self._reservations[key] = state
        self._by_timer[reservation_timer(*key)] = key
        self._made = (position, state)

    def _answered(self, exchange: Exchange) -> None:
        state = self._called(exchange, "reservationId", "id")
        if state is None or state.status != "pending":
            return
        if exchange.error is not None:
            state.status, state.station_status = "rejected", exchange.error.code
            return
        status = as_str(as_dict(exchange.response).get("status"))
        state.station_status = status
        state.status = "accepted" if status == "Accepted" else "rejected"

    def _cancelled(self, exchange: Exchange) -> None:
        state = self._called(exchange, "reservationId")
        accepted = exchange.error is None and as_dict(exchange.response).get("status")
        if state is not None and accepted == "Accepted":
            self._end(state, "cancelled", exchange.at, "csms")

    def _status_update(self, exchange: Exchange) -> None:
        if exchange.error is not None:
            return
        state = self._called(exchange, "reservationId")
        update = as_dict(exchange.request).get("reservationUpdateStatus")
        if state is not None and update in ("Expired", "Removed"):
            status: ReservationStatus = "expired" if update == "Expired" else "cancelled"
            self._end(state, status, exchange.at, "station")

    def _called(self, exchange: Exchange, *fields: str) -> ReservationState | None:
        request = as_dict(exchange.request)
        for field in fields:
            reservation_id = as_int(request.get(field))
            if reservation_id is not None:
                return self._reservations.get((exchange.station, reservation_id))
        return None

    @staticmethod
    def _end(
        state: ReservationState,
        status: ReservationStatus,
        at: float,
        by: Literal["csms", "station"],
    ) -> None:
        if state.status in OPEN_STATUSES:
            state.status, state.ended_at, state.ended_by = status, at, by

    def _start_16(self, exchange: Exchange) -> None:
        if exchange.error is not None:
            return
        request = as_dict(exchange.request)
        self._start(
            exchange,
            as_int(request.get("reservationId")),
            as_int(request.get("connectorId")),
            as_str(request.get("idTag")),
            as_int(as_dict(exchange.response).get("transactionId")),
        )

    def _transaction_event(self, exchange: Exchange) -> None:
        request = as_dict(exchange.request)
        if exchange.error is not None or request.get("eventType") != "Started":
            return
        self._start(
            exchange,
            as_int(request.get("reservationId")),
            as_int(as_dict(request.get("evse")).get("id")),
            as_str(as_dict(request.get("idToken")).get("idToken")),
            as_str(as_dict(request.get("transactionInfo")).get("transactionId")),
        )

    def _start(
        self,
        exchange: Exchange,
        reservation_id: int | None,
        place: int | None,
        token: str | None,
        transaction_id: int | str | None,
    ) -> None:
        station = exchange.station

        def flag(kind: ReservationAnomalyKind, named: int | None, detail: str) -> None:
            self.anomalies.append(
                ReservationAnomaly(
                    kind=kind,
                    station=station,
                    position=exchange.result_position,
                    reservation_id=named,
                    transaction_id=transaction_id,
                    detail=detail,
                )
            )

        if reservation_id is not None:
            state = self._reservations.get((station, reservation_id))
            if state is None:
                flag("unknown_reservation", reservation_id, "the CSMS never made it")
            elif state.status not in OPEN_STATUSES:
                flag("reservation_not_open", reservation_id, f"it is {state.status}")
            else:
                state.status, state.transaction_id = "used", transaction_id
                state.ended_at, state.ended_by = exchange.at, "station"
            return
        for state in self._reservations.values():
            if (
                state.station == station
                and state.status == "accepted"
                and place
                and state.place == place
                and token != state.id_token
                and (state.expires_at is None or exchange.at < state.expires_at)
            ):
                flag(
                    "reserved_by_other",
                    state.reservation_id,
                    f"connector {place} is reserved for {state.id_token!r}, started by {token!r}",
                )


_HANDLERS: dict[tuple[str, str], Any] = {
    ("out", "ReserveNow"): ReservationsProjection._answered,
    ("out", "CancelReservation"): ReservationsProjection._cancelled,
    ("in", "ReservationStatusUpdate"): ReservationsProjection._status_update,
    ("in", "StartTransaction"): ReservationsProjection._start_16,
    ("in", "TransactionEvent"): ReservationsProjection._transaction_event,
}
ReservationsProjection.CONCERNS = frozenset({TimerFired, *(action for _, action in _HANDLERS)})


def _time(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def reservation_json(state: ReservationState) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``)."""
    return {
        "station": state.station,
        "reservation_id": state.reservation_id,
        "status": state.status,
        "station_status": state.station_status,
        "connector_id": state.connector_id,
        "evse_id": state.evse_id,
        "id_token": state.id_token,
        "group_id_token": state.group_id_token,
        "expiry_date": state.expiry_date,
        "expires_at": _time(state.expires_at),
        "made_at": _time(state.made_at),
        "made_position": state.made_position,
        "ended_at": _time(state.ended_at),
        "ended_by": state.ended_by,
        "transaction_id": state.transaction_id,
    }
