"""Transaction and billing routes: transactions with filters, charge detail records (JSON, CSV)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.log import PAGE, unix_seconds
from chargeledger.core.http.models import CdrPage, TransactionPage
from chargeledger.core.http.problems import responses
from chargeledger.core.times import rfc3339
from chargeledger.projections import TransactionState
from chargeledger.projections.billing import (
    CDR_FIELDS,
    ChargeDetailRecord,
    charge_detail_record,
    is_billable,
)

__all__ = ["ROUTES"]


def _within(at: float | None, since: datetime | None, until: datetime | None) -> bool:
    low, high = unix_seconds(since), unix_seconds(until)
    return (low is None or (at is not None and at >= low)) and (
        high is None or (at is not None and at <= high)
    )


@get(
    "/api/transactions",
    guards=[requires("read")],
    responses=responses(400, 401, 403),
    tags=["transactions"],
)
async def transactions(
    ctx: NamedDependency[ApiContext],
    station: FromQuery[str | None] = None,
    status: FromQuery[Literal["active", "ended"] | None] = None,
    complete: FromQuery[bool | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    after: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE)] = 100,
) -> TransactionPage:
    """Transactions in the order they started (``started_position``), with anomalies.

    Filters: ``station``, ``status``, ``complete`` (billable as it stands: the one billing
    rule, as the CDR's ``complete``), ``since`` / ``until`` on when we answered the start
    (RFC 3339). Cursor pagination: pass ``after=next`` for the next page; ``next`` is
    ``null`` on the last."""
    found: list[TransactionState] = []
    for transaction in ctx.csms.views.transactions.all():
        if (
            transaction.started_position > after
            and (station is None or transaction.station == station)
            and (status is None or transaction.status == status)
            and (complete is None or is_billable(transaction) == complete)
            and _within(transaction.started_at, since, until)
        ):
            if len(found) == limit:
                return TransactionPage(items=found, next=found[-1].started_position)
            found.append(transaction)
    return TransactionPage(items=found, next=None)


def _records(
    ctx: ApiContext,
    station: str | None,
    complete: bool | None,
    since: datetime | None,
    until: datetime | None,
    after: int,
) -> Iterator[ChargeDetailRecord]:
    """CDRs of ended transactions in cursor order, filtered (``since`` / ``until`` on when
    we answered the stop)."""
    views = ctx.csms.views
    ended = (t for t in views.transactions.all() if t.status == "ended")
    records = (charge_detail_record(t, views.metering.cost(t)) for t in ended)
    for record in sorted(records, key=lambda r: r.cursor):
        if (
            record.cursor > after
            and (station is None or record.station == station)
            and (complete is None or record.complete == complete)
            and _within(record.ended_at, since, until)
        ):
            yield record


_CDR_DOC = (
    "Each record: station, EVSE / connector, id token, the station's start and stop timestamps, "
    "our times, meter start and stop and energy (Wh), stop reason, `complete` (billable as it "
    "stands: the one billing rule of `chargeledger transactions` and the audit), anomaly kinds, "
    "the log positions it was derived from, and `doubts` (why it is not billable: "
    "`timestamp_missing`, `meter_reading_missing`, `energy_unknown`, 1.6 "
    "`transaction_id_reused` / `duplicate_start`, 2.0.1 `started_event_missing` / "
    "`seq_no_gap`; empty when `complete`), and when a tariff priced it (docs/tariffs.md) "
    "`tariff_id`, `currency` and the cost: `cost_energy`, `cost_time`, `cost_parking`, "
    "`cost_session_fee`, `cost_adjustment`, `cost_net`, `cost_tax`, `cost_total` (decimal "
    "strings). Filters: `station`, `complete`, `since` / `until` "
    "on when we answered the stop (RFC 3339). Ordered by `cursor` (the stop's log position): "
    "asking for `after` the last cursor seen never misses or repeats a record."
)


@get(
    "/api/billing/cdrs",
    guards=[requires("read")],
    responses=responses(400, 401, 403),
    tags=["billing"],
    description=_CDR_DOC,
)
async def cdrs(
    ctx: NamedDependency[ApiContext],
    station: FromQuery[str | None] = None,
    complete: FromQuery[bool | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    after: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE)] = 100,
) -> CdrPage:
    """Charge detail records of ended transactions, a page at a time."""
    records = _records(ctx, station, complete, since, until, after)
    items = [record for _, record in zip(range(limit), records, strict=False)]
    more = next(records, None) is not None
    return CdrPage(items=items, next=items[-1].cursor if more else None)


_TIMES = frozenset(name for name in CDR_FIELDS if name.endswith("_at"))
"""The fields of our own times: UNIX seconds in JSON, RFC 3339 UTC text in CSV."""


def _cell(name: str, value: object) -> str:
    """A CSV cell: absent is empty, booleans as in JSON, lists space-separated, our times
    RFC 3339 UTC with microseconds."""
    if value is None:
        return ""
    if name in _TIMES:
        assert isinstance(value, float | int)
        return rfc3339(value, 6)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


@get(
    "/api/billing/cdrs.csv",
    guards=[requires("read")],
    responses=responses(400, 401, 403),
    tags=["billing"],
    media_type="text/csv",
    description=_CDR_DOC
    + " CSV: one header row, columns in the JSON fields' order; lists are space-separated, "
    "absent values empty, `started_at` / `ended_at` RFC 3339 UTC (UNIX seconds in JSON).",
)
async def cdrs_csv(
    ctx: NamedDependency[ApiContext],
    station: FromQuery[str | None] = None,
    complete: FromQuery[bool | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    after: Annotated[int, QueryParameter(ge=0)] = 0,
) -> Response[str]:
    """Every matching charge detail record as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CDR_FIELDS)
    for record in _records(ctx, station, complete, since, until, after):
        writer.writerow(map(_cell, CDR_FIELDS, msgspec.structs.astuple(record)))
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="cdrs.csv"'},
    )


ROUTES = [transactions, cdrs, cdrs_csv]
