"""Local authorization lists (1.6 Local Auth List Management, 2.0.1 block D): the list
definitions, what each station was sent and acknowledged, and the pure planning of the next
``SendLocalList``.

What a station holds is folded from the log only: a ``SendLocalList`` CALL we sent and the
station's CALLRESULT (``Accepted`` applies the update to the entries the CSMS believes the
station holds; ``VersionMismatch`` makes the next update a full one; ``Failed`` and
``NotSupported`` change nothing but are counted), a ``GetLocalListVersion`` answer (a version
other than the acknowledged one also makes the next update full: the CSMS no longer knows the
station's entries). The definitions are folded from ``LocalListDefined`` /
``LocalListDeleted``; an operator's push from ``LocalListPushRequested``.

Entries are version neutral (:class:`ListEntry`); :func:`entry_wire` and :func:`read_entry`
translate them to and from the two protocols' ``localAuthorizationList`` items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import attrgetter
from typing import Any, ClassVar, Literal, Protocol

import msgspec

from chargeledger.core.events import (
    CallTimedOut,
    FrameLogged,
    LocalListDefined,
    LocalListDeleted,
    LocalListPushRequested,
    Recorded,
    SessionClosed,
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
    is_v16,
)

__all__ = [
    "DEFAULT_ITEMS_PER_MESSAGE",
    "EntryKey",
    "ListDefinition",
    "ListEntry",
    "ListPlan",
    "LocalListsProjection",
    "RegisteredToken",
    "StationListState",
    "UpdateType",
    "changes",
    "desired_entries",
    "entry_wire",
    "list_definition_json",
    "next_version",
    "plan_update",
    "read_entry",
    "send_local_list_payload",
    "station_list_json",
]

UpdateType = Literal["Full", "Differential"]

DEFAULT_ITEMS_PER_MESSAGE = 20
"""Entries per SendLocalList when the station's configuration does not say
(``SendLocalListMaxLength`` / ``LocalAuthListCtrlr.ItemsPerMessage``)."""

EntryKey = tuple[str, str | None]
"""An entry's identity: the token value and its 2.0.1 type (``None`` in 1.6)."""


class ListEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a local list, version neutral. ``status`` ``None`` is a removal (a
    differential update's entry without ``idTagInfo`` / ``idTokenInfo``)."""

    id_token: str
    type: str | None = None
    """The 2.0.1 ``IdTokenEnumType``; ``None`` for 1.6."""
    status: str | None = "Accepted"
    expiry: str | None = None
    """RFC 3339 ``expiryDate`` / ``cacheExpiryDateTime``."""
    group: str | None = None
    """1.6 ``parentIdTag`` / 2.0.1 ``groupIdToken``."""

    @property
    def key(self) -> EntryKey:
        return (self.id_token, self.type)


def entry_wire(protocol: str, entry: ListEntry) -> dict[str, Any]:
    """``entry`` as an item of ``localAuthorizationList`` in ``protocol`` (a removal has no
    info)."""
    if is_v16(protocol):
        item: dict[str, Any] = {"idTag": entry.id_token}
        if entry.status is not None:
            info: dict[str, Any] = {"status": entry.status}
            if entry.expiry is not None:
                info["expiryDate"] = entry.expiry
            if entry.group is not None:
                info["parentIdTag"] = entry.group
            item["idTagInfo"] = info
        return item
    item = {"idToken": {"idToken": entry.id_token, "type": entry.type or "ISO14443"}}
    if entry.status is not None:
        info = {"status": entry.status}
        if entry.expiry is not None:
            info["cacheExpiryDateTime"] = entry.expiry
        if entry.group is not None:
            info["groupIdToken"] = {"idToken": entry.group, "type": "Central"}
        item["idTokenInfo"] = info
    return item


def read_entry(protocol: str, item: Any) -> ListEntry | None:
    """The entry a ``localAuthorizationList`` item holds, ``None`` when it names no token."""
    item = as_dict(item)
    if is_v16(protocol):
        id_token, token_type = as_str(item.get("idTag")), None
        info = item.get("idTagInfo")
        expiry_field, group = "expiryDate", as_str(as_dict(info).get("parentIdTag"))
    else:
        token = as_dict(item.get("idToken"))
        id_token, token_type = as_str(token.get("idToken")), as_str(token.get("type"))
        info = item.get("idTokenInfo")
        expiry_field = "cacheExpiryDateTime"
        group = as_str(as_dict(as_dict(info).get("groupIdToken")).get("idToken"))
    if id_token is None:
        return None
    if info is None:
        return ListEntry(id_token=id_token, type=token_type, status=None)
    return ListEntry(
        id_token=id_token,
        type=token_type,
        status=as_str(as_dict(info).get("status")),
        expiry=as_str(as_dict(info).get(expiry_field)),
        group=group,
    )


def send_local_list_payload(
    protocol: str, version: int, update_type: UpdateType, entries: Iterable[ListEntry]
) -> dict[str, Any]:
    """The ``SendLocalList`` payload of ``protocol`` (2.0.1 omits an empty list: its schema
    wants at least one item)."""
    items = [entry_wire(protocol, entry) for entry in entries]
    if is_v16(protocol):
        return {"listVersion": version, "updateType": update_type, "localAuthorizationList": items}
    payload: dict[str, Any] = {"versionNumber": version, "updateType": update_type}
    if items:
        payload["localAuthorizationList"] = items
    return payload


def _version_of(payload: Any) -> int | None:
    payload = as_dict(payload)
    version = payload.get("listVersion", payload.get("versionNumber"))
    return as_int(version)


# -- the pure planning --------------------------------------------------------------------------


def changes(
    held: Mapping[EntryKey, ListEntry], desired: Mapping[EntryKey, ListEntry]
) -> list[ListEntry]:
    """What a differential update must carry to turn ``held`` into ``desired``: every
    desired entry that is new or differs, then a removal (no status) for every held entry no
    longer desired; each part sorted by key, so the plan is the same on every replay."""
    updated = [entry for key, entry in sorted(desired.items()) if held.get(key) != entry]
    removed = [
        ListEntry(id_token=entry.id_token, type=entry.type, status=None)
        for key, entry in sorted(held.items())
        if key not in desired
    ]
    return updated + removed


def next_version(state: StationListState | None) -> int:
    """A version above every version sent to, acknowledged or reported by the station."""
    if state is None:
        return 1
    known = (state.sent_version, state.acknowledged_version, state.reported_version)
    return max([version for version in known if version is not None] + [0]) + 1


class ListPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The next ``SendLocalList`` for a station: ``entries`` is one chunk; what is left is
    sent after the station accepts it (planned again from what it then holds)."""

    version: int
    update_type: UpdateType
    entries: list[ListEntry]
    remaining: int
    """Entries still to send after this chunk."""


def plan_update(
    state: StationListState | None,
    desired: Mapping[EntryKey, ListEntry],
    *,
    items_per_message: int,
) -> ListPlan | None:
    """The next update that brings the station from what it acknowledged to ``desired``, or
    ``None`` when it is up to date.

    Full when the station never acknowledged a list, when it answered ``VersionMismatch``, when
    its reported version is not the acknowledged one, or when an operator asked for one
    (``state.full_requested``); the first chunk of a full update is ``Full`` (it replaces the
    station's list), the rest follow as differential updates once it is accepted. A station that
    never held a list and is desired to hold none is left alone unless a full update is due.
    ``items_per_message`` below 1 is taken as 1."""
    size = max(1, items_per_message)
    forced = state is not None and (state.needs_full or state.full_requested)
    if state is None or state.acknowledged_version is None or forced:
        if not desired and not forced:
            return None  # it never held a list and none is wanted
        ordered = [entry for _, entry in sorted(desired.items())]
        return ListPlan(
            version=next_version(state),
            update_type="Full",
            entries=ordered[:size],
            remaining=max(0, len(ordered) - size),
        )
    assert state is not None
    pending = changes(state.entries, desired)
    if not pending:
        return None
    return ListPlan(
        version=next_version(state),
        update_type="Differential",
        entries=pending[:size],
        remaining=max(0, len(pending) - size),
    )


class RegisteredToken(Protocol):
    """What a local list reads of a token of the registry (its ``TokenState``)."""

    @property
    def id_token(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def expiry(self) -> str | None: ...
    @property
    def group(self) -> str | None: ...


def desired_entries(
    definitions: Iterable[ListDefinition], tokens: Iterable[RegisteredToken], protocol: str
) -> dict[EntryKey, ListEntry]:
    """The entries a station assigned ``definitions`` should hold, in ``protocol``: every
    registry token one of them selects, with its status, expiry and group (1.6 entries carry
    no type: two tokens of one value but different types are one 1.6 entry, the first in the
    registry's order)."""
    definitions = list(definitions)
    v16 = is_v16(protocol)
    wanted: dict[EntryKey, ListEntry] = {}
    for token in tokens:
        if not any(_selects(definition, token) for definition in definitions):
            continue
        entry = ListEntry(
            id_token=token.id_token,
            type=None if v16 else token.type,
            status=token.status,
            expiry=token.expiry,
            group=token.group,
        )
        wanted.setdefault(entry.key, entry)
    return wanted


def _selects(definition: ListDefinition, token: RegisteredToken) -> bool:
    if definition.selection == "all":
        return True
    if definition.selection == "group":
        return definition.group is not None and token.group == definition.group
    return token.id_token.casefold() in {token.casefold() for token in definition.tokens}


# -- the projection ---------------------------------------------------------------------------


class ListDefinition(msgspec.Struct, kw_only=True):
    """A named selection of the token registry, assigned to stations."""

    name: str
    selection: Literal["all", "group", "tokens"]
    group: str | None
    tokens: list[str]
    stations: list[str] | None
    """``None``: every station."""
    description: str
    defined_at: float
    defined_by: str

    def assigned(self, station: str) -> bool:
        return self.stations is None or station in self.stations


class StationListState(msgspec.Struct, kw_only=True):
    """What the CSMS knows of one station's local list. Read-only for everyone but the
    projection."""

    station: str
    protocol: str = ""
    sent_version: int | None = None
    """The version of the last SendLocalList sent."""
    acknowledged_version: int | None = None
    """The version of the last SendLocalList the station answered ``Accepted``."""
    reported_version: int | None = None
    """The version its last GetLocalListVersion answer reported."""
    entries: dict[EntryKey, ListEntry] = {}
    """What the station holds as far as its acknowledged updates say."""
    pending: bool = False
    """A SendLocalList is on its way (sent, not yet answered)."""
    needs_full: bool = False
    """The CSMS no longer knows the station's entries (``VersionMismatch``, a reported
    version other than the acknowledged one): the next update is full."""
    full_requested: bool = False
    """An operator asked for a full update that has not been accepted yet."""
    last_status: str | None = None
    last_update_type: str | None = None
    last_at: float | None = None
    full_updates: int = 0
    differential_updates: int = 0
    mismatches: int = 0
    failures: int = 0
    """``Failed`` and ``NotSupported`` answers and CALLERRORs."""


class LocalListsProjection:
    """List definitions and per-station sync state, folded from the log."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            LocalListDefined,
            LocalListDeleted,
            LocalListPushRequested,
            CallTimedOut,
            SessionClosed,
            "SendLocalList",
            "GetLocalListVersion",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._definitions: dict[str, ListDefinition] = {}
        self._stations: dict[str, StationListState] = {}
        self._managed: set[str] = set()
        self._managed_all = False

    # -- reading -------------------------------------------------------------------------------

    def definition(self, name: str) -> ListDefinition | None:
        return self._definitions.get(name)

    def definitions(self) -> list[ListDefinition]:
        """Every list definition, sorted by name."""
        return sorted(self._definitions.values(), key=attrgetter("name"))

    def assigned(self, station: str) -> list[ListDefinition]:
        """The lists assigned to ``station``, sorted by name."""
        return [definition for definition in self.definitions() if definition.assigned(station)]

    def get(self, station: str) -> StationListState | None:
        return self._stations.get(station)

    def managed(self, station: str) -> bool:
        """Whether a list was ever assigned to ``station``: from then on its list is kept equal
        to what its lists select (so deleting its last list empties it). A station never
        assigned one keeps whatever ``send_local_list`` gave it."""
        return self._managed_all or station in self._managed

    def desired(
        self, station: str, protocol: str, tokens: Iterable[RegisteredToken]
    ) -> dict[EntryKey, ListEntry]:
        """The entries ``station`` should hold in ``protocol``: what its lists select of
        ``tokens`` (the registry)."""
        return desired_entries(self.assigned(station), tokens, protocol)

    def behind(self, station: str, protocol: str, tokens: Iterable[RegisteredToken]) -> bool:
        """Whether ``station`` does not hold what its lists select: its entries differ, or the
        CSMS does not know them (``needs_full``), or an asked-for full update is not accepted
        yet. A station that never got a list and is assigned none is not behind."""
        plan = plan_update(
            self.get(station), self.desired(station, protocol, tokens), items_per_message=1
        )
        return plan is not None

    def all(self) -> list[StationListState]:
        """Every station a list was ever sent to or asked of, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    # -- folding -------------------------------------------------------------------------------

    def _state(self, station: str) -> StationListState:
        state = self._stations.get(station)
        if state is None:
            state = self._stations[station] = StationListState(station=station)
        return state

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes (CALLERRORs included)."""
        event = recorded.event
        if isinstance(event, LocalListDefined):
            self._definitions[event.name] = ListDefinition(
                name=event.name,
                selection=event.selection,
                group=event.group,
                tokens=list(event.tokens),
                stations=None if event.stations is None else list(event.stations),
                description=event.description,
                defined_at=event.at,
                defined_by=event.key,
            )
            if event.stations is None:
                self._managed_all = True
            else:
                self._managed.update(event.stations)
        elif isinstance(event, LocalListDeleted):
            self._definitions.pop(event.name, None)
        elif isinstance(event, LocalListPushRequested):
            if event.full:
                for station in event.stations:
                    self._state(station).full_requested = True
        elif isinstance(event, FrameLogged):
            self._frame(event)
        elif isinstance(event, CallTimedOut) and event.action == "SendLocalList":
            if event.station in self._stations:
                self._stations[event.station].pending = False
        elif isinstance(event, SessionClosed) and event.station in self._stations:
            self._stations[event.station].pending = False
        if exchange is not None and exchange.origin == "out":
            if exchange.action == "SendLocalList":
                self._answered(exchange)
            elif exchange.action == "GetLocalListVersion" and exchange.error is None:
                self._reported(exchange)

    def _frame(self, event: FrameLogged) -> None:
        if event.direction != "out" or "SendLocalList" not in event.text:
            return
        frame = decode_frame(event.text)
        if frame is None or frame[0] != 2 or len(frame) < 4 or frame[2] != "SendLocalList":
            return
        state = self._state(event.station)
        state.pending = True
        state.sent_version = _version_of(frame[3])

    def _answered(self, exchange: Exchange) -> None:
        state = self._state(exchange.station)
        state.pending = False
        state.protocol = exchange.protocol
        state.last_at = exchange.at
        request = as_dict(exchange.request)
        update_type = as_str(request.get("updateType"))
        state.last_update_type = update_type
        if exchange.error is not None:
            state.last_status = f"CALLERROR {exchange.error.code}"
            state.failures += 1
            return
        status = as_str(as_dict(exchange.response).get("status"))
        state.last_status = status
        if status == "Accepted":
            items = (
                read_entry(exchange.protocol, item)
                for item in as_list(request.get("localAuthorizationList"))
            )
            entries = [entry for entry in items if entry is not None]
            if update_type == "Full":
                state.entries = {}
                state.full_updates += 1
                state.full_requested = False
            else:
                state.differential_updates += 1
            for entry in entries:
                if entry.status is None:
                    state.entries.pop(entry.key, None)
                else:
                    state.entries[entry.key] = entry
            state.acknowledged_version = _version_of(request)
            state.needs_full = False
        elif status == "VersionMismatch":
            state.mismatches += 1
            state.needs_full = True
        else:
            state.failures += 1

    def _reported(self, exchange: Exchange) -> None:
        state = self._state(exchange.station)
        state.protocol = exchange.protocol
        version = _version_of(exchange.response)
        state.reported_version = version
        empty = version in (None, 0, -1) and not state.entries
        if version != state.acknowledged_version and not empty:
            state.needs_full = True


def list_definition_json(definition: ListDefinition) -> dict[str, Any]:
    """``definition`` as JSON-ready builtins."""
    return {
        "name": definition.name,
        "selection": definition.selection,
        "group": definition.group,
        "tokens": list(definition.tokens),
        "stations": None if definition.stations is None else list(definition.stations),
        "description": definition.description,
        "defined_at": rfc3339(definition.defined_at),
        "defined_by": definition.defined_by,
    }


def station_list_json(state: StationListState, *, behind: bool) -> dict[str, Any]:
    """``state`` as JSON-ready builtins; ``behind``: the station does not hold what its lists
    select (computed by the caller against the registry)."""
    return {
        "station": state.station,
        "protocol": state.protocol,
        "sent_version": state.sent_version,
        "acknowledged_version": state.acknowledged_version,
        "reported_version": state.reported_version,
        "entries": len(state.entries),
        "pending": state.pending,
        "needs_full": state.needs_full,
        "full_requested": state.full_requested,
        "last_status": state.last_status,
        "last_update_type": state.last_update_type,
        "last_at": None if state.last_at is None else rfc3339(state.last_at),
        "full_updates": state.full_updates,
        "differential_updates": state.differential_updates,
        "mismatches": state.mismatches,
        "failures": state.failures,
        "behind": behind,
    }
