"""The logs projection: the diagnostics and log uploads we asked each station for, and how
they went (1.6 GetDiagnostics and DiagnosticsStatusNotification, the 1.6 security
extension's and 2.0.1's GetLog and LogStatusNotification).

A GetLog names its upload with a ``requestId`` that each LogStatusNotification repeats; a 1.6
GetDiagnostics has none, so a DiagnosticsStatusNotification belongs to the station's latest
answered GetDiagnostics. A notification without a request (``Idle``: nothing is being
uploaded, the answer to a TriggerMessage) is the station's ``idle`` status.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import (
    Exchange,
    ExchangeFold,
    Kind,
    as_dict,
    as_int,
    as_str,
    route,
)

__all__ = [
    "FINAL_UPLOAD_STATUSES",
    "MAX_LOG_REQUESTS_PER_STATION",
    "LogRequest",
    "LogsProjection",
    "StationLogs",
    "UploadStatus",
    "log_request_json",
    "logs_json",
]

MAX_LOG_REQUESTS_PER_STATION = 64
"""Requests remembered per station (the oldest is forgotten first)."""

FINAL_UPLOAD_STATUSES = frozenset(
    {
        "Uploaded",
        "UploadFailed",
        "UploadFailure",
        "BadMessage",
        "NotSupportedOperation",
        "PermissionDenied",
        "AcceptedCanceled",
    }
)
"""Upload statuses after which a request's upload is over (1.6 ``UploadFailed``, the security
extension and 2.0.1 ``UploadFailure``)."""


class UploadStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One status notification of an upload."""

    status: str | None
    """As sent: ``Uploading``, ``Uploaded``, ``UploadFailed`` / ``UploadFailure``,
    ``BadMessage``, ``NotSupportedOperation``, ``PermissionDenied``, ``AcceptedCanceled``,
    ``Idle``."""
    position: int
    """Log position of the CALLRESULT that acknowledged it."""
    at: float


class LogRequest(msgspec.Struct, kw_only=True):
    """One upload we asked for, and what the station said of it since."""

    action: str | None
    """``GetDiagnostics`` or ``GetLog``; ``None`` for notifications of a ``requestId`` the log
    holds no answered request of ours for."""
    request_id: int | None
    """GetLog's ``requestId``; ``None`` for a 1.6 GetDiagnostics."""
    log_type: str | None
    """``DiagnosticsLog`` (GetDiagnostics too) or ``SecurityLog``."""
    location: str | None
    """Where the station uploads to (``remoteLocation``, 1.6 ``location``)."""
    oldest: str | None
    """The window's start (``oldestTimestamp``, 1.6 ``startTime``), as sent."""
    latest: str | None
    """The window's end (``latestTimestamp``, 1.6 ``stopTime``), as sent."""
    retries: int | None
    retry_interval: int | None
    status: str | None
    """The station's answer: GetLog ``Accepted``, ``Rejected``, ``AcceptedCanceled``;
    GetDiagnostics ``Accepted`` (its answer has no status)."""
    file_name: str | None
    """The file the station said it uploads (GetLog ``filename``, GetDiagnostics
    ``fileName``)."""
    position: int | None
    """Log position of our CALL."""
    requested_at: float | None
    """When the station answered it."""
    uploads: list[UploadStatus] = []
    """The station's status notifications for it, in order."""
    canceled_by: int | None = None
    """The ``requestId`` of the GetLog whose ``AcceptedCanceled`` answer cancelled this one."""

    @property
    def upload_status(self) -> str | None:
        """The latest status notified, ``None`` before the first."""
        return self.uploads[-1].status if self.uploads else None

    @property
    def finished(self) -> bool:
        """The upload is over (its latest status is final) or was cancelled."""
        return self.upload_status in FINAL_UPLOAD_STATUSES or self.canceled_by is not None


class StationLogs(msgspec.Struct, kw_only=True):
    """A station's uploads. Read-only for everyone but the projection."""

    station: str
    requests: list[LogRequest] = []
    """Oldest first (at most ``MAX_LOG_REQUESTS_PER_STATION``)."""
    idle: UploadStatus | None = None
    """The latest notification that named no request (``Idle``)."""

    def find(self, request_id: int) -> LogRequest | None:
        """The GetLog request ``request_id`` (the newest, if the station reused the id)."""
        return next((r for r in reversed(self.requests) if r.request_id == request_id), None)


def _add(state: StationLogs, request: LogRequest) -> LogRequest:
    state.requests.append(request)
    if len(state.requests) > MAX_LOG_REQUESTS_PER_STATION:
        del state.requests[0]
    return request


def _get_log(state: StationLogs, exchange: Exchange) -> None:
    request, response = exchange.request, exchange.response
    log = as_dict(request.get("log"))
    request_id = as_int(request.get("requestId"))
    status = as_str(response.get("status"))
    if status == "AcceptedCanceled":  # the station's ongoing upload makes way for this one
        for earlier in state.requests:
            if earlier.action is not None and not earlier.finished and earlier.status != "Rejected":
                earlier.canceled_by = request_id
    _add(
        state,
        LogRequest(
            action="GetLog",
            request_id=request_id,
            log_type=as_str(request.get("logType")),
            location=as_str(log.get("remoteLocation")),
            oldest=as_str(log.get("oldestTimestamp")),
            latest=as_str(log.get("latestTimestamp")),
            retries=as_int(request.get("retries")),
            retry_interval=as_int(request.get("retryInterval")),
            status=status,
            file_name=as_str(response.get("filename")),
            position=exchange.call_position,
            requested_at=exchange.at,
        ),
    )


def _get_diagnostics(state: StationLogs, exchange: Exchange) -> None:
    request = exchange.request
    _add(
        state,
        LogRequest(
            action="GetDiagnostics",
            request_id=None,
            log_type="DiagnosticsLog",
            location=as_str(request.get("location")),
            oldest=as_str(request.get("startTime")),
            latest=as_str(request.get("stopTime")),
            retries=as_int(request.get("retries")),
            retry_interval=as_int(request.get("retryInterval")),
            status="Accepted",
            file_name=as_str(exchange.response.get("fileName")),
            position=exchange.call_position,
            requested_at=exchange.at,
        ),
    )


def _notified(exchange: Exchange) -> UploadStatus:
    return UploadStatus(
        status=as_str(exchange.request.get("status")),
        position=exchange.result_position,
        at=exchange.at,
    )


def _log_status(state: StationLogs, exchange: Exchange) -> None:
    request_id = as_int(exchange.request.get("requestId"))
    if request_id is None:
        state.idle = _notified(exchange)
        return
    request = state.find(request_id)
    if request is None:
        request = _add(
            state,
            LogRequest(
                action=None,
                request_id=request_id,
                log_type=None,
                location=None,
                oldest=None,
                latest=None,
                retries=None,
                retry_interval=None,
                status=None,
                file_name=None,
                position=None,
                requested_at=None,
            ),
        )
    request.uploads.append(_notified(exchange))


def _diagnostics_status(state: StationLogs, exchange: Exchange) -> None:
    status = _notified(exchange)
    latest = next((r for r in reversed(state.requests) if r.action == "GetDiagnostics"), None)
    if latest is None or status.status == "Idle":
        state.idle = status  # Idle: no upload is going on, whatever we asked
        return
    latest.uploads.append(status)


_STATION_CALLS = {
    "LogStatusNotification": _log_status,
    "DiagnosticsStatusNotification": _diagnostics_status,
}
_CSMS_CALLS = {"GetLog": _get_log, "GetDiagnostics": _get_diagnostics}


class LogsProjection(ExchangeFold):
    """Diagnostics and log uploads folded from the log (see ``docs/device-management.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({*_STATION_CALLS, *_CSMS_CALLS})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationLogs] = {}

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        handler = route(exchange, _STATION_CALLS, _CSMS_CALLS)
        if handler is None or exchange is None:
            return
        state = self._stations.get(exchange.station)
        if state is None:
            state = self._stations[exchange.station] = StationLogs(station=exchange.station)
        handler(state, exchange)

    def get(self, station: str) -> StationLogs | None:
        """The station's uploads, ``None`` when the log holds none."""
        return self._stations.get(station)

    def all(self) -> list[StationLogs]:
        """Every station with uploads, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))


def _time(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def _upload_json(upload: UploadStatus) -> dict[str, Any]:
    return {"status": upload.status, "position": upload.position, "at": rfc3339(upload.at)}


def log_request_json(request: LogRequest) -> dict[str, Any]:
    """One request as JSON-ready builtins."""
    return {
        "action": request.action,
        "request_id": request.request_id,
        "log_type": request.log_type,
        "location": request.location,
        "oldest": request.oldest,
        "latest": request.latest,
        "retries": request.retries,
        "retry_interval": request.retry_interval,
        "status": request.status,
        "file_name": request.file_name,
        "position": request.position,
        "requested_at": _time(request.requested_at),
        "upload_status": request.upload_status,
        "finished": request.finished,
        "canceled_by": request.canceled_by,
        "uploads": [_upload_json(upload) for upload in request.uploads],
    }


def logs_json(state: StationLogs) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/device-management.md``)."""
    return {
        "station": state.station,
        "requests": [log_request_json(request) for request in state.requests],
        "idle": None if state.idle is None else _upload_json(state.idle),
    }
