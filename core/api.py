"""The one door: :class:`CentralSystem`, the only way anything asks a station for something.

The HTTP API, Python callers, the CLI (through the API) and plugins' ``SendCall`` commands all
come through here, and every request is recorded as a ``CommandRequested`` event naming who
asked (a :class:`Caller`) before anything is sent. Station registration goes through here too.

Two modes, as in the best CSMS stacks:

* **Use-case mode**: :meth:`CentralSystem.run` with the arguments of one of the use cases of
  :data:`chargeledger.core.usecases.USE_CASES`, the same call whatever the station's protocol
  version; it returns a :class:`UseCaseResult`. Each use case is also a method named after it
  (``await csms.reset("CP-1", "hard")``), generated from the table, whose positional
  arguments are the argument struct's fields in order.
* **Message mode**: :meth:`CentralSystem.call`, any action of the station's version with a raw
  payload, schema-checked, returning the station's CALLRESULT payload.

Every method awaits the station's answer; report use cases (``get_base_report``,
``get_report``, ``read_configuration`` of every key in 2.0.1, ``get_display_messages``) also
await the parts of their report (NotifyReport, NotifyDisplayMessages), woken by the commit
feed, until their request's probe (``Request.report``) says it is complete. They raise, from
:mod:`chargeledger.core.errors`:

* ``OutboundValidationError``: the payload violates the official schema; nothing was sent.
* ``StationOffline``: the station is not connected to this node, or left before answering.
  With a PostgreSQL store (several nodes), a command for a station connected to another
  node is sent there and answered here (docs/cluster.md): ``StationOffline`` then means
  connected to no live node.
* ``CallError``: the station answered with a CALLERROR (``code``, ``description``).
* ``CallTimeout``: no answer within ``Settings.call_timeout``; the timeout is recorded and a
  late answer is recorded and ignored.
* ``StationBusy``: the station's queue of CALLs is full; nothing was sent: try again later.
* ``UnsupportedUseCase``: the use case has no equivalent in the station's version.
* ``StoreUnavailable``: the request could not be recorded; nothing was sent.
* ``PermissionError``: the caller's role is below the one the use case needs.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Literal, get_args

import msgspec
import trio

from chargeledger.core.drain import NodeDrain
from chargeledger.core.errors import StationOffline, StreamConflict, UnsupportedUseCase
from chargeledger.core.events import (
    CampaignCancelled,
    CampaignPaused,
    CampaignResumed,
    CommandAnswered,
    CommandRequested,
    CommandRouted,
    LocalListDefined,
    LocalListDeleted,
    LocalListPushRequested,
    SiteDefined,
    SiteDeleted,
    SitePeriod,
    StationDeregistered,
    StationPasswordSet,
    StationRegistered,
    TariffAssigned,
    TariffDefined,
    TariffRemoved,
    TariffUnassigned,
    command_stream,
    firmware_campaign_stream,
    local_list_stream,
    registry_stream,
    site_stream,
    tariff_stream,
)
from chargeledger.core.feed import CommitFeed
from chargeledger.core.firmware import CampaignRequest, campaign_created
from chargeledger.core.gateway import Gateway
from chargeledger.core.nodes import Nodes, answer_of
from chargeledger.core.security import generate_password, hash_password
from chargeledger.core.settings import ApiRole, Settings
from chargeledger.core.store import Store
from chargeledger.core.tariff import Tariff, check_target, check_tariff
from chargeledger.core.tokens import TokenRequest, registration_events, removal_events
from chargeledger.core.usecase_base import ReportProbe
from chargeledger.core.usecases import (
    USE_CASES,
    UseCase,
    UseCaseArgs,
    UseCaseResult,
    use_case_of,
)
from chargeledger.core.writer import GroupCommitWriter
from chargeledger.projections import Registration, TokenState, Views, sets_password
from chargeledger.projections.firmware import CampaignState
from chargeledger.projections.local_lists import ListDefinition
from chargeledger.projections.sites import SiteState, check_site_phases
from chargeledger.projections.tariffs import Assignment, TariffState
from chargeledger.schemas import OCPP16, OCPP201

__all__ = ["PLUGINS", "PYTHON", "Caller", "CentralSystem", "UseCaseResult"]

_RANK = {role: rank for rank, role in enumerate(get_args(ApiRole))}

_ROUTED: ContextVar[CommandRouted | None] = ContextVar("routed", default=None)
"""The routed command this task sends for another node (docs/cluster.md), if any."""


class _NotTaken(Exception):
    """The asking node gave up on the routed command before this node took it."""


class Caller(msgspec.Struct, frozen=True):
    """Who asks: a name (an API key's name, a program's, ``plugins``) and a role, which
    decides what they may ask for (``read`` < ``operator`` < ``admin``)."""

    name: str
    role: ApiRole = "admin"

    def may(self, role: ApiRole) -> bool:
        """Whether this caller has ``role`` or a higher one."""
        return _RANK[self.role] >= _RANK[role]


PYTHON = Caller("python")
"""The caller of a Python program that does not name itself."""

PLUGINS = Caller("plugins", "operator")
"""The caller of the ``SendCall`` commands plugins return."""


class CentralSystem:
    """A handle on a running server (what :func:`~chargeledger.core.server.run_server`
    hands to ``task_status``)."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        writer: GroupCommitWriter,
        store: Store,
        feed: CommitFeed,
        settings: Settings,
        port: int,
        nodes: Nodes | None = None,
    ) -> None:
        self.gateway = gateway
        self.nodes = nodes
        """This node among the nodes sharing a PostgreSQL store (which holds each station,
        commands routed to it: docs/cluster.md); ``None`` alone."""
        self.writer = writer
        self.store = store
        self.feed = feed
        """The commit feed: the newest committed position and a wake-up for waiters."""
        self.settings = settings
        self.port = port
        self.api_port: int | None = None
        """The HTTP API's bound port; ``None`` when the API is not served."""
        self.drain = NodeDrain()
        """Ask it to drain this node: the server stops once every session is closed."""
        self._last_request_id = 0

    @property
    def views(self) -> Views:
        """The live projections (read-only)."""
        return self.gateway.views

    @property
    def node(self) -> str:
        """This node's id (``Settings.node``)."""
        return self.settings.node

    @property
    def connected(self) -> list[str]:
        """Stations connected to this node."""
        return sorted(self.gateway.sessions)

    def protocol(self, station: str) -> str:
        """The protocol version of the station's current connection; ``StationOffline`` if none."""
        session = self.gateway.sessions.get(station)
        if session is None:
            raise StationOffline(station=station, action=None)
        return session.protocol

    # -- asking stations ---------------------------------------------------------------------

    async def call(
        self,
        station: str,
        action: str,
        payload: Any,
        *,
        caller: Caller = PYTHON,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Message mode: record the request, send ``action`` with ``payload`` and return the
        station's answer. ``request_id`` names the ``CommandRequested`` (fresh by default).
        A CALL that sets the station's password is refused (``PermissionError``, nothing
        recorded): only ``change_station_password`` may do that (see ``sets_password``)."""
        if isinstance(payload, dict) and sets_password(action, payload):
            raise PermissionError(_PASSWORD_BY_USE_CASE)
        if self._elsewhere(station):
            assert self.nodes is not None
            try:
                held = await self.nodes.locate(station)
            except StationOffline:
                # Connected nowhere: recorded and refused, as for a station not connected
                # to a node alone.
                await self._record(caller, station, "message", action, payload, request_id)
                raise
            return await self.nodes.ask(
                held,
                key=caller.name,
                role=caller.role,
                mode="message",
                command=action,
                payload=msgspec.to_builtins(payload),
                request_id=request_id,
            )
        await self._record(caller, station, "message", action, payload, request_id)
        return await self.gateway.call(station, action, payload)

    def _elsewhere(self, station: str) -> bool:
        """Whether a command for ``station`` goes to another node: a cluster, the station
        not connected here, and not a command routed here already."""
        return (
            self.nodes is not None
            and station not in self.gateway.sessions
            and _ROUTED.get() is None
        )

    async def serve_routed(self, routed: CommandRouted) -> CommandAnswered | None:
        """Send a command another node routed here through this one door, as asked there
        (same caller, same request id), and say how it went; ``None`` when the asking node
        gave up first (nothing sent). Its ``CommandRequested`` is version 2 of the command's
        stream: the take, written with optimistic concurrency against the asker's giving
        up."""
        if routed.station not in self.gateway.sessions:  # it left meanwhile
            reason = f"not connected to any node (it left node {self.node!r})"
            offline = StationOffline(station=routed.station, action=None, reason=reason)
            return answer_of(routed, self.node, None, offline)
        caller = Caller(routed.key, routed.role)  # type: ignore[arg-type]
        token = _ROUTED.set(routed)
        result: dict[str, Any] | None = None
        try:
            if routed.mode == "message":
                result = await self.call(
                    routed.station,
                    routed.command,
                    routed.payload,
                    caller=caller,
                    request_id=routed.request_id,
                )
            else:
                use_case = USE_CASES[routed.command]
                args = msgspec.convert(routed.payload, use_case.args)
                done = await self.run(
                    routed.station, args, caller=caller, request_id=routed.request_id
                )
                result = msgspec.to_builtins(done)
        except _NotTaken:
            return None
        except Exception as exc:  # every failure goes back to the asker, raised there
            return answer_of(routed, self.node, None, exc)
        finally:
            _ROUTED.reset(token)
        return answer_of(routed, self.node, result, None)

    async def run(
        self,
        station: str,
        args: UseCaseArgs,
        *,
        caller: Caller = PYTHON,
        request_id: str | None = None,
    ) -> UseCaseResult:
        """Use-case mode: record the request, send the station's version of the use case
        ``args`` are the arguments of, and read its answer (awaiting a report's parts, at most
        ``call_timeout``: ``ReportIncomplete`` when some are still missing then).

        A use case with a ``secret`` (``change_station_password``) records the secret's hash,
        never the secret, and is refused with ``StationOffline`` before anything is recorded
        when the station is not connected here: the recorded hash makes the password valid.
        A use case that would set the password otherwise is refused (``PermissionError``).
        A use case's ``check`` runs first, against the live views and the clock: its
        refusal (``InvalidUseCaseArguments``, ``UnsupportedUseCase``, ``StationOffline``)
        leaves nothing recorded."""
        use_case = use_case_of(args)
        self._require(caller, use_case.role, use_case.name)
        if use_case.secret is None and _sets_password(use_case, args):
            raise PermissionError(_PASSWORD_BY_USE_CASE)
        if self._elsewhere(station):
            assert self.nodes is not None
            if use_case.secret is not None:  # the secret would be recorded on its way
                raise StationOffline(
                    station=station,
                    action=None,
                    reason="not connected to this node (a password change is asked on the "
                    "node the station is connected to)",
                )
            answered = await self.nodes.ask(
                await self.nodes.locate(station),
                key=caller.name,
                role=caller.role,
                mode="use_case",
                command=use_case.name,
                payload=msgspec.to_builtins(args),
                request_id=request_id,
            )
            return msgspec.convert(answered, UseCaseResult)
        if use_case.check is not None:
            use_case.check(self.views, station, self.protocol(station), args, time.time())
        recorded: dict[str, Any] = msgspec.to_builtins(args)
        generated = None
        if use_case.secret is not None:
            # The recorded hash makes the password valid at once (see the registry): never
            # for a station that cannot be sent it.
            self.protocol(station)
            secret = getattr(args, use_case.secret)
            if secret is None:
                secret = generated = generate_password()
                args = msgspec.structs.replace(args, **{use_case.secret: secret})
            recorded.pop(use_case.secret, None)
            recorded[f"{use_case.secret}_hash"] = await trio.to_thread.run_sync(
                hash_password, secret
            )
        await self._record(caller, station, "use_case", use_case.name, recorded, request_id)
        request = use_case.build(self.protocol(station), args, self._request_id())
        result = request.result(await self.gateway.call(station, request.action, request.payload))
        if request.report is not None and result.accepted:
            return await self._await_report(station, request.report, result)
        if generated is not None and use_case.secret is not None:
            result = msgspec.structs.replace(
                result, values={**result.values, use_case.secret: generated}
            )
        return result

    async def _record(
        self,
        caller: Caller,
        station: str,
        mode: Literal["use_case", "message"],
        command: str,
        payload: Any,
        request_id: str | None,
    ) -> None:
        event = CommandRequested(
            request_id=request_id or str(uuid.uuid4()),
            station=station,
            at=time.time(),
            key=caller.name,
            role=caller.role,
            mode=mode,
            command=command,
            payload=msgspec.to_builtins(payload),
            node=self.node,
        )
        stream = command_stream(event.request_id)
        if _ROUTED.get() is None:
            await self.writer.append([(stream, event)])
            return
        try:  # the take of a routed command: after its CommandRouted, unless given up
            await self.writer.append([(stream, event)], versions={stream: 2})
        except StreamConflict:
            raise _NotTaken from None

    def _request_id(self) -> int:
        """A fresh 2.0.1 ``requestId`` / ``remoteStartId``: above every id this process handed
        out and above the log position folded last, so ids do not repeat within a process and
        keep growing across restarts (every request sent is logged)."""
        self._last_request_id = max(self._last_request_id, self.views.position) + 1
        return self._last_request_id

    async def _await_report(
        self, station: str, probe: ReportProbe, result: UseCaseResult
    ) -> UseCaseResult:
        """Wait, woken by each commit, until ``probe`` says the report is complete (at most
        ``call_timeout``); ``values``: the probe's then (``ReportIncomplete`` when parts are
        still missing)."""
        with trio.move_on_after(self.settings.call_timeout):
            while not probe(self.views, station).complete:
                await self.feed.wait_beyond(self.feed.position, self.settings.call_timeout)
        progress = probe(self.views, station)
        if progress.complete:
            return msgspec.structs.replace(result, values=progress.values)
        return msgspec.structs.replace(
            result, status="ReportIncomplete", accepted=False, values=progress.values
        )

    def close_session(self, station: str, code: int = 1000, reason: str = "") -> bool:
        """Close the station's connection to this node (recorded as its ``SessionClosed``);
        whether it was connected here."""
        return self.gateway.close_session(station, code, reason)

    # -- the station registry ----------------------------------------------------------------

    async def register_station(
        self,
        station: str,
        description: str = "",
        *,
        profile: int = 0,
        enabled: bool = True,
        caller: Caller = PYTHON,
    ) -> Registration:
        """Register the station (again: description, profile and enabled are replaced, the
        password is kept); needs ``admin``. ``profile`` is the lowest security profile it
        may connect with (0-3, else ``ValueError``); a disabled station is refused at the
        handshake. A profile 1 or 2 station needs a password (:meth:`set_station_password`)."""
        self._require(caller, "admin", "registering a station")
        if profile not in (0, 1, 2, 3):
            raise ValueError(f"security profile {profile} does not exist (0-3)")
        event = StationRegistered(
            request_id=str(uuid.uuid4()),
            station=station,
            at=time.time(),
            key=caller.name,
            description=description,
            profile=profile,
            enabled=enabled,
        )
        await self.writer.append([(registry_stream(event.request_id), event)])
        registration = self.views.registry.get(station)
        assert registration is not None  # folded by the dispatcher before append returned
        return registration

    async def set_station_password(
        self, station: str, password: str | None = None, *, caller: Caller = PYTHON
    ) -> str | None:
        """Set the registered station's HTTP Basic password, or a generated one when
        ``password`` is ``None``, and return it: it is shown this once, only its argon2id hash
        is recorded (``StationPasswordSet``). It replaces the current password and any
        pending one at once: a station still using the old one is refused from then on (to
        change a connected station's password, use ``change_station_password``). ``None``
        (nothing recorded) when the station is not registered; ``ValueError`` when the
        password is not 16-40 printable characters. Needs ``admin``."""
        self._require(caller, "admin", "setting a station password")
        if self.views.registry.get(station) is None:
            return None
        password = password if password is not None else generate_password()
        event = StationPasswordSet(
            request_id=str(uuid.uuid4()),
            station=station,
            at=time.time(),
            key=caller.name,
            password_hash=await trio.to_thread.run_sync(hash_password, password),
        )
        await self.writer.append([(registry_stream(event.request_id), event)])
        return password

    async def deregister_station(self, station: str, *, caller: Caller = PYTHON) -> bool:
        """Remove the station's registration; ``False`` (nothing recorded) when it is not
        registered. The station's log and state stay. Needs ``admin``."""
        self._require(caller, "admin", "deregistering a station")
        if self.views.registry.get(station) is None:
            return False
        event = StationDeregistered(
            request_id=str(uuid.uuid4()), station=station, at=time.time(), key=caller.name
        )
        await self.writer.append([(registry_stream(event.request_id), event)])
        return True

    # -- local authorization lists (docs/authorization.md) -----------------------------------

    async def define_local_list(
        self,
        name: str,
        *,
        selection: Literal["all", "group", "tokens"] = "all",
        group: str | None = None,
        tokens: list[str] | None = None,
        stations: list[str] | None = None,
        description: str = "",
        caller: Caller = PYTHON,
    ) -> ListDefinition:
        """Define (or redefine) the local list ``name``: the registry's tokens it selects
        (``all``, those of ``group``, or the explicit ``tokens``) for ``stations`` (``None``:
        every station). Recorded as ``LocalListDefined``; the local_list plugin then brings
        the connected stations up to date. Needs ``operator``; ``ValueError`` (nothing
        recorded) for an empty name, a ``group`` selection without a group or a ``tokens``
        selection without tokens."""
        self._require(caller, "operator", "defining a local list")
        if not name.strip():
            raise ValueError("a local list needs a name")
        if selection == "group" and not group:
            raise ValueError("a group selection needs the group")
        if selection == "tokens" and not tokens:
            raise ValueError("a tokens selection needs at least one token")
        event = LocalListDefined(
            request_id=str(uuid.uuid4()),
            at=time.time(),
            key=caller.name,
            name=name,
            selection=selection,
            group=group if selection == "group" else None,
            tokens=list(tokens or []) if selection == "tokens" else [],
            stations=None if stations is None else sorted(set(stations)),
            description=description,
        )
        await self.writer.append([(local_list_stream(event.request_id), event)])
        definition = self.views.local_lists.definition(name)
        assert definition is not None  # folded by the dispatcher before append returned
        return definition

    async def delete_local_list(self, name: str, *, caller: Caller = PYTHON) -> bool:
        """Delete the local list ``name``; its stations lose its entries at their next update
        (the plugin sends it). ``False`` (nothing recorded) when no such list exists. Needs
        ``operator``."""
        self._require(caller, "operator", "deleting a local list")
        if self.views.local_lists.definition(name) is None:
            return False
        event = LocalListDeleted(
            request_id=str(uuid.uuid4()), at=time.time(), key=caller.name, name=name
        )
        await self.writer.append([(local_list_stream(event.request_id), event)])
        return True

    async def push_local_lists(
        self, stations: list[str] | None = None, *, full: bool = False, caller: Caller = PYTHON
    ) -> list[str]:
        """Ask the local_list plugin to bring ``stations`` (``None``: every connected station)
        up to date now, with a full update when ``full``; recorded as
        ``LocalListPushRequested`` and returned. Fire and forget: the updates and the
        stations' answers are in the log and in ``views.local_lists``. Needs ``operator``."""
        self._require(caller, "operator", "pushing local lists")
        chosen = sorted(set(self.connected if stations is None else stations))
        event = LocalListPushRequested(
            request_id=str(uuid.uuid4()),
            at=time.time(),
            key=caller.name,
            stations=chosen,
            full=full,
        )
        await self.writer.append([(local_list_stream(event.request_id), event)])
        return chosen

    # -- site limits (docs/smart-charging.md) ------------------------------------------------

    async def define_site(
        self,
        site: str,
        *,
        stations: list[str] | None = None,
        parent: str | None = None,
        limit: float | None = None,
        unit: Literal["A", "W"] = "A",
        min_allocation: float = 0.0,
        deadband: float = 0.0,
        min_interval: float = 0.0,
        description: str = "",
        strategy: Literal["equal", "priority"] = "equal",
        priorities: dict[str, int] | None = None,
        max_allocation: float | None = None,
        phase_limits: dict[str, float] | None = None,
        station_phases: dict[str, list[str]] | None = None,
        periods: list[SitePeriod] | None = None,
        caller: Caller = PYTHON,
    ) -> SiteState:
        """Define (or redefine) the site ``site``: ``stations`` sharing ``limit`` (in ``unit``;
        ``None``: no limit of its own) within ``parent``; the site_limits plugin allocates it
        among their transactions: equal shares (``strategy`` ``equal``) or in ``priorities``
        order (``priority``, each up to ``max_allocation``); ``phase_limits`` limit each
        phase (L1, L2, L3), ``station_phases`` name the phases of stations on fewer than
        three, ``periods`` are daily periods (UTC) with other limits. Recorded as
        ``SiteDefined``. Needs ``admin``; ``ValueError`` (nothing recorded) for an empty
        name, an unknown parent, a parent cycle, a negative number, a unit other than A or
        W, a phase other than L1, L2, L3, or a period's time that is not HH:MM[:SS]."""
        self._require(caller, "admin", "defining a site")
        sites = self.views.sites
        if not site.strip():
            raise ValueError("a site needs a name")
        if unit not in ("A", "W"):
            raise ValueError(f"unit {unit!r} is neither A nor W")
        if parent is not None and sites.get(parent) is None:
            raise ValueError(f"no site {parent!r} to be the parent")
        if parent is not None and site in sites.ancestors(parent):
            raise ValueError(f"{site!r} within {parent!r} would make a cycle")
        numbers = {"limit": limit, "min_allocation": min_allocation, "deadband": deadband}
        numbers["min_interval"] = min_interval
        numbers["max_allocation"] = max_allocation
        if strategy not in ("equal", "priority"):
            raise ValueError(f"strategy {strategy!r} is neither equal nor priority")
        phase_limits, station_phases = dict(phase_limits or {}), dict(station_phases or {})
        periods = list(periods or [])
        check_site_phases(phase_limits, station_phases, periods)
        for name, value in phase_limits.items():
            numbers[f"phase_limits {name}"] = value
        for index, period in enumerate(periods):
            numbers[f"periods[{index}] limit"] = period.limit
            for name, value in period.phase_limits.items():
                numbers[f"periods[{index}] phase_limits {name}"] = value
        negative = [name for name, value in numbers.items() if value is not None and value < 0]
        if negative:
            raise ValueError(f"{', '.join(negative)} must not be negative")
        event = SiteDefined(
            request_id=str(uuid.uuid4()),
            at=time.time(),
            key=caller.name,
            site=site,
            parent=parent,
            stations=sorted(set(stations or [])),
            limit=limit,
            unit=unit,
            min_allocation=min_allocation,
            deadband=deadband,
            min_interval=min_interval,
            description=description,
            strategy=strategy,
            priorities=dict(priorities or {}),
            max_allocation=max_allocation,
            phase_limits=phase_limits,
            station_phases={station: list(wired) for station, wired in station_phases.items()},
            periods=periods,
        )
        await self.writer.append([(site_stream(event.request_id), event)])
        state = self.views.sites.get(site)
        assert state is not None  # folded by the dispatcher before append returned
        return state

    async def delete_site(self, site: str, *, caller: Caller = PYTHON) -> bool:
        """Delete the site (its sub-sites lose their parent; allocations already sent stay
        until their transactions end); ``False`` (nothing recorded) when there is no such
        site. Needs ``admin``."""
        self._require(caller, "admin", "deleting a site")
        if self.views.sites.get(site) is None:
            return False
        event = SiteDeleted(
            request_id=str(uuid.uuid4()), at=time.time(), key=caller.name, site=site
        )
        await self.writer.append([(site_stream(event.request_id), event)])
        return True

    # -- the ID-token registry (docs/authorization.md) ---------------------------------------

    async def register_tokens(
        self, requests: list[TokenRequest], *, caller: Caller = PYTHON
    ) -> list[TokenState]:
        """Register ``requests`` (adds, or full updates: the newest registration of a token
        wins), recorded as one ``TokenRegistered`` each, all in one commit: either every one
        is recorded or none (``ValueError``, nothing recorded, when any is invalid; see
        :func:`~chargeledger.core.tokens.check_token`). Needs ``operator``. Returns the
        tokens' registrations as folded."""
        self._require(caller, "operator", "registering ID tokens")
        pairs = registration_events(requests, caller.name, time.time())
        await self.writer.append(list(pairs), new_stream=True)
        found = [self.views.tokens.get(event.id_token, event.type) for _, event in pairs]
        assert None not in found  # folded by the dispatcher before append returned
        return [state for state in found if state is not None]

    async def remove_token(
        self, id_token: str, type: str | None = None, *, caller: Caller = PYTHON
    ) -> int:
        """Remove the token's registration of ``type`` (``None``: of every type registered
        under that text, matched case-insensitively), one ``TokenRemoved`` each; how many were
        removed (0: nothing recorded). Needs ``operator``."""
        self._require(caller, "operator", "removing ID tokens")
        pairs = removal_events(self.views.tokens, id_token, type, caller.name, time.time())
        await self.writer.append(list(pairs), new_stream=True)
        return len(pairs)

    # -- tariffs (docs/tariffs.md) -----------------------------------------------------------

    async def define_tariff(self, tariff: Tariff, *, caller: Caller = PYTHON) -> TariffState:
        """Define the tariff ``tariff.id``, or redefine it (a transaction keeps the definition
        it started with), recorded as ``TariffDefined``. ``ValueError`` (nothing recorded)
        when it is invalid (:func:`~chargeledger.core.tariff.check_tariff`). Needs ``admin``."""
        self._require(caller, "admin", "defining tariffs")
        check_tariff(tariff)
        await self._tariff_change(
            TariffDefined(
                request_id=str(uuid.uuid4()), at=time.time(), key=caller.name, tariff=tariff
            )
        )
        state = self.views.tariffs.get(tariff.id)
        assert state is not None  # folded by the dispatcher before append returned
        return state

    async def remove_tariff(self, tariff_id: str, *, caller: Caller = PYTHON) -> bool:
        """Remove the tariff (``TariffRemoved``; its assignments stay, and apply again if it
        is defined again); ``False`` (nothing recorded) when it is not defined. Needs
        ``admin``."""
        self._require(caller, "admin", "removing tariffs")
        if self.views.tariffs.get(tariff_id) is None:
            return False
        await self._tariff_change(
            TariffRemoved(
                request_id=str(uuid.uuid4()), at=time.time(), key=caller.name, tariff_id=tariff_id
            )
        )
        return True

    async def assign_tariff(
        self,
        tariff_id: str,
        target: str,
        group: str | None = None,
        *,
        caller: Caller = PYTHON,
    ) -> Assignment:
        """Assign the tariff to ``target`` (``station:<id>`` or ``default``), for the tokens
        of ``group`` only when given (``TariffAssigned``). ``ValueError`` (nothing recorded)
        for an unknown tariff or a malformed target. Needs ``admin``."""
        self._require(caller, "admin", "assigning tariffs")
        check_target(target)
        if self.views.tariffs.get(tariff_id) is None:
            raise ValueError(f"tariff {tariff_id!r} is not defined")
        if group is not None and not 1 <= len(group) <= 36:
            raise ValueError(f"group {group!r}: 1 to 36 characters")
        await self._assignment(TariffAssigned, caller, tariff_id, target, group)
        assignment = self.views.tariffs.assignment(tariff_id, target, group)
        assert assignment is not None  # folded by the dispatcher before append returned
        return assignment

    async def unassign_tariff(
        self,
        tariff_id: str,
        target: str,
        group: str | None = None,
        *,
        caller: Caller = PYTHON,
    ) -> bool:
        """Take back the assignment (``TariffUnassigned``); ``False`` (nothing recorded) when
        there is none. Needs ``admin``."""
        self._require(caller, "admin", "unassigning tariffs")
        if self.views.tariffs.assignment(tariff_id, target, group) is None:
            return False
        await self._assignment(TariffUnassigned, caller, tariff_id, target, group)
        return True

    async def _assignment(
        self,
        kind: type[TariffAssigned | TariffUnassigned],
        caller: Caller,
        tariff_id: str,
        target: str,
        group: str | None,
    ) -> None:
        await self._tariff_change(
            kind(
                request_id=str(uuid.uuid4()),
                at=time.time(),
                key=caller.name,
                target=target,
                tariff_id=tariff_id,
                group=group,
            )
        )

    async def _tariff_change(
        self, event: TariffDefined | TariffRemoved | TariffAssigned | TariffUnassigned
    ) -> None:
        await self.writer.append([(tariff_stream(event.request_id), event)], new_stream=True)

    # -- firmware campaigns (docs/device-management.md) --------------------------------------

    async def create_campaign(
        self, request: CampaignRequest, *, caller: Caller = PYTHON
    ) -> CampaignState:
        """Start a firmware campaign over the stations ``request`` selects (resolved now and
        recorded as a list), recorded as ``CampaignCreated``; the firmware plugin then rolls
        it out. Needs ``operator``; ``ValueError`` (nothing recorded) for a selection that
        selects nothing or firmware arguments a selected station's version refuses."""
        self._require(caller, "operator", "creating a firmware campaign")
        event = campaign_created(self.views, request, caller.name, time.time())
        await self.writer.append([(firmware_campaign_stream(event.request_id), event)])
        campaign = self.views.firmware.campaign(event.campaign_id)
        assert campaign is not None  # folded by the dispatcher before append returned
        return campaign

    async def cancel_campaign(
        self, campaign_id: str, *, caller: Caller = PYTHON
    ) -> CampaignState | None:
        """Cancel the running or paused campaign (``CampaignCancelled``): no further station
        is updated. ``None`` (nothing recorded) when no such campaign exists; the campaign
        unchanged when it has ended. Needs ``operator``."""
        return await self._campaign_event(
            CampaignCancelled, campaign_id, ("running", "paused"), caller, "cancelling"
        )

    async def pause_campaign(
        self, campaign_id: str, *, caller: Caller = PYTHON
    ) -> CampaignState | None:
        """Pause the running campaign (``CampaignPaused``): no station is updated until it
        is resumed; as :meth:`cancel_campaign` otherwise."""
        return await self._campaign_event(
            CampaignPaused, campaign_id, ("running",), caller, "pausing"
        )

    async def resume_campaign(
        self, campaign_id: str, *, caller: Caller = PYTHON
    ) -> CampaignState | None:
        """Resume the paused campaign (``CampaignResumed``): its next step is due at once;
        as :meth:`cancel_campaign` otherwise."""
        return await self._campaign_event(
            CampaignResumed, campaign_id, ("paused",), caller, "resuming"
        )

    async def _campaign_event(
        self,
        kind: type[CampaignCancelled | CampaignPaused | CampaignResumed],
        campaign_id: str,
        statuses: tuple[str, ...],
        caller: Caller,
        what: str,
    ) -> CampaignState | None:
        self._require(caller, "operator", f"{what} a firmware campaign")
        campaign = self.views.firmware.campaign(campaign_id)
        if campaign is None or campaign.status not in statuses:
            return campaign
        event = kind(
            request_id=str(uuid.uuid4()), at=time.time(), key=caller.name, campaign_id=campaign_id
        )
        await self.writer.append([(firmware_campaign_stream(event.request_id), event)])
        return campaign

    @staticmethod
    def _require(caller: Caller, role: ApiRole, what: str) -> None:
        if not caller.may(role):
            raise PermissionError(
                f"{what} needs the {role!r} role; {caller.name!r} has {caller.role!r}"
            )


_PASSWORD_BY_USE_CASE = (
    "this sets the station's password: use the use case change_station_password, which "
    "records only its hash and keeps the old password valid until the station uses the new one"
)


def _sets_password(use_case: UseCase[Any], args: UseCaseArgs) -> bool:
    """Whether ``args`` would make ``use_case`` set the station's password in either protocol
    version (the builders are pure, so both can be asked before anything is recorded)."""
    for protocol in (OCPP16, OCPP201):
        try:
            request = use_case.build(protocol, args, 0)
        except (UnsupportedUseCase, ValueError):
            continue
        if sets_password(request.action, request.payload):
            return True
    return False


def _use_case_method(
    use_case: UseCase[Any],
) -> Callable[..., Awaitable[UseCaseResult]]:
    """``CentralSystem.<use case>(station, *args, caller=..., **kwargs)``: the argument
    struct's fields, positionally in order or by name."""
    fields = msgspec.structs.fields(use_case.args)

    async def method(
        self: CentralSystem,
        station: str,
        *args: Any,
        caller: Caller = PYTHON,
        request_id: str | None = None,
        **kwargs: Any,
    ) -> UseCaseResult:
        if len(args) > len(fields):
            raise TypeError(f"{use_case.name} takes at most {len(fields)} arguments")
        named = {field.name: value for field, value in zip(fields, args, strict=False)}
        clash = named.keys() & kwargs.keys()
        if clash:
            raise TypeError(f"{use_case.name} got several values for {sorted(clash)}")
        arguments = use_case.args(**named, **kwargs)
        return await self.run(station, arguments, caller=caller, request_id=request_id)

    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("station", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str),
        *(
            inspect.Parameter(
                field.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=field.type,
                default=inspect.Parameter.empty if field.required else field.default,
            )
            for field in fields
        ),
        inspect.Parameter("caller", inspect.Parameter.KEYWORD_ONLY, default=PYTHON),
        inspect.Parameter("request_id", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]
    method.__name__ = method.__qualname__ = use_case.name
    method.__doc__ = use_case.args.__doc__
    method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=UseCaseResult
    )
    return method


for _use_case in USE_CASES.values():
    setattr(CentralSystem, _use_case.name, _use_case_method(_use_case))
