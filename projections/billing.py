"""The one billing rule: when a transaction is billable as it stands, and its charge detail record.

Every surface that says "complete" or "billable" asks this module: the transactions
projection's ``completeness`` (``chargeledger transactions``), ``/api/transactions?complete=``,
the charge detail record export (JSON and CSV) and the audit's ``transaction_never_ended`` /
``transaction_not_billable`` findings. A transaction is billable when :func:`billing_doubts`
finds nothing wrong with it; what each doubt means is in ``docs/projections.md``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Literal, get_args

import msgspec

from chargeledger.projections.exchanges import is_v16

if TYPE_CHECKING:  # the projection asks this module for its completeness: no import cycle
    from chargeledger.projections.cost import Cost
    from chargeledger.projections.transactions import TransactionState

__all__ = [
    "BILLING_DOUBTS",
    "BILLING_DOUBTS_16",
    "CDR_FIELDS",
    "BillingDoubt",
    "ChargeDetailRecord",
    "billing_doubts",
    "charge_detail_record",
    "is_billable",
]

BillingDoubt = Literal[
    "not_ended",
    "timestamp_missing",
    "meter_reading_missing",
    "energy_unknown",
    "transaction_id_reused",
    "duplicate_start",
    "started_event_missing",
    "seq_no_gap",
]
BILLING_DOUBTS: tuple[str, ...] = get_args(BillingDoubt)
"""Every doubt, in the order :func:`billing_doubts` reports them."""

BILLING_DOUBTS_16: tuple[BillingDoubt, ...] = ("transaction_id_reused", "duplicate_start")
"""1.6 anomalies that make an ended transaction unfit for billing as it stands: its id was
issued to another start as well, or it is a second transaction for one physical start. Each
is reported as the doubt of the same name."""


def billing_doubts(transaction: TransactionState) -> list[BillingDoubt]:
    """Why ``transaction`` cannot be billed as it stands, in :data:`BILLING_DOUBTS` order;
    empty when it can.

    * ``not_ended``: still active (no stop, no Ended event): nothing else is judged.
    * ``timestamp_missing``: the station's start or stop timestamp is unknown (2.0.1: the
      Started event, which carries the start time, never arrived).
    * ``meter_reading_missing``: no start or no stop register reading (1.6 ``meterStart`` /
      ``meterStop``; 2.0.1 readings in the transaction's events, the last one in Ended).
    * ``energy_unknown``: the energy cannot be computed or is negative (stop below start).
    * ``transaction_id_reused``, ``duplicate_start`` (1.6): the anomaly of that name is on
      the transaction (see :data:`BILLING_DOUBTS_16`).
    * ``started_event_missing``, ``seq_no_gap`` (2.0.1): the Started event, or an event
      between it and the last one, never arrived: what was charged may be more.

    A doubt is never cleared by anything but the log: a late 2.0.1 event that fills a gap
    makes the transaction billable on the next fold, a 1.6 reused id never does.
    """
    if transaction.status != "ended":
        return ["not_ended"]
    doubts: list[BillingDoubt] = []
    if transaction.start_timestamp is None or transaction.stop_timestamp is None:
        doubts.append("timestamp_missing")
    if transaction.meter_start is None or transaction.meter_stop is None:
        doubts.append("meter_reading_missing")
    if transaction.energy_wh is None:
        doubts.append("energy_unknown")
    if is_v16(transaction.protocol):
        kinds = {anomaly.kind for anomaly in transaction.anomalies}
        doubts += [doubt for doubt in BILLING_DOUBTS_16 if doubt in kinds]
    else:
        if transaction.started_seq_no is None:
            doubts.append("started_event_missing")
        if transaction.seq_no_gaps:
            doubts.append("seq_no_gap")
    return doubts


def is_billable(transaction: TransactionState) -> bool:
    """Whether ``transaction`` can be billed as it stands: :func:`billing_doubts` is empty."""
    return not billing_doubts(transaction)


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
    """Billable as it stands: ``doubts`` is empty (see :func:`billing_doubts`)."""
    anomalies: list[str]
    """The kinds of the transaction's anomalies, in log order."""
    positions: list[int]
    """Log positions of the frames it was derived from."""
    doubts: list[BillingDoubt]
    """Why it is not billable as it stands (:func:`billing_doubts`); empty when ``complete``."""
    tariff_id: str | None = None
    """The tariff it got when it started (docs/tariffs.md); ``None`` (and no cost): none applied."""
    currency: str | None = None
    cost_energy: Decimal | None = None
    cost_time: Decimal | None = None
    """Charging time."""
    cost_parking: Decimal | None = None
    """Plugged in without charging."""
    cost_session_fee: Decimal | None = None
    cost_adjustment: Decimal | None = None
    """What the tariff's minimum added or its maximum took off."""
    cost_net: Decimal | None = None
    cost_tax: Decimal | None = None
    cost_total: Decimal | None = None
    """What the driver pays: net plus tax (:func:`chargeledger.projections.cost.cost`)."""


CDR_FIELDS: tuple[str, ...] = ChargeDetailRecord.__struct_fields__
"""The CSV columns, in order."""


def charge_detail_record(
    transaction: TransactionState, cost: Cost | None = None
) -> ChargeDetailRecord:
    """The CDR of an ended transaction (its stop's answer is its newest evidence), with its
    ``cost`` (``views.metering.cost(transaction)``) when it was priced.

    Raises ``ValueError`` for an active transaction: it has no CDR yet."""
    if transaction.status != "ended":
        raise ValueError(
            f"transaction {transaction.transaction_id!r} of {transaction.station} is active:"
            " no charge detail record before it ends"
        )
    reason = transaction.stop_reason
    if reason is None and is_v16(transaction.protocol):
        reason = "Local"
    doubts = billing_doubts(transaction)
    record = ChargeDetailRecord(
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
        complete=not doubts,
        anomalies=[anomaly.kind for anomaly in transaction.anomalies],
        positions=list(transaction.positions),
        doubts=doubts,
    )
    if cost is None:
        return record
    return msgspec.structs.replace(
        record,
        tariff_id=cost.tariff_id,
        currency=cost.currency,
        cost_energy=cost.energy,
        cost_time=cost.time,
        cost_parking=cost.parking,
        cost_session_fee=cost.session_fee,
        cost_adjustment=cost.adjustment,
        cost_net=cost.net,
        cost_tax=cost.tax,
        cost_total=cost.total,
    )
