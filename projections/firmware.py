"""Firmware (1.6 Firmware Management and its security extension, 2.0.1 L) folded from the log:
each station's firmware updates and what it publishes (local controllers), and the firmware
campaigns.

**A station's update** starts with our UpdateFirmware / SignedUpdateFirmware CALL (whoever
asked: the ``update_firmware`` use case, a campaign, message mode) and moves through the
phases ``requested`` → ``downloading`` → ``downloaded`` → ``installing`` → ``installed``, or
``failed``, as the station's (Signed)FirmwareStatusNotifications say (:data:`PHASES` maps
every status of both versions; ``Idle`` changes nothing). A refusal of the request
(``Rejected``, ``InvalidCertificate``, ``RevokedCertificate``, a CALLERROR) fails it. The
version before is the one of the station's last BootNotification when the request was sent,
the version after the one of the first BootNotification once it is installing or installed.
A station that reports ``Installed`` and boots into the version it had before gets the
finding ``version_unchanged`` (an anomaly here, so a finding of ``chargeledger audit``).

**A campaign** (``CampaignCreated``) lists its stations, all ``pending``; the firmware plugin
updates them, each update a ``SendCall`` recorded as a ``CommandRequested`` whose request id
is :func:`campaign_request_id` (folded: ``in_progress``), on rollout steps that are recorded
timers (:func:`campaign_timer`). A station's update decides its outcome (``installed`` or
``failed``; ``failed`` also for a station still updating ``station_timeout`` seconds after
its update was sent, seen at a rollout step, and for one that booted into its old version).
A running campaign is ``stopped`` once more than ``max_failure_ratio`` of its stations
failed, ``completed`` once none is pending or in progress, ``cancelled`` by
``CampaignCancelled``; the stations still pending then are ``stopped``. ``CampaignPaused``
makes a running campaign ``paused`` (nothing is decided; the stations updating go on) until
``CampaignResumed``.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar, Literal

import msgspec

from chargeledger.core.events import (
    CampaignCancelled,
    CampaignCreated,
    CampaignPaused,
    CampaignResumed,
    CommandRequested,
    FrameLogged,
    Recorded,
    TimerFired,
)
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import (
    Exchange,
    Kind,
    as_dict,
    as_int,
    as_list,
    as_str,
    decode_frame,
)

__all__ = [
    "CAMPAIGN_STATION_STATUSES",
    "FIRMWARE_ANOMALY_KINDS",
    "PHASES",
    "CampaignState",
    "CampaignStation",
    "FirmwareAnomaly",
    "FirmwareProjection",
    "FirmwareUpdate",
    "PublishState",
    "StationFirmware",
    "campaign_json",
    "campaign_request_id",
    "campaign_timer",
    "firmware_json",
    "read_campaign_timer",
]

FirmwarePhase = Literal[
    "requested", "downloading", "downloaded", "installing", "installed", "failed"
]

PHASES: dict[str, FirmwarePhase] = {
    "DownloadScheduled": "downloading",
    "DownloadPaused": "downloading",
    "Downloading": "downloading",
    "Downloaded": "downloaded",
    "SignatureVerified": "downloaded",
    "InstallScheduled": "installing",
    "Installing": "installing",
    "InstallRebooting": "installing",
    "Installed": "installed",
    "DownloadFailed": "failed",
    "InstallationFailed": "failed",
    "InstallVerificationFailed": "failed",
    "InvalidSignature": "failed",
}
"""The phase each (Signed)FirmwareStatusNotification status of 1.6 and 2.0.1 moves an update
to; ``Idle`` (nothing going on) is the one status that moves none."""

_REQUESTS = ("UpdateFirmware", "SignedUpdateFirmware")
_ACCEPTED_ANSWERS = frozenset({"Accepted", "AcceptedCanceled"})
MAX_HISTORY = 16
"""Earlier updates kept per station (the oldest is forgotten first)."""

FirmwareAnomalyKind = Literal["version_unchanged"]
FIRMWARE_ANOMALY_KINDS: tuple[str, ...] = ("version_unchanged",)

CampaignStationStatus = Literal["pending", "in_progress", "installed", "failed", "stopped"]
CAMPAIGN_STATION_STATUSES: tuple[str, ...] = (
    "pending",
    "in_progress",
    "installed",
    "failed",
    "stopped",
)
CampaignStatus = Literal["running", "paused", "completed", "stopped", "cancelled"]

_TIMER_PREFIX = "firmware-campaign:"
_REQUEST_PREFIX = "campaign:"


def campaign_timer(campaign_id: str, step: int) -> str:
    """The name of the timer of the campaign's rollout step ``step`` (0 at its creation)."""
    return f"{_TIMER_PREFIX}{campaign_id}:{step}"


def read_campaign_timer(name: str) -> tuple[str, int] | None:
    """The campaign and step a timer name is of; ``None`` for other timers."""
    if not name.startswith(_TIMER_PREFIX):
        return None
    campaign_id, _, step = name[len(_TIMER_PREFIX) :].rpartition(":")
    return (campaign_id, int(step)) if campaign_id and step.isdigit() else None


def campaign_request_id(campaign_id: str, station: str) -> str:
    """The ``CommandRequested`` request id of the campaign's update of ``station``."""
    return f"{_REQUEST_PREFIX}{campaign_id}:{station}"


def _read_request_id(request_id: str) -> tuple[str, str] | None:
    if not request_id.startswith(_REQUEST_PREFIX):
        return None
    campaign_id, _, station = request_id[len(_REQUEST_PREFIX) :].partition(":")
    return (campaign_id, station) if campaign_id and station else None


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    """One status the station notified."""

    status: str
    at: float
    position: int
    """Log position of our answer to the notification."""


class FirmwareUpdate(msgspec.Struct, kw_only=True):
    """One firmware update of a station (fields in docs/device-management.md)."""

    station: str
    request_id: int | None
    """The ``requestId`` (2.0.1, signed 1.6); ``None`` for a 1.6 UpdateFirmware."""
    action: str | None
    """``UpdateFirmware`` or ``SignedUpdateFirmware``; ``None`` for an update the station
    reported without our request."""
    location: str | None
    retrieve_date: str | None
    install_date: str | None = None
    signed: bool = False
    phase: FirmwarePhase = "requested"
    answer: str | None = None
    """The station's answer to the request (its status, ``Accepted`` for the empty 1.6
    answer, or the CALLERROR code)."""
    status: str | None = None
    """The last status notified, and when (``status_at``)."""
    status_at: float | None = None
    statuses: list[StatusReport] = []
    requested_at: float
    requested_position: int
    """Log position of our request (of the first notification, without one)."""
    version_before: str | None = None
    version_after: str | None = None
    rebooted_at: float | None = None
    finding: FirmwareAnomalyKind | None = None


class PublishState(msgspec.Struct, kw_only=True):
    """What a 2.0.1 local controller publishes (PublishFirmware, UnpublishFirmware)."""

    request_id: int | None
    location: str | None
    checksum: str | None
    answer: str | None = None
    status: str | None = None
    status_at: float | None = None
    locations: list[str] = []
    """Where the stations behind it get the file (``Published``)."""
    requested_at: float


class StationFirmware(msgspec.Struct, kw_only=True):
    """A station's firmware: its version and its updates. Read-only for everyone but the
    projection."""

    station: str
    version: str | None = None
    """As its last BootNotification said, and when (``version_at``)."""
    version_at: float | None = None
    current: FirmwareUpdate | None = None
    history: list[FirmwareUpdate] = []
    """Earlier updates, oldest first (at most ``MAX_HISTORY``)."""
    publish: PublishState | None = None


class FirmwareAnomaly(msgspec.Struct, frozen=True, kw_only=True):
    """A firmware update that did not do what the station said."""

    kind: FirmwareAnomalyKind
    station: str
    position: int
    """Log position of our answer to the BootNotification (or notification) that showed it."""
    positions: list[int]
    """The evidence: our request, our answer to ``Installed``, that position (ascending)."""
    request_id: int | None
    detail: str


class CampaignStation(msgspec.Struct, kw_only=True):
    """One station of a campaign."""

    station: str
    status: CampaignStationStatus = "pending"
    phase: FirmwarePhase | None = None
    """Its update's phase, once sent."""
    reason: str | None = None
    """Why it failed (the station's status, the answer, ``timeout``, ``version_unchanged``)."""
    dispatched_at: float | None = None
    dispatched_position: int | None = None
    """Log position of the ``CommandRequested`` of its update."""
    update_position: int | None = None
    """Log position of the update request it follows."""
    ended_at: float | None = None


class CampaignState(msgspec.Struct, kw_only=True):
    """A firmware campaign (fields in docs/device-management.md)."""

    created: CampaignCreated
    position: int
    stations: dict[str, CampaignStation]
    """In rollout order."""
    status: CampaignStatus = "running"
    steps: int = 0
    """Rollout steps taken (timers fired)."""
    ended_at: float | None = None
    cancelled_by: str | None = None

    @property
    def campaign_id(self) -> str:
        return self.created.campaign_id

    def counts(self) -> dict[str, int]:
        """How many stations are in each status."""
        counted = dict.fromkeys(CAMPAIGN_STATION_STATUSES, 0)
        for state in self.stations.values():
            counted[state.status] += 1
        return counted

    def with_status(self, status: CampaignStationStatus) -> list[str]:
        """Its stations in ``status``, in rollout order."""
        return [s.station for s in self.stations.values() if s.status == status]


class FirmwareProjection:
    """Every station's firmware, the campaigns, and the firmware anomalies."""

    CONCERNS: ClassVar[frozenset[Kind]]
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._stations: dict[str, StationFirmware] = {}
        self._campaigns: dict[str, CampaignState] = {}
        self._following: dict[str, str] = {}
        """Station -> the campaign whose update it is following."""
        self.anomalies: list[FirmwareAnomaly] = []

    # -- reading ---------------------------------------------------------------------------

    def get(self, station: str) -> StationFirmware | None:
        return self._stations.get(station)

    def all(self) -> list[StationFirmware]:
        """Every station with firmware facts, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def campaign(self, campaign_id: str) -> CampaignState | None:
        return self._campaigns.get(campaign_id)

    def campaigns(self) -> list[CampaignState]:
        """Every campaign, oldest first."""
        return list(self._campaigns.values())

    # -- folding ---------------------------------------------------------------------------

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange (CALLRESULT or CALLERROR) it completes."""
        event = recorded.event
        if isinstance(event, FrameLogged):
            if event.direction == "out" and "Firmware" in event.text:
                self._request(recorded.position, event)
        elif isinstance(event, CommandRequested):
            self._dispatched(recorded.position, event)
        elif isinstance(event, TimerFired):
            self._step(event)
        elif isinstance(event, CampaignCreated):
            self._created(recorded.position, event)
        elif isinstance(event, CampaignCancelled):
            self._cancelled(event)
        elif isinstance(event, CampaignPaused | CampaignResumed):
            self._paused(event)
        if exchange is None:
            return
        handler = _HANDLERS.get((exchange.origin, exchange.action))
        if handler is not None:
            handler(self, exchange)

    def _state(self, station: str) -> StationFirmware:
        state = self._stations.get(station)
        if state is None:
            state = self._stations[station] = StationFirmware(station=station)
        return state

    def _request(self, position: int, event: FrameLogged) -> None:
        frame = decode_frame(event.text)
        if frame is None or frame[0] != 2 or len(frame) < 4:
            return
        action, request = frame[2], as_dict(frame[3])
        if action == "PublishFirmware":
            self._state(event.station).publish = PublishState(
                request_id=as_int(request.get("requestId")),
                location=as_str(request.get("location")),
                checksum=as_str(request.get("checksum")),
                requested_at=event.at,
            )
            return
        if action not in _REQUESTS:
            return
        firmware = as_dict(request.get("firmware"))
        state = self._state(event.station)
        self._replace(
            state,
            FirmwareUpdate(
                station=event.station,
                request_id=as_int(request.get("requestId")),
                action=action,
                location=as_str(request.get("location") or firmware.get("location")),
                retrieve_date=as_str(
                    request.get("retrieveDate") or firmware.get("retrieveDateTime")
                ),
                install_date=as_str(firmware.get("installDateTime")),
                signed="signature" in firmware,
                requested_at=event.at,
                requested_position=position,
                version_before=state.version,
            ),
        )

    @staticmethod
    def _replace(state: StationFirmware, update: FirmwareUpdate) -> None:
        if state.current is not None:
            state.history.append(state.current)
            del state.history[:-MAX_HISTORY]
        state.current = update

    def _update_of(self, station: str, position: int) -> FirmwareUpdate | None:
        state = self._stations.get(station)
        if state is None:
            return None
        for update in (state.current, *reversed(state.history)):
            if update is not None and update.requested_position == position:
                return update
        return None

    def _answered(self, exchange: Exchange) -> None:
        update = self._update_of(exchange.station, exchange.call_position)
        if update is None:
            return
        if exchange.error is not None:
            update.answer = exchange.error.code or "CALLERROR"
        else:
            update.answer = as_str(as_dict(exchange.response).get("status")) or "Accepted"
        if update.answer not in _ACCEPTED_ANSWERS and update.phase == "requested":
            update.phase = "failed"
        self._follow(exchange.station, update, exchange.at)

    def _notified(self, exchange: Exchange) -> None:
        if exchange.error is not None:
            return
        request = as_dict(exchange.request)
        status = as_str(request.get("status"))
        if status is None:
            return
        request_id = as_int(request.get("requestId"))
        state = self._state(exchange.station)
        update = self._notified_update(state, request_id)
        if update is None:
            if status == "Idle":
                return  # nothing going on, nothing to follow
            update = FirmwareUpdate(
                station=exchange.station,
                request_id=request_id,
                action=None,
                location=None,
                retrieve_date=None,
                requested_at=exchange.at,
                requested_position=exchange.call_position,
                version_before=state.version,
            )
            self._replace(state, update)
        update.status, update.status_at = status, exchange.at
        update.statuses.append(
            StatusReport(status=status, at=exchange.at, position=exchange.result_position)
        )
        phase = PHASES.get(status)
        if phase is not None:
            update.phase = phase
        if phase == "installed":
            self._check_version(update, exchange.result_position)
        self._follow(exchange.station, update, exchange.at)

    @staticmethod
    def _notified_update(state: StationFirmware, request_id: int | None) -> FirmwareUpdate | None:
        current = state.current
        if request_id is None or current is None or current.request_id in (None, request_id):
            return current
        for update in reversed(state.history):
            if update.request_id == request_id:
                return update
        return None

    def _booted(self, exchange: Exchange) -> None:
        if exchange.error is not None:
            return
        request = as_dict(exchange.request)
        if "chargingStation" in request:
            version = as_str(as_dict(request["chargingStation"]).get("firmwareVersion"))
        else:
            version = as_str(request.get("firmwareVersion"))
        state = self._state(exchange.station)
        state.version, state.version_at = version, exchange.at
        update = state.current
        if (
            update is None
            or update.phase not in ("installing", "installed")
            or update.rebooted_at is not None
        ):
            return
        update.version_after, update.rebooted_at = version, exchange.at
        if update.phase == "installed":
            self._check_version(update, exchange.result_position)
        self._follow(exchange.station, update, exchange.at)

    def _check_version(self, update: FirmwareUpdate, position: int) -> None:
        """The finding of an installed update whose reboot shows the version before."""
        if (
            update.finding is None
            and update.rebooted_at is not None
            and update.version_before is not None
            and update.version_after == update.version_before
        ):
            update.finding = "version_unchanged"
            self.anomalies.append(
                FirmwareAnomaly(
                    kind="version_unchanged",
                    station=update.station,
                    position=position,
                    positions=sorted(
                        {
                            update.requested_position,
                            *(r.position for r in update.statuses if r.status == "Installed"),
                            position,
                        }
                    ),
                    request_id=update.request_id,
                    detail=f"reported Installed, then booted into {update.version_before!r},"
                    " the version it had before the update",
                )
            )

    def _published(self, exchange: Exchange) -> None:
        publish = self._state(exchange.station).publish
        if publish is None:
            return
        if exchange.error is not None:
            publish.answer = exchange.error.code or "CALLERROR"
        else:
            publish.answer = as_str(as_dict(exchange.response).get("status"))

    def _publish_status(self, exchange: Exchange) -> None:
        if exchange.error is not None:
            return
        request = as_dict(exchange.request)
        state = self._state(exchange.station)
        if state.publish is None:
            state.publish = PublishState(
                request_id=as_int(request.get("requestId")),
                location=None,
                checksum=None,
                requested_at=exchange.at,
            )
        publish = state.publish
        publish.status, publish.status_at = as_str(request.get("status")), exchange.at
        locations = [text for text in map(as_str, as_list(request.get("location"))) if text]
        if locations:
            publish.locations = locations

    def _unpublished(self, exchange: Exchange) -> None:
        publish = self._state(exchange.station).publish
        status = as_str(as_dict(exchange.response).get("status"))
        if publish is not None and status == "Unpublished":
            publish.status, publish.status_at, publish.locations = status, exchange.at, []

    # -- campaigns -------------------------------------------------------------------------

    def _created(self, position: int, event: CampaignCreated) -> None:
        self._campaigns[event.campaign_id] = CampaignState(
            created=event,
            position=position,
            stations={station: CampaignStation(station=station) for station in event.stations},
        )

    def _cancelled(self, event: CampaignCancelled) -> None:
        campaign = self._campaigns.get(event.campaign_id)
        if campaign is not None and campaign.status in ("running", "paused"):
            campaign.cancelled_by = event.key
            self._end(campaign, "cancelled", event.at)

    def _paused(self, event: CampaignPaused | CampaignResumed) -> None:
        campaign = self._campaigns.get(event.campaign_id)
        if campaign is None:
            return
        if isinstance(event, CampaignPaused) and campaign.status == "running":
            campaign.status = "paused"
        elif isinstance(event, CampaignResumed) and campaign.status == "paused":
            campaign.status = "running"
            self._settle(campaign, event.at)  # what ended while it was paused

    def _dispatched(self, position: int, event: CommandRequested) -> None:
        named = _read_request_id(event.request_id)
        campaign = None if named is None else self._campaigns.get(named[0])
        entry = None if campaign is None else campaign.stations.get(event.station)
        if campaign is None or entry is None or entry.status != "pending":
            return
        entry.status, entry.dispatched_at, entry.dispatched_position = (
            "in_progress",
            event.at,
            position,
        )
        self._following[event.station] = campaign.campaign_id

    def _step(self, event: TimerFired) -> None:
        named = read_campaign_timer(event.name)
        campaign = None if named is None else self._campaigns.get(named[0])
        if campaign is None or named is None:
            return
        campaign.steps = max(campaign.steps, named[1] + 1)
        timeout = campaign.created.station_timeout
        for entry in campaign.stations.values():
            if (
                entry.status == "in_progress"
                and entry.dispatched_at is not None
                and event.due - entry.dispatched_at >= timeout
            ):
                self._outcome(campaign, entry, "failed", "timeout", event.due)
        self._settle(campaign, event.due)

    def _follow(self, station: str, update: FirmwareUpdate, at: float) -> None:
        """Carry the station's update into the campaign that sent it."""
        campaign = self._campaigns.get(self._following.get(station, ""))
        entry = None if campaign is None else campaign.stations.get(station)
        if campaign is None or entry is None or entry.dispatched_position is None:
            return
        if entry.update_position is None:
            if update.requested_position < entry.dispatched_position or update.action is None:
                return  # an update older than the campaign's, or not ours
            entry.update_position = update.requested_position
        elif entry.update_position != update.requested_position:
            return
        entry.phase = update.phase
        if update.finding is not None:
            self._outcome(campaign, entry, "failed", update.finding, at)
        elif update.phase == "failed":
            self._outcome(campaign, entry, "failed", update.status or update.answer, at)
        elif update.phase == "installed" and entry.status == "in_progress":
            self._outcome(campaign, entry, "installed", None, at)
        self._settle(campaign, at)

    @staticmethod
    def _outcome(
        campaign: CampaignState,
        entry: CampaignStation,
        status: CampaignStationStatus,
        reason: str | None,
        at: float,
    ) -> None:
        if entry.status == status:
            return
        entry.status, entry.reason, entry.ended_at = status, reason, at

    def _settle(self, campaign: CampaignState, at: float) -> None:
        """Stop a running campaign over its failure ratio; complete it once done."""
        if campaign.status != "running":
            return
        counts = campaign.counts()
        if counts["failed"] > campaign.created.max_failure_ratio * len(campaign.stations):
            self._end(campaign, "stopped", at)
        elif counts["pending"] == counts["in_progress"] == 0:
            self._end(campaign, "completed", at)

    @staticmethod
    def _end(campaign: CampaignState, status: CampaignStatus, at: float) -> None:
        campaign.status, campaign.ended_at = status, at
        for entry in campaign.stations.values():
            if entry.status == "pending":
                entry.status, entry.ended_at = "stopped", at


_HANDLERS: dict[tuple[str, str], Any] = {
    ("out", "UpdateFirmware"): FirmwareProjection._answered,
    ("out", "SignedUpdateFirmware"): FirmwareProjection._answered,
    ("in", "FirmwareStatusNotification"): FirmwareProjection._notified,
    ("in", "SignedFirmwareStatusNotification"): FirmwareProjection._notified,
    ("in", "BootNotification"): FirmwareProjection._booted,
    ("out", "PublishFirmware"): FirmwareProjection._published,
    ("in", "PublishFirmwareStatusNotification"): FirmwareProjection._publish_status,
    ("out", "UnpublishFirmware"): FirmwareProjection._unpublished,
}
FirmwareProjection.CONCERNS = frozenset(
    {
        CommandRequested,
        TimerFired,
        CampaignCreated,
        CampaignCancelled,
        CampaignPaused,
        CampaignResumed,
        *_REQUESTS,
        *(action for _, action in _HANDLERS),
    }
)


def _time(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def _update_json(update: FirmwareUpdate) -> dict[str, Any]:
    return {
        "request_id": update.request_id,
        "action": update.action,
        "location": update.location,
        "retrieve_date": update.retrieve_date,
        "install_date": update.install_date,
        "signed": update.signed,
        "phase": update.phase,
        "answer": update.answer,
        "status": update.status,
        "status_at": _time(update.status_at),
        "statuses": [
            {"status": report.status, "at": rfc3339(report.at), "position": report.position}
            for report in update.statuses
        ],
        "requested_at": rfc3339(update.requested_at),
        "requested_position": update.requested_position,
        "version_before": update.version_before,
        "version_after": update.version_after,
        "rebooted_at": _time(update.rebooted_at),
        "finding": update.finding,
    }


def firmware_json(state: StationFirmware) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (docs/device-management.md)."""
    publish = state.publish
    return {
        "station": state.station,
        "version": state.version,
        "version_at": _time(state.version_at),
        "current": None if state.current is None else _update_json(state.current),
        "history": [_update_json(update) for update in state.history],
        "publish": None
        if publish is None
        else {
            "request_id": publish.request_id,
            "location": publish.location,
            "checksum": publish.checksum,
            "answer": publish.answer,
            "status": publish.status,
            "status_at": _time(publish.status_at),
            "locations": list(publish.locations),
            "requested_at": rfc3339(publish.requested_at),
        },
    }


def campaign_json(campaign: CampaignState) -> dict[str, Any]:
    """``campaign`` as JSON-ready builtins with stable keys (docs/device-management.md)."""
    created = campaign.created
    return {
        "campaign_id": created.campaign_id,
        "name": created.name,
        "status": campaign.status,
        "counts": campaign.counts(),
        "created_at": rfc3339(created.at),
        "created_by": created.key,
        "position": campaign.position,
        "location": created.location,
        "retrieve_date": created.retrieve_date,
        "install_date": created.install_date,
        "retries": created.retries,
        "retry_interval": created.retry_interval,
        "signed": created.signature is not None,
        "selection": dict(created.selection),
        "max_in_flight": created.max_in_flight,
        "interval": created.interval,
        "max_failure_ratio": created.max_failure_ratio,
        "station_timeout": created.station_timeout,
        "steps": campaign.steps,
        "ended_at": _time(campaign.ended_at),
        "cancelled_by": campaign.cancelled_by,
        "stations": [
            {
                "station": entry.station,
                "status": entry.status,
                "phase": entry.phase,
                "reason": entry.reason,
                "dispatched_at": _time(entry.dispatched_at),
                "dispatched_position": entry.dispatched_position,
                "ended_at": _time(entry.ended_at),
            }
            for entry in campaign.stations.values()
        ],
    }
