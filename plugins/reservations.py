"""Reservations (1.6 Reservation, 2.0.1 H): the answer to ReservationStatusUpdate and the
timers that expire reservations.

ReserveNow and CancelReservation are use cases (``CentralSystem.reserve_now`` and
``cancel_reservation``); the reservations projection folds what they did. This block starts,
when our ReserveNow CALL is recorded, a timer due at the reservation's expiry; its
``TimerFired`` ends the reservation as ``expired`` unless the station used or ended it first
(the fold ignores a timer of a reservation no longer open). Timers pending when the server
stops are re-armed from the log by the dispatcher, so nothing here runs at startup.

A 2.0.1 ReservationStatusUpdate (``Expired``, ``Removed``) is acknowledged; the projection
folds it.
"""

from __future__ import annotations

from chargeledger.core.plugin import (
    Command,
    Recorded,
    Reply,
    StartTimer,
    Views,
    answers,
    hookimpl,
    reacts_to,
    reservation_timer,
)

__all__ = ["chargeledger_answer_call", "chargeledger_react"]


@hookimpl
@answers("ReservationStatusUpdate")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]


@hookimpl
@reacts_to("ReserveNow")
def chargeledger_react(recorded: Recorded, views: Views) -> list[Command]:
    """A timer due at the expiry of the reservation whose ReserveNow is ``recorded`` (none
    when its expiry cannot be read: it is left to the station)."""
    made = views.reservations.made_at(recorded.position)
    if made is None or made.expires_at is None:
        return []
    return [StartTimer(reservation_timer(made.station, made.reservation_id), made.expires_at)]
