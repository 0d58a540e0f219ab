"""The registry projection: which stations an admin registered through the HTTP API."""

from __future__ import annotations

import msgspec

from chargeledger.core.events import Recorded, StationDeregistered, StationRegistered

__all__ = ["Registration", "RegistryProjection"]


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    """A station's current registration: who registered it, when, and why."""

    station: str
    description: str
    at: float
    """When it was registered (UNIX seconds)."""
    by: str
    """The name of the API key that registered it."""
    position: int
    """Log position of the ``StationRegistered`` event."""


class RegistryProjection:
    """Registered stations, folded from ``StationRegistered`` / ``StationDeregistered``.

    A later registration replaces the earlier one; a deregistration of a station that is not
    registered changes nothing. Every other event is ignored."""

    def __init__(self) -> None:
        self._registered: dict[str, Registration] = {}

    def get(self, station: str) -> Registration | None:
        """The station's registration, ``None`` when it is not registered."""
        return self._registered.get(station)

    def all(self) -> list[Registration]:
        """Every registration, sorted by station id."""
        return [self._registered[station] for station in sorted(self._registered)]

    def apply(self, recorded: Recorded) -> None:
        """Fold the next committed event."""
        event = recorded.event
        if isinstance(event, StationRegistered):
            self._registered[event.station] = Registration(
                station=event.station,
                description=event.description,
                at=event.at,
                by=event.key,
                position=recorded.position,
            )
        elif isinstance(event, StationDeregistered):
            self._registered.pop(event.station, None)
