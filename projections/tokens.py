"""The ID-token registry projection: which ID tokens (RFID cards, app ids, ...) an operator
registered, with their status, expiry, group and concurrent-use limit: what the
authorization decisions read (``plugins/authorization.py``, docs/authorization.md).

ID tokens are case insensitive in both OCPP versions (1.6 ``CiString20Type``, 2.0.1
"IdToken is case insensitive"): a token is keyed by its case-folded text and its type, so
``abc`` and ``ABC`` of one type are one token (the newest registration's spelling is kept)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import msgspec

from chargeledger.core.events import Recorded, TokenRegistered, TokenRemoved
from chargeledger.projections.exchanges import Kind

__all__ = [
    "TOKEN_STATUSES",
    "TokenState",
    "Tokens",
    "expiry_instant",
]

TOKEN_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")
"""The statuses a registration may give a token (what both versions' answers can carry)."""


def expiry_instant(expiry: str) -> float:
    """``expiry`` (RFC 3339 text, with an offset or ``Z``) as UNIX seconds.

    Raises ``ValueError`` for text that is not an RFC 3339 date-time, or one without an
    offset (a local time names no instant)."""
    moment = datetime.fromisoformat(expiry)
    if moment.tzinfo is None:
        raise ValueError(f"{expiry!r} has no UTC offset")
    return moment.astimezone(UTC).timestamp()


class TokenState(msgspec.Struct, frozen=True, kw_only=True):
    """A registered ID token as its newest registration left it."""

    at: float
    """When the newest registration was made (UNIX seconds)."""
    key: str
    """Who made it (the API key's name, the caller's name)."""
    id_token: str
    type: str
    status: str
    expiry: str | None
    """RFC 3339; from this instant on the token is answered ``Expired``."""
    group: str | None
    max_concurrent: int | None
    note: str
    owner: str
    registered_at: float
    """When the token was first registered (kept by updates; a removal forgets it)."""
    position: int
    """Log position of the newest ``TokenRegistered``."""


def _key(id_token: str, type: str) -> tuple[str, str]:
    return id_token.casefold(), type


class Tokens:
    """The registry, folded from ``TokenRegistered`` (an add or a full update: the newest
    registration of a token wins) and ``TokenRemoved`` (the token is unknown again; removing
    a token that is not registered changes nothing). Every other event is ignored."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({TokenRegistered, TokenRemoved})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], TokenState] = {}
        self._types: dict[str, dict[str, TokenState]] = {}
        """Case-folded token -> type -> state, for lookups without a type (1.6)."""
        self.position = 0
        """Log position of the newest event that changed the registry (0: none yet)."""

    def get(self, id_token: str, type: str | None = None) -> TokenState | None:
        """The token's registration, ``None`` when it is not registered.

        ``type=None`` (a 1.6 ``idTag``, which has no type) matches a registration of any type;
        when several types are registered under the same text, the newest registration
        (highest position) is the one returned."""
        if type is not None:
            return self._tokens.get(_key(id_token, type))
        registered = self._types.get(id_token.casefold())
        if not registered:
            return None
        return max(registered.values(), key=lambda state: state.position)

    def __len__(self) -> int:
        """How many registrations (token and type) there are."""
        return len(self._tokens)

    def all(self) -> list[TokenState]:
        """Every registered token, sorted by ``id_token`` (then type)."""
        return sorted(self._tokens.values(), key=lambda state: (state.id_token, state.type))

    def groups(self) -> dict[str, list[TokenState]]:
        """Each group id that some token names, with its member tokens (sorted by
        ``id_token``); the group id need not be registered itself."""
        groups: dict[str, list[TokenState]] = {}
        for state in self.all():
            if state.group is not None:
                groups.setdefault(state.group, []).append(state)
        return dict(sorted(groups.items()))

    def apply(self, recorded: Recorded) -> None:
        """Fold the next committed event."""
        event = recorded.event
        if isinstance(event, TokenRegistered):
            key = _key(event.id_token, event.type)
            old = self._tokens.get(key)
            state = TokenState(
                at=event.at,
                key=event.key,
                id_token=event.id_token,
                type=event.type,
                status=event.status,
                expiry=event.expiry,
                group=event.group,
                max_concurrent=event.max_concurrent,
                note=event.note,
                owner=event.owner,
                registered_at=event.at if old is None else old.registered_at,
                position=recorded.position,
            )
            self._tokens[key] = state
            self._types.setdefault(key[0], {})[event.type] = state
            self.position = recorded.position
        elif isinstance(event, TokenRemoved):
            key = _key(event.id_token, event.type)
            if self._tokens.pop(key, None) is None:
                return
            types = self._types[key[0]]
            del types[event.type]
            if not types:
                del self._types[key[0]]
            self.position = recorded.position
