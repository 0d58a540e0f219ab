"""Firmware routes: a station's firmware (updating one station is the use case
``update_firmware`` of the commands route) and the firmware campaigns
(docs/device-management.md)."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from chargeledger.core.firmware import CampaignRequest
from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import bad_request, not_found, responses
from chargeledger.projections.firmware import (
    CampaignState,
    StationFirmware,
    campaign_json,
    firmware_json,
)

__all__ = ["ROUTES"]


@get(
    "/api/stations/{station_id:str}/firmware",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["firmware"],
)
async def station_firmware(
    ctx: NamedDependency[ApiContext], station_id: FromPath[str]
) -> dict[str, Any]:
    """The station's firmware version (its last BootNotification), its current update
    (phase, last status and its time, request id, version before and after, finding) and
    earlier ones, and what it publishes; 404 when the station was never seen nor
    registered."""
    views = ctx.csms.views
    state = views.firmware.get(station_id)
    if state is None:
        if views.stations.get(station_id) is None and views.registry.get(station_id) is None:
            raise not_found(f"station {station_id!r} was never seen nor registered")
        state = StationFirmware(station=station_id)
    return firmware_json(state)


@post(
    "/api/firmware/campaigns",
    guards=[requires("operator")],
    responses=responses(400, 401, 403, 503),
    tags=["firmware"],
    status_code=201,
)
async def create_campaign(
    ctx: NamedDependency[ApiContext],
    data: JSONBody[CampaignRequest],
    request: Request[Caller, Any, Any],
) -> dict[str, Any]:
    """Start a firmware campaign (recorded as ``CampaignCreated``; the firmware plugin rolls
    it out); 400 when the selection selects nothing (or names an unknown site, or a station
    never seen nor registered) or the firmware arguments are wrong for a selected station."""
    try:
        campaign = await ctx.csms.create_campaign(data, caller=request.user)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return campaign_json(campaign)


@get(
    "/api/firmware/campaigns",
    guards=[requires("read")],
    responses=responses(401, 403),
    tags=["firmware"],
)
async def list_campaigns(
    ctx: NamedDependency[ApiContext],
    status: FromQuery[
        Literal["running", "paused", "completed", "stopped", "cancelled"] | None
    ] = None,
) -> list[dict[str, Any]]:
    """Every campaign, oldest first, with its progress counts (``status`` keeps one:
    ``running``, ``paused``, ``completed``, ``stopped``, ``cancelled``)."""
    return [
        campaign_json(campaign)
        for campaign in ctx.csms.views.firmware.campaigns()
        if status is None or campaign.status == status
    ]


def _campaign(ctx: ApiContext, campaign_id: str) -> CampaignState:
    campaign = ctx.csms.views.firmware.campaign(campaign_id)
    if campaign is None:
        raise not_found(f"no firmware campaign {campaign_id!r}")
    return campaign


@get(
    "/api/firmware/campaigns/{campaign_id:str}",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["firmware"],
)
async def show_campaign(
    ctx: NamedDependency[ApiContext], campaign_id: FromPath[str]
) -> dict[str, Any]:
    """The campaign: its settings, status, progress counts and each station's status,
    phase and reason; 404 when there is no such campaign."""
    return campaign_json(_campaign(ctx, campaign_id))


def _changer(verb: str, doc: str) -> Any:
    """The route ``POST /api/firmware/campaigns/{id}/<verb>`` (operator): the
    ``CentralSystem`` method ``<verb>_campaign``; 404 when there is no such campaign."""

    async def change(
        ctx: NamedDependency[ApiContext],
        campaign_id: FromPath[str],
        request: Request[Caller, Any, Any],
    ) -> dict[str, Any]:
        _campaign(ctx, campaign_id)
        method = getattr(ctx.csms, f"{verb}_campaign")
        campaign: CampaignState = await method(campaign_id, caller=request.user)
        return campaign_json(campaign)

    change.__name__ = change.__qualname__ = f"{verb}_campaign"
    change.__doc__ = doc
    return post(
        f"/api/firmware/campaigns/{{campaign_id:str}}/{verb}",
        guards=[requires("operator")],
        responses=responses(401, 403, 404, 503),
        tags=["firmware"],
        status_code=200,
    )(change)


cancel_campaign = _changer(
    "cancel",
    """Cancel the running or paused campaign (recorded as ``CampaignCancelled``): no further
    station is updated, those updating finish; an ended campaign is returned unchanged; 404
    when there is no such campaign.""",
)
pause_campaign = _changer(
    "pause",
    """Pause the running campaign (recorded as ``CampaignPaused``): no station is updated
    until it is resumed, those updating finish; 404 when there is no such campaign.""",
)
resume_campaign = _changer(
    "resume",
    """Resume the paused campaign (recorded as ``CampaignResumed``): its next rollout step is
    due at once; 404 when there is no such campaign.""",
)


ROUTES = [
    station_firmware,
    create_campaign,
    list_campaigns,
    show_campaign,
    cancel_campaign,
    pause_campaign,
    resume_campaign,
]
