"""The registry projection: which stations an admin registered, with their security profile,
whether they are enabled, and their password hashes (what the gateway's handshake checks)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import (
    CommandRequested,
    Recorded,
    SessionOpened,
    StationDeregistered,
    StationPasswordSet,
    StationRegistered,
)
from chargeledger.projections.exchanges import Exchange, Kind

__all__ = [
    "PASSWORD_USE_CASE",
    "PROFILE_USE_CASE",
    "Credentials",
    "Registration",
    "RegistryProjection",
    "sets_password",
]

PASSWORD_USE_CASE = "change_station_password"
"""The use case whose recorded request (``CommandRequested``, with ``password_hash``) makes a
password pending: accepted besides the current one until the station connects with it."""

PROFILE_USE_CASE = "set_security_profile"
"""The use case whose recorded request makes a profile pending: the station's registered
profile rises to it once the station connects meeting it."""


def sets_password(action: str, payload: dict[str, Any]) -> bool:
    """Whether a CALL to a station sets its HTTP Basic password (1.6 ``ChangeConfiguration``
    of ``AuthorizationKey``, 2.0.1 ``SetVariables`` of ``SecurityCtrlr.BasicAuthPassword``).

    Only the use case ``change_station_password`` may send one: it records the password's
    hash, not the password, and keeps the old one valid until the station uses the new one.
    Sent any other way, the password would be recorded in clear and the station locked out
    at its next connection."""
    if action == "ChangeConfiguration":
        return payload.get("key") == "AuthorizationKey"
    if action == "SetVariables":
        return any(
            (data.get("component") or {}).get("name") == "SecurityCtrlr"
            and (data.get("variable") or {}).get("name") == "BasicAuthPassword"
            for data in payload.get("setVariableData") or []
            if isinstance(data, dict)
        )
    return False


class Credentials(msgspec.Struct, frozen=True):
    """A station's password hashes: the current one, and the one a rotation sent it (both
    are accepted until the station connects with the pending one)."""

    current: str | None = None
    pending: str | None = None


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    """A station's current registration: who registered it, when, why, and how it must
    authenticate (the password itself is never shown, not even hashed)."""

    station: str
    description: str
    at: float
    """When it was registered (UNIX seconds)."""
    by: str
    """The name of the API key that registered it."""
    position: int
    """Log position of the ``StationRegistered`` event."""
    profile: int = 0
    """The lowest security profile it may connect with (docs/security.md)."""
    enabled: bool = True
    has_password: bool = False
    password_pending: bool = False
    """A rotated-to password was sent and the station has not connected with it yet."""
    profile_pending: int | None = None
    """A profile upgrade was sent and the station has not connected meeting it yet."""


class RegistryProjection:
    """Registered stations, folded from ``StationRegistered`` / ``StationDeregistered`` /
    ``StationPasswordSet``, the password-rotation and profile-upgrade requests
    (``CommandRequested`` of :data:`PASSWORD_USE_CASE` / :data:`PROFILE_USE_CASE`) and the
    ``SessionOpened`` that complete them.

    A later registration replaces the earlier one but keeps the password; a deregistration
    forgets both, and changes nothing for a station that is not registered. Events about a
    station that is not registered change nothing. Every other event is ignored."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            StationRegistered,
            StationDeregistered,
            StationPasswordSet,
            CommandRequested,
            SessionOpened,
            "ChangeConfiguration",
            "SetVariables",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._registered: dict[str, Registration] = {}
        self._credentials: dict[str, Credentials] = {}

    def get(self, station: str) -> Registration | None:
        """The station's registration, ``None`` when it is not registered."""
        return self._registered.get(station)

    def all(self) -> list[Registration]:
        """Every registration, sorted by station id."""
        return [self._registered[station] for station in sorted(self._registered)]

    def credentials(self, station: str) -> Credentials:
        """The station's password hashes (none when it is not registered or has none)."""
        return self._credentials.get(station, Credentials())

    def _set_credentials(self, station: str, credentials: Credentials) -> None:
        self._credentials[station] = credentials
        self._registered[station] = msgspec.structs.replace(
            self._registered[station],
            has_password=credentials.current is not None,
            password_pending=credentials.pending is not None,
        )

    def apply(self, recorded: Recorded, exchange: Exchange | None = None) -> None:
        """Fold the next committed event; ``exchange``: the CALL and answer (CALLRESULT or
        CALLERROR) it completes, if any (``Views`` pairs them). A password-setting CALL the
        station refused (CALLERROR, or a status that is not accepted) drops the pending
        password: the station kept its current one."""
        if exchange is not None and exchange.origin == "out":
            self._answered(exchange)
        event = recorded.event
        if isinstance(event, StationRegistered):
            old = self._registered.get(event.station)
            credentials = self.credentials(event.station)
            pending = old.profile_pending if old is not None else None
            self._registered[event.station] = Registration(
                station=event.station,
                description=event.description,
                at=event.at,
                by=event.key,
                position=recorded.position,
                profile=event.profile,
                enabled=event.enabled,
                has_password=credentials.current is not None,
                password_pending=credentials.pending is not None,
                profile_pending=pending
                if pending is not None and pending > event.profile
                else None,
            )
        elif isinstance(event, StationDeregistered):
            self._registered.pop(event.station, None)
            self._credentials.pop(event.station, None)
        elif isinstance(event, StationPasswordSet | CommandRequested | SessionOpened):
            if event.station not in self._registered:
                return
            if isinstance(event, StationPasswordSet):
                self._set_credentials(event.station, Credentials(current=event.password_hash))
            elif isinstance(event, CommandRequested):
                self._requested(event)
            else:
                self._connected(event)

    def _answered(self, exchange: Exchange) -> None:
        station = exchange.station
        if station not in self._registered or not isinstance(exchange.request, dict):
            return
        if not sets_password(exchange.action, exchange.request):
            return
        if exchange.error is None and _accepted(exchange.response):
            return
        current = self.credentials(station).current
        self._set_credentials(station, Credentials(current=current))

    def _requested(self, event: CommandRequested) -> None:
        if event.mode != "use_case":
            return
        if event.command == PASSWORD_USE_CASE:
            current = self.credentials(event.station).current
            pending = str(event.payload["password_hash"])
            self._set_credentials(event.station, Credentials(current=current, pending=pending))
        elif event.command == PROFILE_USE_CASE:
            registration = self._registered[event.station]
            profile = int(event.payload["profile"])
            self._registered[event.station] = msgspec.structs.replace(
                registration, profile_pending=profile if profile > registration.profile else None
            )

    def _connected(self, event: SessionOpened) -> None:
        if event.credential == "pending":
            self._set_credentials(
                event.station, Credentials(current=self.credentials(event.station).pending)
            )
        registration = self._registered[event.station]
        pending = registration.profile_pending
        if pending is not None and event.profile >= pending:
            self._registered[event.station] = msgspec.structs.replace(
                registration, profile=pending, profile_pending=None
            )


def _accepted(response: Any) -> bool:
    """Whether a ChangeConfiguration / SetVariables answer accepted the password."""
    if not isinstance(response, dict):
        return False
    if "status" in response:
        return response["status"] in ("Accepted", "RebootRequired")
    results = response.get("setVariableResult") or []
    return bool(results) and all(
        isinstance(result, dict) and result.get("attributeStatus") in ("Accepted", "RebootRequired")
        for result in results
    )
