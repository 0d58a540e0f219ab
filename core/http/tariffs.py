"""Tariff routes (docs/tariffs.md): the tariffs and their assignments, read with ``read`` and
changed with ``admin`` through the one door (recorded with the caller's key name); and
re-rating, which computes and changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.log import unix_seconds
from chargeledger.core.http.problems import bad_request, not_found, responses
from chargeledger.core.tariff import Tariff, TariffFields
from chargeledger.projections.rating import RatingSummary, Rerated, rerate, summary
from chargeledger.projections.tariffs import Assignment, TariffState

__all__ = ["ROUTES", "AssignmentRequest", "RatingReport"]


class AssignmentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Assign ``tariff_id`` to ``target`` (``station:<id>`` or ``default``), for the tokens
    of ``group`` only when given."""

    tariff_id: str
    target: str
    group: str | None = None


class RatingReport(msgspec.Struct, kw_only=True):
    """A re-rating: each transaction as billed and as re-rated, and the totals."""

    items: list[Rerated]
    summary: RatingSummary


@get("/api/tariffs", guards=[requires("read")], responses=responses(401, 403), tags=["tariffs"])
async def list_tariffs(ctx: NamedDependency[ApiContext]) -> list[TariffState]:
    """Every defined tariff (its newest definition), sorted by id."""
    return ctx.csms.views.tariffs.all()


@get(
    "/api/tariffs/{tariff_id:str}",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["tariffs"],
)
async def tariff_detail(ctx: NamedDependency[ApiContext], tariff_id: FromPath[str]) -> TariffState:
    """The tariff's newest definition; 404 when it is not defined."""
    state = ctx.csms.views.tariffs.get(tariff_id)
    if state is None:
        raise not_found(f"tariff {tariff_id!r} is not defined")
    return state


@put(
    "/api/tariffs/{tariff_id:str}",
    guards=[requires("admin")],
    responses=responses(400, 401, 403, 503),
    tags=["tariffs"],
    status_code=200,
)
async def define_tariff(
    ctx: NamedDependency[ApiContext],
    tariff_id: FromPath[str],
    data: JSONBody[TariffFields],
    request: Request[Caller, Any, Any],
) -> TariffState:
    """Define the tariff, or redefine it (the body is the whole tariff; transactions
    already started keep the definition they got). Recorded as ``TariffDefined``."""
    try:
        tariff = Tariff(id=tariff_id, **msgspec.structs.asdict(data))
        return await ctx.csms.define_tariff(tariff, caller=request.user)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


@delete(
    "/api/tariffs/{tariff_id:str}",
    guards=[requires("admin")],
    responses=responses(401, 403, 404, 503),
    tags=["tariffs"],
)
async def remove_tariff(
    ctx: NamedDependency[ApiContext], tariff_id: FromPath[str], request: Request[Caller, Any, Any]
) -> None:
    """Remove the tariff (``TariffRemoved``); 404 when it is not defined."""
    if not await ctx.csms.remove_tariff(tariff_id, caller=request.user):
        raise not_found(f"tariff {tariff_id!r} is not defined")


@get(
    "/api/tariff-assignments",
    guards=[requires("read")],
    responses=responses(401, 403),
    tags=["tariffs"],
)
async def list_assignments(
    ctx: NamedDependency[ApiContext], tariff_id: FromQuery[str | None] = None
) -> list[Assignment]:
    """Every assignment (of ``tariff_id`` only, when given), oldest first."""
    return ctx.csms.views.tariffs.assignments(tariff_id)


@post(
    "/api/tariff-assignments",
    guards=[requires("admin")],
    responses=responses(400, 401, 403, 503),
    tags=["tariffs"],
    status_code=200,
)
async def assign_tariff(
    ctx: NamedDependency[ApiContext],
    data: JSONBody[AssignmentRequest],
    request: Request[Caller, Any, Any],
) -> Assignment:
    """Assign a tariff (``TariffAssigned``); 400 for an undefined tariff or a bad target."""
    try:
        return await ctx.csms.assign_tariff(
            data.tariff_id, data.target, data.group, caller=request.user
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


@delete(
    "/api/tariff-assignments",
    guards=[requires("admin")],
    responses=responses(401, 403, 404, 503),
    tags=["tariffs"],
)
async def unassign_tariff(
    ctx: NamedDependency[ApiContext],
    tariff_id: FromQuery[str],
    target: FromQuery[str],
    request: Request[Caller, Any, Any],
    group: FromQuery[str | None] = None,
) -> None:
    """Take back an assignment (``TariffUnassigned``); 404 when there is none."""
    if not await ctx.csms.unassign_tariff(tariff_id, target, group, caller=request.user):
        raise not_found(f"tariff {tariff_id!r} is not assigned to {target!r} for {group!r}")


@get(
    "/api/billing/rate",
    guards=[requires("read")],
    responses=responses(400, 401, 403, 404),
    tags=["billing"],
)
async def rate(
    ctx: NamedDependency[ApiContext],
    tariff: FromQuery[str],
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
) -> RatingReport:
    """Re-rate the transactions that ended between ``since`` and ``until`` (RFC 3339, when
    we answered the stop) with the defined tariff ``tariff``: each one's total under the
    tariff it got and under this one, and the difference. Nothing is recorded."""
    state = ctx.csms.views.tariffs.get(tariff)
    if state is None:
        raise not_found(f"tariff {tariff!r} is not defined")
    views = ctx.csms.views
    items = rerate(
        views.transactions, views.metering, state.tariff, unix_seconds(since), unix_seconds(until)
    )
    return RatingReport(items=items, summary=summary(items, state.tariff.currency))


ROUTES = [
    list_tariffs,
    tariff_detail,
    define_tariff,
    remove_tariff,
    list_assignments,
    assign_tariff,
    unassign_tariff,
    rate,
]
