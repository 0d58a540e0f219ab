"""Site routes: sites (stations sharing a grid connection's limit, nestable) and the
allocations the site_limits plugin decided (docs/smart-charging.md#site-limits)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from chargeledger.core.events import SitePeriod
from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import bad_request, not_found, responses
from chargeledger.projections.sites import site_json

__all__ = ["ROUTES", "SitePeriodRequest", "SiteRequest"]


class SiteRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A site's definition: its ``stations``, its ``parent`` site, its ``limit`` in ``unit``
    (none: only its parents limit it), the smallest allocation a transaction gets when there
    is room (``min_allocation``), the smallest increase sent (``deadband``) and the fewest
    seconds between raises (``min_interval``); ``strategy`` ``equal`` shares (at most
    ``max_allocation`` each) or ``priority`` (stations' ``priorities``, higher first, each up
    to ``max_allocation``); ``phase_limits`` per phase (L1, L2, L3), ``station_phases`` for
    stations on fewer than three phases, ``periods``: daily periods (UTC, ``start`` and
    ``end`` as HH:MM) with another ``limit`` and/or ``phase_limits``."""

    stations: list[str] = []
    parent: str | None = None
    limit: float | None = None
    unit: Literal["A", "W"] = "A"
    min_allocation: float = 0.0
    deadband: float = 0.0
    min_interval: float = 0.0
    description: str = ""
    strategy: Literal["equal", "priority"] = "equal"
    priorities: dict[str, int] = {}
    max_allocation: float | None = None
    phase_limits: dict[str, float] = {}
    station_phases: dict[str, list[str]] = {}
    periods: list[SitePeriodRequest] = []


class SitePeriodRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A daily period (UTC): from ``start`` to ``end`` (HH:MM or HH:MM:SS; ``end`` before
    ``start``: across midnight) the site's ``limit`` and/or ``phase_limits`` are these."""

    start: str
    end: str
    limit: float | None = None
    phase_limits: dict[str, float] = {}


@get("/api/sites", guards=[requires("read")], responses=responses(401, 403), tags=["sites"])
async def list_sites(ctx: NamedDependency[ApiContext]) -> list[dict[str, Any]]:
    """Every site with the allocations on its stations, by name."""
    sites = ctx.csms.views.sites
    return [site_json(sites, state) for state in sites.all()]


@get(
    "/api/sites/{site:str}",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["sites"],
)
async def get_site(ctx: NamedDependency[ApiContext], site: FromPath[str]) -> dict[str, Any]:
    """The site and the allocations decided on its stations (and its sub-sites'); 404 when
    there is no such site."""
    sites = ctx.csms.views.sites
    state = sites.get(site)
    if state is None:
        raise not_found(f"no site {site!r}")
    return site_json(sites, state)


@put(
    "/api/sites/{site:str}",
    guards=[requires("admin")],
    responses=responses(400, 401, 403, 503),
    tags=["sites"],
    status_code=200,
)
async def define_site(
    ctx: NamedDependency[ApiContext],
    site: FromPath[str],
    data: JSONBody[SiteRequest],
    request: Request[Caller, Any, Any],
) -> dict[str, Any]:
    """Define (or redefine) the site; recorded as ``SiteDefined``, then the site_limits
    plugin allocates its limit. 400 for an unknown parent, a cycle, a negative number, an
    unknown phase or a period's time that is not HH:MM[:SS]."""
    try:
        state = await ctx.csms.define_site(
            site,
            stations=data.stations,
            parent=data.parent,
            limit=data.limit,
            unit=data.unit,
            min_allocation=data.min_allocation,
            deadband=data.deadband,
            min_interval=data.min_interval,
            description=data.description,
            strategy=data.strategy,
            priorities=data.priorities,
            max_allocation=data.max_allocation,
            phase_limits=data.phase_limits,
            station_phases=data.station_phases,
            periods=[SitePeriod(**msgspec.structs.asdict(p)) for p in data.periods],
            caller=request.user,
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return site_json(ctx.csms.views.sites, state)


@delete(
    "/api/sites/{site:str}",
    guards=[requires("admin")],
    responses=responses(401, 403, 404, 503),
    tags=["sites"],
)
async def delete_site(
    ctx: NamedDependency[ApiContext], site: FromPath[str], request: Request[Caller, Any, Any]
) -> None:
    """Delete the site (recorded as ``SiteDeleted``); 404 when there is no such site."""
    if not await ctx.csms.delete_site(site, caller=request.user):
        raise not_found(f"no site {site!r}")


ROUTES = [list_sites, get_site, define_site, delete_site]
