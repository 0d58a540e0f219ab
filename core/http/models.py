"""The HTTP API's bodies: msgspec structs beside the projections' and events' own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.usecases import USE_CASES, UseCaseArgs
from chargeledger.projections import Registration, StationState, TransactionState
from chargeledger.schemas import OCPP16

__all__ = [
    "CDR_FIELDS",
    "CdrPage",
    "ChargeDetailRecord",
    "EventPage",
    "LoggedEvent",
    "Page",
    "Readiness",
    "RegistrationRequest",
    "StationView",
    "TransactionPage",
    "UseCase",
    "charge_detail_record",
    "is_complete",
    "logged_event",
]

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], kw_only=True):
    """One page of a list. ``next`` is the cursor to pass as ``after`` for the next page;
    ``null`` when there is nothing more (yet)."""

    items: list[T]
    next: int | None


class LoggedEvent(msgspec.Struct, kw_only=True):
    """A recorded event: its log position, stream and version, its kind (the event type's
    name, e.g. ``FrameLogged``) and the event's own fields as ``chargeledger.core.events``
    defines them (a frame's ``text`` is verbatim; times are UNIX seconds).

    ``event`` is an open object rather than a union of the event types: they carry no tag of
    their own (``kind`` is the tag), which an OpenAPI union would need."""

    position: int
    stream: str
    version: int
    kind: str
    event: dict[str, Any]


class EventPage(Page[LoggedEvent]):
    """A page of the event log; ``next`` is a log position."""


class TransactionPage(Page[TransactionState]):
    """A page of transactions; ``next`` is the last item's ``started_position``."""


def logged_event(recorded: Recorded) -> LoggedEvent:
    return LoggedEvent(
        position=recorded.position,
        stream=recorded.stream,
        version=recorded.version,
        kind=type(recorded.event).__name__,
        event=msgspec.to_builtins(recorded.event),
    )


class StationView(msgspec.Struct, kw_only=True):
    """A station: its state folded from the log (a registered station never seen yet has the
    defaults) and its registration, ``null`` when not registered."""

    state: StationState
    registration: Registration | None


class RegistrationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an admin says about a station they register."""

    description: str = ""


class Readiness(msgspec.Struct, kw_only=True):
    """The store answered; ``position`` is its newest event's."""

    ready: bool
    position: int


# -- use cases: the argument structs of the use-case table, tagged by ``use_case`` ----------

if TYPE_CHECKING:
    UseCase = UseCaseArgs
else:
    UseCase = Union[tuple(use_case.args for use_case in USE_CASES.values())]  # noqa: UP007
"""The body of a use-case command: one of the table's argument structs, tagged by
``use_case`` (derived from :data:`~chargeledger.core.usecases.USE_CASES`)."""


# -- billing ---------------------------------------------------------------------------------


def is_complete(transaction: TransactionState) -> bool:
    """Whether a transaction can be billed as is: ended, with both station timestamps and
    both meter readings, and a non-negative energy. Anomalies are reported beside it."""
    return (
        transaction.status == "ended"
        and transaction.start_timestamp is not None
        and transaction.stop_timestamp is not None
        and transaction.meter_start is not None
        and transaction.meter_stop is not None
        and transaction.energy_wh is not None
    )


class ChargeDetailRecord(msgspec.Struct, kw_only=True):
    """An ended transaction as billing needs it. Field order is the CSV column order."""

    cursor: int
    """Log position of the stop's answer: CDRs are listed in this order, so a consumer that
    asks for those ``after`` the last cursor it saw misses none and sees none twice."""
    transaction_id: int | str
    station: str
    protocol: str
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    start_time: str | None
    """The station's start timestamp, as sent."""
    stop_time: str | None
    """The station's stop timestamp, as sent."""
    started_at: float
    """When we answered the start (UNIX seconds)."""
    ended_at: float | None
    """When we answered the stop (UNIX seconds)."""
    meter_start_wh: float | None
    meter_stop_wh: float | None
    energy_wh: float | None
    stop_reason: str | None
    """As sent; a 1.6 stop without a reason is ``Local`` (the 1.6 default)."""
    complete: bool
    """See :func:`is_complete`."""
    anomalies: list[str]
    """The kinds of the transaction's anomalies, in log order."""
    positions: list[int]
    """Log positions of the frames it was derived from."""


CDR_FIELDS: tuple[str, ...] = ChargeDetailRecord.__struct_fields__


def charge_detail_record(transaction: TransactionState) -> ChargeDetailRecord:
    """The CDR of an ended transaction (its stop's answer is its newest evidence)."""
    reason = transaction.stop_reason
    if reason is None and transaction.protocol == OCPP16:
        reason = "Local"
    return ChargeDetailRecord(
        cursor=transaction.positions[-1],
        transaction_id=transaction.transaction_id,
        station=transaction.station,
        protocol=transaction.protocol,
        evse_id=transaction.evse_id,
        connector_id=transaction.connector_id,
        id_token=transaction.id_tag,
        start_time=transaction.start_timestamp,
        stop_time=transaction.stop_timestamp,
        started_at=transaction.started_at,
        ended_at=transaction.ended_at,
        meter_start_wh=transaction.meter_start,
        meter_stop_wh=transaction.meter_stop,
        energy_wh=transaction.energy_wh,
        stop_reason=reason,
        complete=is_complete(transaction),
        anomalies=[anomaly.kind for anomaly in transaction.anomalies],
        positions=list(transaction.positions),
    )


class CdrPage(Page[ChargeDetailRecord]):
    """A page of charge detail records; ``next`` is the last item's ``cursor``."""
