"""The security-events projection: the SecurityEventNotifications each station sent (OCPP
2.0.1 A04, the 1.6 security extension), and which of them are critical."""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import Exchange, ExchangeFold, Kind, as_str

__all__ = [
    "CRITICAL_SECURITY_EVENTS",
    "MAX_SECURITY_EVENTS_PER_STATION",
    "SecurityEvent",
    "SecurityEventsProjection",
    "StationSecurityEvents",
    "is_critical",
    "read_security_event",
    "security_event_json",
    "security_events_json",
]

CRITICAL_SECURITY_EVENTS = frozenset(
    {
        "FirmwareUpdated",
        "SettingSystemTime",
        "StartupOfTheDevice",
        "ResetOrReboot",
        "SecurityLogWasCleared",
        "MemoryExhaustion",
        "TamperDetectionActivated",
    }
)
"""The event types the Security events list (OCPP 2.0.1 Part 2 appendix, the 1.6 security
whitepaper's list) flags critical; the two lists agree on these seven. Every other type
(``InvalidCsmsCertificate`` / ``InvalidCentralSystemCertificate``, failed authentications,
``InvalidMessages``, ``AttemptedReplayAttacks``, TLS and firmware-signature failures, vendor
types) is not critical."""

MAX_SECURITY_EVENTS_PER_STATION = 256
"""Events kept per station in ``recent`` (the oldest is forgotten first; ``counts`` keeps
counting)."""


def is_critical(event_type: str) -> bool:
    """Whether the Security events list flags ``event_type`` critical."""
    return event_type in CRITICAL_SECURITY_EVENTS


class SecurityEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One SecurityEventNotification we acknowledged."""

    station: str
    type: str
    timestamp: str | None
    """The station's time of the event, as sent."""
    tech_info: str | None
    critical: bool
    position: int
    """Log position of the CALL that carried it."""
    at: float
    """When we acknowledged it."""


class StationSecurityEvents(msgspec.Struct, kw_only=True):
    """A station's security events. Read-only for everyone but the projection."""

    station: str
    recent: list[SecurityEvent] = []
    """The latest events (at most ``MAX_SECURITY_EVENTS_PER_STATION``), oldest first."""
    counts: dict[str, int] = {}
    """Every event ever acknowledged, counted by type."""
    critical: int = 0
    """How many critical events were acknowledged."""


class SecurityEventsProjection(ExchangeFold):
    """Security events folded from SecurityEventNotification CALLs we answered with a
    CALLRESULT (see ``docs/projections.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({"SecurityEventNotification"})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationSecurityEvents] = {}

    def get(self, station: str) -> StationSecurityEvents | None:
        """The station's security events, ``None`` when it never sent one."""
        return self._stations.get(station)

    def all(self) -> list[StationSecurityEvents]:
        """Every station that sent security events, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes."""
        event = read_security_event(exchange)
        if event is None:
            return
        state = self._stations.get(event.station)
        if state is None:
            state = self._stations[event.station] = StationSecurityEvents(station=event.station)
        state.recent.append(event)
        if len(state.recent) > MAX_SECURITY_EVENTS_PER_STATION:
            del state.recent[0]
        state.counts[event.type] = state.counts.get(event.type, 0) + 1
        state.critical += event.critical


def read_security_event(exchange: Exchange | None) -> SecurityEvent | None:
    """The security event an exchange acknowledged, ``None`` when it is none (another
    action, our CALL, a CALLERROR, or a payload without a ``type``)."""
    if (
        exchange is None
        or exchange.error is not None
        or exchange.origin != "in"
        or exchange.action != "SecurityEventNotification"
        or type(exchange.request) is not dict
    ):
        return None
    event_type = as_str(exchange.request.get("type"))
    if event_type is None:
        return None
    return SecurityEvent(
        station=exchange.station,
        type=event_type,
        timestamp=as_str(exchange.request.get("timestamp")),
        tech_info=as_str(exchange.request.get("techInfo")),
        critical=is_critical(event_type),
        position=exchange.call_position,
        at=exchange.at,
    )


def security_event_json(event: SecurityEvent) -> dict[str, Any]:
    """``event`` as JSON-ready builtins (documented in ``docs/projections.md``)."""
    return {
        "station": event.station,
        "type": event.type,
        "timestamp": event.timestamp,
        "tech_info": event.tech_info,
        "critical": event.critical,
        "position": event.position,
        "at": rfc3339(event.at),
    }


def security_events_json(state: StationSecurityEvents) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys."""
    return {
        "station": state.station,
        "critical": state.critical,
        "counts": dict(sorted(state.counts.items())),
        "recent": [security_event_json(event) for event in state.recent],
    }
