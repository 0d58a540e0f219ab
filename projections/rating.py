"""Re-rating: what ended transactions would cost under another tariff, beside what they cost
under the tariff they got (docs/tariffs.md). Reads the views, changes nothing: the
event-sourced answer to "the tariff was wrong last month" is a report of the differences,
not a rewritten log."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from chargeledger.core.tariff import Tariff
from chargeledger.projections.metering import MeteringProjection
from chargeledger.projections.transactions import TransactionsProjection

__all__ = ["RatingSummary", "Rerated", "rerate", "summary"]


class Rerated(msgspec.Struct, frozen=True, kw_only=True):
    """One ended transaction, as billed and as re-rated."""

    station: str
    transaction_id: int | str
    ended_at: float | None
    """When we answered its stop (UNIX seconds)."""
    tariff_id: str | None
    """The tariff it got (``None``: none applied, it was not priced)."""
    total: Decimal | None
    """Its cost under that tariff."""
    new_tariff_id: str
    new_total: Decimal
    """Its cost under the tariff asked for."""
    difference: Decimal | None
    """``new_total - total`` (``None`` when it was not priced or the currencies differ)."""
    currency: str
    """The currency of ``new_total``."""


class RatingSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The totals of a re-rating (of the priced transactions in the new tariff's currency)."""

    transactions: int
    changed: int
    """How many cost something else now (or were not priced before)."""
    total: Decimal
    new_total: Decimal
    difference: Decimal
    currency: str


def rerate(
    transactions: TransactionsProjection,
    metering: MeteringProjection,
    tariff: Tariff,
    since: float | None = None,
    until: float | None = None,
) -> list[Rerated]:
    """Every transaction that ended (its stop answered) within ``[since, until]``, in the
    order they started, costed under its own tariff and under ``tariff``."""
    found = []
    for transaction in transactions.all():
        ended = transaction.ended_at
        if (
            transaction.status != "ended"
            or ended is None
            or (since is not None and ended < since)
            or (until is not None and ended > until)
        ):
            continue
        old = metering.cost(transaction)
        new = metering.cost(transaction, tariff)
        assert new is not None
        same = old is not None and old.currency == new.currency
        found.append(
            Rerated(
                station=transaction.station,
                transaction_id=transaction.transaction_id,
                ended_at=ended,
                tariff_id=None if old is None else old.tariff_id,
                total=None if old is None else old.total,
                new_tariff_id=tariff.id,
                new_total=new.total,
                difference=new.total - old.total if same and old is not None else None,
                currency=new.currency,
            )
        )
    return found


def summary(rated: list[Rerated], currency: str) -> RatingSummary:
    """The totals of ``rated`` in ``currency`` (the transactions priced in another are left
    out of ``total`` and ``difference``)."""
    comparable = [r for r in rated if r.difference is not None and r.total is not None]
    return RatingSummary(
        transactions=len(rated),
        changed=sum(r.difference != 0 for r in rated),
        total=sum((r.total for r in comparable if r.total is not None), Decimal(0)),
        new_total=sum((r.new_total for r in rated), Decimal(0)),
        difference=sum((r.difference for r in comparable if r.difference), Decimal(0)),
        currency=currency,
    )
