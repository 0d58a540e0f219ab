"""Firmware campaigns as asked: the request, its station selection and checks, and the
``CampaignCreated`` event it makes (docs/device-management.md); and the rollout's decisions,
as recorded and as a replay through today's plugins takes them again.

The selection is resolved when the campaign is made, against the stations projection, and
recorded as the explicit list of stations: what the campaign covers never changes with the
stations that connect later, and a replay sees the same list.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from chargeledger.core.commands import Command, SendCall, StartTimer
from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.events import (
    CampaignCreated,
    CampaignResumed,
    CommandRequested,
    Event,
    Recorded,
    TimerFired,
    TimerStarted,
)
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.usecases_firmware import UpdateFirmwareArgs, update_firmware
from chargeledger.projections import Views
from chargeledger.projections.firmware import read_campaign_timer
from chargeledger.schemas import OCPP16, OCPP201

__all__ = [
    "CAMPAIGN_DECISIONS",
    "PLUGINS_CALLER",
    "CampaignRequest",
    "Decision",
    "DecisionFamily",
    "DecisionKind",
    "campaign_created",
    "decides",
    "decisions_in",
    "recorded_decision",
    "recorded_decisions",
    "replayed_decisions",
    "select_stations",
    "sort_decisions",
]

PLUGINS_CALLER = "plugins"
"""The name the one door records plugins' commands under (``chargeledger.core.api.PLUGINS``)."""


class CampaignRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A firmware campaign: the firmware (as ``update_firmware`` takes it; without
    ``retrieve_date`` each station retrieves it when the campaign updates it), the stations
    (the explicit ``stations`` and/or those whose last BootNotification names ``vendor``,
    ``model``, ``firmware_version``), and the rollout: at most ``max_in_flight`` stations
    updating at once, a step every ``interval`` seconds, stopped once more than
    ``max_failure_ratio`` of the stations failed; a station still updating after
    ``station_timeout`` seconds has failed."""

    location: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    retrieve_date: str | None = None
    install_date: str | None = None
    retries: Annotated[int, msgspec.Meta(ge=0)] | None = None
    retry_interval: Annotated[int, msgspec.Meta(ge=0)] | None = None
    signing_certificate: str | None = None
    signature: str | None = None
    name: str = ""
    stations: list[str] | None = None
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    site: str | None = None
    """The stations of this site and of its sub-sites (docs/smart-charging.md)."""
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 1
    interval: Annotated[float, msgspec.Meta(ge=1)] = 60.0
    max_failure_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    station_timeout: Annotated[float, msgspec.Meta(gt=0)] = 3600.0


def _criteria(request: CampaignRequest) -> dict[str, Any]:
    criteria = {
        "stations": request.stations,
        "vendor": request.vendor,
        "model": request.model,
        "firmware_version": request.firmware_version,
        "site": request.site,
    }
    return {name: value for name, value in criteria.items() if value is not None}


def select_stations(views: Views, request: CampaignRequest) -> list[str]:
    """The stations the request selects, in rollout order (as listed, then by id);
    ``ValueError`` for no criterion, an unknown site, an explicit station never seen nor
    registered, or an empty selection. ``site`` keeps the stations of the site and of its
    sub-sites."""
    if not _criteria(request):
        raise ValueError("select the stations: stations, site, vendor, model or firmware_version")
    in_site: set[str] | None = None
    if request.site is not None:
        if views.sites.get(request.site) is None:
            raise ValueError(f"no site {request.site!r}")
        in_site = set(views.sites.stations_in(request.site))
    if request.stations is not None:
        unknown = [
            station
            for station in request.stations
            if views.stations.get(station) is None and views.registry.get(station) is None
        ]
        if unknown:
            raise ValueError(f"stations never seen nor registered: {', '.join(unknown)}")
        candidates = list(dict.fromkeys(request.stations))
    else:
        candidates = [state.station for state in views.stations.all()]
    wanted = {
        "vendor": request.vendor,
        "model": request.model,
        "firmware_version": request.firmware_version,
    }
    selected = []
    for station in candidates:
        if in_site is not None and station not in in_site:
            continue
        state = views.stations.get(station)
        boot = None if state is None else state.boot
        if all(
            value is None or (boot is not None and getattr(boot, name) == value)
            for name, value in wanted.items()
        ):
            selected.append(station)
    if not selected:
        raise ValueError(f"no station matches {_criteria(request)}")
    return selected


def campaign_created(
    views: Views, request: CampaignRequest, key: str, at: float
) -> CampaignCreated:
    """The event of ``request`` made by ``key`` at ``at``; ``ValueError`` (nothing to
    record) for a selection :func:`select_stations` refuses or firmware arguments that
    ``update_firmware`` refuses for a selected station's version."""
    stations = select_stations(views, request)
    args = UpdateFirmwareArgs(
        location=request.location,
        retrieve_date=request.retrieve_date or "1970-01-01T00:00:00Z",
        retries=request.retries,
        retry_interval=request.retry_interval,
        install_date=request.install_date,
        signing_certificate=request.signing_certificate,
        signature=request.signature,
    )
    for station in stations:
        state = views.stations.get(station)
        protocol = OCPP201 if state is not None and state.protocol == OCPP201 else OCPP16
        try:
            update_firmware(protocol, args, 0)
        except (InvalidUseCaseArguments, UnsupportedUseCase) as exc:
            raise ValueError(f"{station}: {exc}") from None
    return CampaignCreated(
        request_id=str(uuid.uuid4()),
        at=at,
        key=key,
        campaign_id=uuid.uuid4().hex[:12],
        name=request.name,
        location=request.location,
        retrieve_date=request.retrieve_date,
        install_date=request.install_date,
        retries=request.retries,
        retry_interval=request.retry_interval,
        signing_certificate=request.signing_certificate,
        signature=request.signature,
        stations=stations,
        selection=_criteria(request),
        max_in_flight=request.max_in_flight,
        interval=request.interval,
        max_failure_ratio=request.max_failure_ratio,
        station_timeout=request.station_timeout,
    )


DecisionKind = Literal["update", "step", "allocation", "timer"]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """One decision of a campaign's rollout: an ``update`` of a station (the ``SendCall``:
    its request id, station, action and payload) or the next rollout ``step`` (the
    ``StartTimer``: its name and due time); or of the site limits
    (:mod:`chargeledger.core.site_decisions`): an ``allocation`` sent or a ``timer``."""

    kind: DecisionKind
    name: str
    """The update's or allocation's request id (``campaign_request_id``,
    ``allocation_request_id``), the step's or timer's name."""
    station: str | None = None
    action: str | None = None
    payload: Any = None
    due: float | None = None


def sort_decisions(decisions: Iterable[Decision]) -> list[Decision]:
    """``decisions`` in the order they compare in: the updates of one step are sent
    concurrently, so their ``CommandRequested`` may be recorded in any order."""
    return sorted(decisions, key=lambda decision: (decision.kind, decision.name))


@dataclass(frozen=True)
class DecisionFamily:
    """The decisions one plugin takes and records, for replay and ``replay --what-if`` to
    compare with what today's plugins take: the ``SendCall`` commands whose request id
    ``sends`` recognises (recorded as ``CommandRequested`` asked by ``plugins``; kind
    ``send_kind``) and the timers whose name ``times`` recognises (``StartTimer`` /
    ``TimerStarted``; kind ``timer_kind``), taken again on the events where ``decides``
    (the event as folded, the views after it) holds. The firmware campaigns'
    (:data:`CAMPAIGN_DECISIONS`) and the site limits' decisions
    (:mod:`chargeledger.core.site_decisions`) are two of them."""

    send_kind: DecisionKind
    timer_kind: DecisionKind
    sends: Callable[[str], bool]
    times: Callable[[str], bool]
    decides: Callable[[Recorded, Views], bool]

    def recorded(self, event: Event) -> Decision | None:
        """The decision ``event`` records, ``None`` for any other event."""
        if (
            isinstance(event, CommandRequested)
            and event.key == PLUGINS_CALLER
            and self.sends(event.request_id)
        ):
            return Decision(
                kind=self.send_kind,
                name=event.request_id,
                station=event.station,
                action=event.command,
                payload=event.payload,
            )
        if isinstance(event, TimerStarted) and self.times(event.name):
            return Decision(kind=self.timer_kind, name=event.name, due=event.due)
        return None

    def taken(self, commands: Iterable[Command]) -> list[Decision]:
        """The decisions among the commands plugins returned."""
        decisions = []
        for command in commands:
            if isinstance(command, SendCall) and self.sends(command.request_id or ""):
                decisions.append(
                    Decision(
                        kind=self.send_kind,
                        name=command.request_id or "",
                        station=command.station,
                        action=command.action,
                        payload=msgspec.to_builtins(command.payload),
                    )
                )
            elif isinstance(command, StartTimer) and self.times(command.name):
                decisions.append(Decision(kind=self.timer_kind, name=command.name, due=command.due))
        return decisions

    def recorded_in(self, records: Iterable[Recorded]) -> list[Decision]:
        """The decisions the log holds (:meth:`recorded`), sorted."""
        found = (self.recorded(recorded.event) for recorded in records)
        return sort_decisions(decision for decision in found if decision is not None)

    def replayed(self, records: Iterable[Recorded], plugins: PluginHost) -> list[Decision]:
        """The decisions today's ``plugins`` take when the log is folded again and each event
        where :attr:`decides` holds is reacted to as the dispatcher does; sorted. Equal to
        :meth:`recorded_in` of the same log when the decisions replay."""
        views = Views()
        decisions = []
        for recorded in records:
            views.apply(recorded)
            if self.decides(recorded, views):
                decisions += self.taken(plugins.react(recorded, views))
        return sort_decisions(decisions)


def decides(event: Event) -> bool:
    """Whether the firmware plugin may take campaign decisions on ``event`` (a campaign's
    creation or resumption, a rollout step's timer firing)."""
    return isinstance(event, CampaignCreated | CampaignResumed) or (
        isinstance(event, TimerFired) and read_campaign_timer(event.name) is not None
    )


CAMPAIGN_DECISIONS = DecisionFamily(
    send_kind="update",
    timer_kind="step",
    sends=lambda request_id: request_id.startswith("campaign:"),
    times=lambda name: read_campaign_timer(name) is not None,
    decides=lambda recorded, views: decides(recorded.event),
)
"""A campaign's decisions: each station's update (a ``SendCall`` named
``campaign_request_id``) and each next rollout step (its timer)."""


def recorded_decision(event: Event) -> Decision | None:
    """The campaign decision ``event`` records (an update's ``CommandRequested`` asked by
    ``plugins``, a rollout step's ``TimerStarted``), ``None`` for any other event."""
    return CAMPAIGN_DECISIONS.recorded(event)


def decisions_in(commands: Iterable[Command]) -> list[Decision]:
    """The campaign decisions among the commands plugins returned."""
    return CAMPAIGN_DECISIONS.taken(commands)


def recorded_decisions(records: Iterable[Recorded]) -> list[Decision]:
    """The campaign decisions the log holds (:func:`recorded_decision`), sorted."""
    return CAMPAIGN_DECISIONS.recorded_in(records)


def replayed_decisions(records: Iterable[Recorded], plugins: PluginHost) -> list[Decision]:
    """The campaign decisions today's ``plugins`` take when the log is folded again and each
    event that :func:`decides` is reacted to as the dispatcher does; sorted. Equal to
    :func:`recorded_decisions` of the same log when the rollout replays."""
    return CAMPAIGN_DECISIONS.replayed(records, plugins)
