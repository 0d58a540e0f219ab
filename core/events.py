"""The domain events: everything the event store records, and nothing else.

Every event is a frozen ``msgspec.Struct``; its class name is the stored event's topic and its
msgspec JSON encoding is the stored state. State (stations, transactions, ...) is never
stored: it is folded from these events by ``chargeledger.projections``.

Streams (the store's ``originator_id``, text):

* ``session:<uuid>``: one per WebSocket connection. Only that connection's session task
  appends to it, so appends never conflict, with one exception: with several nodes, another
  node may close it (``SessionClosed`` at the head's next version: it took the station over,
  or released a node presumed dead), and the session's later appends are refused
  (docs/cluster.md). Holds ``SessionOpened``, ``FrameLogged``, ``CallTimedOut`` and
  ``SessionClosed`` (or only ``HandshakeRejected``).
* ``allocator:transaction-ids``: the 1.6 transaction-id allocator's block reservations
  (``TransactionIdsReserved``), written with optimistic concurrency so that several server
  processes sharing one PostgreSQL never hand out the same id.
* ``command:<uuid>``: one per command asked through the HTTP API (``CommandRequested``),
  written once, before the command is sent: who asked for what is in the log. A command
  routed to another node holds ``CommandRouted``, then the holder's ``CommandRequested``,
  then ``CommandAnswered`` (docs/cluster.md).
* ``local-list:<uuid>``: one per local authorization list change or push request
  (``LocalListDefined`` / ``LocalListDeleted`` / ``LocalListPushRequested``).
* ``firmware-campaign:<uuid>``: one per firmware campaign request (``CampaignCreated``,
  ``CampaignPaused``, ``CampaignResumed``, ``CampaignCancelled``), made through the one door.
* ``registry:<uuid>``: one per station registration change made through the HTTP API
  (``StationRegistered`` / ``StationDeregistered`` / ``StationPasswordSet``); one stream per
  request, so several nodes never append to the same stream.
* ``site:<uuid>``: one per site change (``SiteDefined`` / ``SiteDeleted``), made by an admin
  through the one door (docs/smart-charging.md#site-limits).
* ``timer:<name>``: one per timer name (``TimerStarted``, then ``TimerFired``); several nodes
  firing the same timer conflict on the stream's version, so it is recorded fired once.
* ``ocsp:<uuid>``: one per OCSP check the core carried out for a station's CALL before it
  was answered (``OcspRequested``, then ``OcspAnswered``; docs/plug-and-charge.md).
* ``contract:<uuid>``: one per call the core made to a remote contract-certificate provider
  for a station's Get15118EVCertificate before it was answered
  (``ContractCertificateRequested``, then ``ContractCertificateAnswered``).
* ``token:<uuid>``: one per ID-token registry change (``TokenRegistered`` / ``TokenRemoved``),
  made through the one door (the HTTP API, the CLI, a CSV import: one stream per change).
* ``holder:<station>``: which session (of which node) holds the station, with a PostgreSQL
  store (several nodes): one ``SessionHeld`` per accepted connection, written with
  optimistic concurrency by the node that accepted it (docs/cluster.md).
* ``tariff:<uuid>``: one per tariff change (``TariffDefined`` / ``TariffRemoved`` /
  ``TariffAssigned`` / ``TariffUnassigned``, docs/tariffs.md).

Times are UNIX seconds (float, UTC) taken by the core when the frame or event happened; plugins
and projections read time only from events.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from chargeledger.core.tariff import Tariff

__all__ = [
    "ALLOCATOR_STREAM",
    "EVENT_TYPES",
    "CallTimedOut",
    "CampaignCancelled",
    "CampaignCreated",
    "CampaignPaused",
    "CampaignResumed",
    "CommandAnswered",
    "CommandRequested",
    "CommandRouted",
    "ContractCertificateAnswered",
    "ContractCertificateRequested",
    "ContractStatus",
    "Direction",
    "Event",
    "FrameLogged",
    "HandshakeRejected",
    "LocalListDefined",
    "LocalListDeleted",
    "LocalListPushRequested",
    "LoggedEvent",
    "OcspAnswered",
    "OcspRequested",
    "OcspStatus",
    "Recorded",
    "SessionClosed",
    "SessionHeld",
    "SessionOpened",
    "SiteDefined",
    "SiteDeleted",
    "SitePeriod",
    "StationDeregistered",
    "StationPasswordSet",
    "StationRegistered",
    "TariffAssigned",
    "TariffDefined",
    "TariffRemoved",
    "TariffUnassigned",
    "TimerFired",
    "TimerStarted",
    "TokenRegistered",
    "TokenRemoved",
    "TransactionIdsReserved",
    "command_stream",
    "contract_stream",
    "decode_event",
    "encode_event",
    "firmware_campaign_stream",
    "holder_stream",
    "local_list_stream",
    "logged_event",
    "ocsp_stream",
    "registry_stream",
    "session_stream",
    "site_stream",
    "tariff_stream",
    "timer_stream",
    "token_stream",
]

Direction = Literal["in", "out"]
"""``in``: station to CSMS; ``out``: CSMS to station."""

ALLOCATOR_STREAM = "allocator:transaction-ids"


def session_stream(session: str) -> str:
    """The stream id of the session with id ``session``."""
    return f"session:{session}"


def holder_stream(station: str) -> str:
    """The stream saying which session holds ``station`` (several nodes, docs/cluster.md)."""
    return f"holder:{station}"


def command_stream(request_id: str) -> str:
    """The stream id of the HTTP API command request ``request_id``."""
    return f"command:{request_id}"


def registry_stream(request_id: str) -> str:
    """The stream id of the HTTP API registration request ``request_id``."""
    return f"registry:{request_id}"


def local_list_stream(request_id: str) -> str:
    """The stream id of the local-list request ``request_id`` (one stream per request)."""
    return f"local-list:{request_id}"


def site_stream(request_id: str) -> str:
    """The stream id of the site change ``request_id`` (one stream per change)."""
    return f"site:{request_id}"


def firmware_campaign_stream(request_id: str) -> str:
    """The stream id of the firmware campaign request ``request_id`` (one per request)."""
    return f"firmware-campaign:{request_id}"


def timer_stream(name: str) -> str:
    """The stream id of the timer named ``name``."""
    return f"timer:{name}"


def token_stream(request_id: str) -> str:
    """The stream id of the ID-token registry change ``request_id``."""
    return f"token:{request_id}"


def tariff_stream(request_id: str) -> str:
    """The stream id of the tariff change ``request_id``."""
    return f"tariff:{request_id}"


def ocsp_stream(request_id: str) -> str:
    """The stream id of the OCSP check ``request_id`` (its request, then its answer)."""
    return f"ocsp:{request_id}"


def contract_stream(request_id: str) -> str:
    """The stream id of the contract-provider call ``request_id`` (its request, then its
    answer)."""
    return f"contract:{request_id}"


class SessionOpened(msgspec.Struct, frozen=True, kw_only=True):
    """A station's WebSocket handshake was accepted: the facts of the handshake."""

    station: str
    session: str
    at: float
    protocol: str
    """The negotiated subprotocol (``ocpp1.6`` or ``ocpp2.0.1``)."""
    offered: list[str] = []
    """The subprotocols the station offered (empty when it sent no header)."""
    path: str = ""
    remote: str = ""
    node: str = ""
    """Which server process accepted the connection."""
    replaces: str | None = None
    """The session this connection replaced (newest connection wins)."""
    auth: Literal["", "none", "basic", "client-certificate"] = ""
    """How the station proved its identity (``none``: it did not; empty in older logs)."""
    profile: int = 0
    """The security profile the connection meets: 0 (no authentication), 1 (Basic without
    TLS), 2 (TLS and Basic), 3 (TLS with a client certificate)."""
    credential: Literal["", "current", "pending"] = ""
    """Which registered password matched: ``pending`` is a rotated-to password, which this
    connection makes the station's current one (the registry folds it)."""
    tls_fingerprint: str | None = None
    """SHA-256 (hex) of the station's TLS client certificate, when it showed one."""


class FrameLogged(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One WebSocket message, verbatim, in either direction.

    Not tracked by the garbage collector (``gc=False``: it holds only strings and numbers, so
    it can be in no reference cycle): a replay creates millions of them, and tracking them
    cost a quarter of its time.

    ``text`` is exactly what was received or sent. A binary message is kept, base64 encoded,
    in ``binary`` with ``text`` empty. ``note`` marks frames the core treated specially
    (``retransmission``, ``unmatched-result``, ``malformed``, ...) so an auditor sees why.
    """

    station: str
    session: str
    at: float
    direction: Direction
    text: str
    binary: str | None = None
    note: str | None = None


class CallTimedOut(msgspec.Struct, frozen=True, kw_only=True):
    """A CALL we sent got no CALLRESULT or CALLERROR in time; a later answer is ignored."""

    station: str
    session: str
    at: float
    message_id: str
    action: str


class SessionClosed(msgspec.Struct, frozen=True, kw_only=True):
    """The connection ended; ``code`` is the WebSocket close code (1006 when none was seen)."""

    station: str
    session: str
    at: float
    code: int
    reason: str = ""
    by: Literal["station", "csms"] = "station"
    replaced_by: str | None = None
    released_by: str | None = None
    """The node that recorded this close for a node presumed dead (``chargeledger.core.nodes``);
    that node reacts to it."""


class HandshakeRejected(msgspec.Struct, frozen=True, kw_only=True):
    """A WebSocket handshake was refused (no station identity, no common subprotocol, ...).

    Recorded in the stream of the session id the connection would have had."""

    station: str
    session: str
    at: float
    path: str
    offered: list[str] = []
    remote: str = ""
    status: int = 400
    reason: str = ""
    cause: str = ""
    """A short machine-readable label of the reason (``unknown_station``, ``wrong_password``,
    ``cn_mismatch``, ... see ``chargeledger.core.security.REFUSAL_CAUSES``); empty for a
    malformed handshake (bad identity, subprotocol)."""
    tls_fingerprint: str | None = None
    """SHA-256 (hex) of the client certificate the peer showed, if any."""


class TransactionIdsReserved(msgspec.Struct, frozen=True, kw_only=True):
    """A server process reserved the 1.6 transaction ids ``first..last`` (inclusive)."""

    first: int
    last: int
    at: float
    node: str = ""


class CommandRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Someone asked for a command to a station (an HTTP API key, a Python program, the CLI
    through the API, or ``plugins``); recorded by the one door before it is sent.

    The outcome is in the station's session stream (the CALL and its answer, or
    ``CallTimedOut``); a command refused before sending (offline station, invalid payload)
    leaves only this event."""

    request_id: str
    station: str
    at: float
    key: str
    """Who asked: the API key's name, the name a Python caller gave, or ``plugins``."""
    role: str
    """Their role (``read``, ``operator``, ``admin``)."""
    mode: Literal["use_case", "message"]
    command: str
    """The use case (``remote_start``, ``reset``, ...) or, in message mode, the OCPP action."""
    payload: dict[str, Any]
    """The request as the client sent it (use case arguments, or the raw OCPP payload)."""
    node: str = ""


class SessionHeld(msgspec.Struct, frozen=True, kw_only=True):
    """Node ``node`` holds ``station``'s live session ``session`` from now on: written in the
    station's holder stream with optimistic concurrency, in the transaction that records the
    session opened (and, when another node's session still held it, that session closed)."""

    station: str
    session: str
    node: str
    at: float
    replaces: str | None = None
    """The session that held the station before (closed by now), if any."""
    replaces_node: str = ""
    """The node that held it."""


class CommandRouted(msgspec.Struct, frozen=True, kw_only=True):
    """A command asked on node ``by`` for a station whose session node ``to`` holds: the
    request, for ``to`` to send through its one door (docs/cluster.md). Version 1 of the
    command's stream; version 2 is ``to``'s ``CommandRequested`` (it took the command) or a
    ``CommandAnswered`` from ``by`` (nobody took it in time), whichever commits first."""

    request_id: str
    station: str
    at: float
    by: str
    to: str
    session: str
    """The holding session when the command was routed."""
    key: str
    role: str
    mode: Literal["use_case", "message"]
    command: str
    payload: dict[str, Any]
    """The request as asked (use case arguments with a secret in the clear never: refused
    before routing), or the raw OCPP payload."""


class CommandAnswered(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a routed command, written by the node that sent it (or by the asking
    node when nobody took it): a result, or an error to raise on the asking node."""

    request_id: str
    station: str
    at: float
    node: str
    result: dict[str, Any] | None = None
    """The station's CALLRESULT payload (message mode) or the use case's result."""
    error: str | None = None
    """The error's class name (``StationOffline``, ``CallError``, ``CallTimeout``, ...)."""
    details: dict[str, Any] = {}
    """The error's fields (``reason``, ``code``, ``description``, ``timeout``, ...)."""


class StationRegistered(msgspec.Struct, frozen=True, kw_only=True):
    """An admin registered the station (again: a later registration replaces the earlier)."""

    request_id: str
    station: str
    at: float
    key: str
    """The name of the API key that asked."""
    description: str = ""
    profile: int = 0
    """The lowest security profile the station may connect with (0-3, docs/security.md)."""
    enabled: bool = True
    """A disabled station is refused at the handshake."""


class StationPasswordSet(msgspec.Struct, frozen=True, kw_only=True):
    """An admin set the station's HTTP Basic password (security profiles 1 and 2). Only the
    password's salted argon2id hash is recorded; it replaces any earlier and any pending one."""

    request_id: str
    station: str
    at: float
    key: str
    password_hash: str


class StationDeregistered(msgspec.Struct, frozen=True, kw_only=True):
    """An admin removed the station's registration."""

    request_id: str
    station: str
    at: float
    key: str


class TimerStarted(msgspec.Struct, frozen=True, kw_only=True):
    """The dispatcher armed a timer a plugin asked for (``StartTimer``): it fires at ``due``
    unless it has already fired. Timers started and not fired are re-armed at startup."""

    name: str
    due: float
    """When it is due (UNIX seconds)."""
    at: float
    """When it was armed."""
    node: str = ""


class TimerFired(msgspec.Struct, frozen=True, kw_only=True):
    """A timer became due and was recorded fired: folded and reacted to like any event.

    ``due`` is the time it was due, the time a fold reads (so replay gives the same state);
    ``at`` when the dispatcher got to record it (later than ``due`` after a restart)."""

    name: str
    due: float
    at: float
    node: str = ""


class TokenRegistered(msgspec.Struct, frozen=True, kw_only=True):
    """An operator added an ID token to the registry, or updated it: the newest registration
    of a token (``id_token`` and ``type``) replaces every earlier one, field by field (an
    update is a full registration, not a patch)."""

    request_id: str
    at: float
    key: str
    """Who asked: the API key's name, the name a Python caller gave, or the CLI's."""
    id_token: str
    type: str = "ISO14443"
    """The 2.0.1 ``IdTokenEnumType``. A 1.6 ``idTag`` has no type and matches a token of any
    type (docs/authorization.md)."""
    status: str = "Accepted"
    """``Accepted``, ``Blocked``, ``Expired`` or ``Invalid``."""
    expiry: str | None = None
    """RFC 3339: from this instant on the token is answered ``Expired``."""
    group: str | None = None
    """The group (1.6 ``parentIdTag``, 2.0.1 ``groupIdToken``) the token belongs to."""
    max_concurrent: int | None = None
    """How many transactions the token may have running at once (``None``: no limit)."""
    note: str = ""
    owner: str = ""


class TokenRemoved(msgspec.Struct, frozen=True, kw_only=True):
    """An operator removed an ID token from the registry (it is then unknown)."""

    request_id: str
    at: float
    key: str
    id_token: str
    type: str = "ISO14443"


# -- local authorization lists (docs/authorization.md) ------------------------------------------


class LocalListDefined(msgspec.Struct, frozen=True, kw_only=True):
    """An operator defined (or redefined: it replaces the earlier) the local list ``name``: a
    selection of the token registry (``all`` tokens, the tokens of ``group``, or the explicit
    ``tokens``), sent to ``stations`` (``None``: every station)."""

    request_id: str
    at: float
    key: str
    """Who asked (an API key's name, a Python caller's)."""
    name: str
    selection: Literal["all", "group", "tokens"] = "all"
    group: str | None = None
    tokens: list[str] = []
    stations: list[str] | None = None
    description: str = ""


class LocalListDeleted(msgspec.Struct, frozen=True, kw_only=True):
    """An operator deleted the local list ``name``; its stations lose its entries at their
    next update."""

    request_id: str
    at: float
    key: str
    name: str


class SiteDefined(msgspec.Struct, frozen=True, kw_only=True):
    """An admin defined (or redefined: it replaces the earlier) the site ``site``: the
    stations on one grid connection, within ``parent`` (a feeder, ...; ``None``: none),
    sharing ``limit`` (in ``unit``; ``None``: no limit of its own) among their charging
    transactions (``strategy``), each at least ``min_allocation`` when any, none changed by
    less than ``deadband`` upwards nor raised more often than every ``min_interval``
    seconds."""

    request_id: str
    at: float
    key: str
    """Who asked (an API key's name, a Python caller's)."""
    site: str
    parent: str | None = None
    stations: list[str] = []
    limit: float | None = None
    unit: Literal["A", "W"] = "A"
    min_allocation: float = 0.0
    deadband: float = 0.0
    min_interval: float = 0.0
    description: str = ""
    strategy: Literal["equal", "priority"] = "equal"
    """``equal`` shares; ``priority``: in ``priorities`` order, each up to ``max_allocation``."""
    priorities: dict[str, int] = {}
    """Station -> priority (higher first; 0 when not named): who is served first when the
    limit does not reach every transaction."""
    max_allocation: float | None = None
    phase_limits: dict[str, float] = {}
    """Phase (``L1``, ``L2``, ``L3``) -> the most the site's transactions draw on it, in
    ``unit`` per phase (A, or W of that phase); a phase not named has no limit of its own.
    Logs written before per-phase limits decode with none."""
    station_phases: dict[str, list[str]] = {}
    """Station -> the phases it is wired to (``["L1"]`` for a one-phase station on L1); a
    station not named draws on all three."""
    periods: list[SitePeriod] = []
    """Daily periods (UTC) with other limits, e.g. a lower one from 17:00 to 20:00; outside
    them ``limit`` and ``phase_limits`` hold."""


class SitePeriod(msgspec.Struct, frozen=True, kw_only=True):
    """A daily period of a site (UTC, ``HH:MM`` or ``HH:MM:SS``; ``end`` before ``start``:
    across midnight) with its own ``limit`` and ``phase_limits`` (``None`` / a phase not
    named: the site's own)."""

    start: str
    end: str
    limit: float | None = None
    phase_limits: dict[str, float] = {}


class SiteDeleted(msgspec.Struct, frozen=True, kw_only=True):
    """An admin deleted the site ``site`` (its sub-sites lose their parent)."""

    request_id: str
    at: float
    key: str
    site: str


class LocalListPushRequested(msgspec.Struct, frozen=True, kw_only=True):
    """An operator asked to bring ``stations`` up to date now (``full``: with a full
    update, whatever they hold); the local-list plugin sends the updates."""

    request_id: str
    at: float
    key: str
    stations: list[str]
    full: bool = False


# -- tariffs (docs/tariffs.md) -------------------------------------------------------------------


class TariffDefined(msgspec.Struct, frozen=True, kw_only=True):
    """An admin defined the tariff ``tariff.id``, or redefined it (the newest definition
    replaces the earlier for transactions starting from then on; a transaction keeps the
    definition it started with)."""

    request_id: str
    at: float
    key: str
    """Who asked (an API key's name, a Python caller's)."""
    tariff: Tariff


class TariffRemoved(msgspec.Struct, frozen=True, kw_only=True):
    """An admin removed the tariff: no transaction starting from then on gets it."""

    request_id: str
    at: float
    key: str
    tariff_id: str


class TariffAssigned(msgspec.Struct, frozen=True, kw_only=True):
    """An admin assigned the tariff to ``target`` (``station:<id>`` or ``default``), for the
    tokens of ``group`` only when given."""

    request_id: str
    at: float
    key: str
    target: str
    tariff_id: str
    group: str | None = None


class TariffUnassigned(msgspec.Struct, frozen=True, kw_only=True):
    """An admin took back an assignment made by ``TariffAssigned`` with the same target,
    tariff and group."""

    request_id: str
    at: float
    key: str
    target: str
    tariff_id: str
    group: str | None = None


OcspStatus = Literal["good", "revoked", "unknown", "failed"]
"""A certificate's status by an OCSP answer; ``failed`` when there is no usable answer."""


class OcspRequested(msgspec.Struct, frozen=True, kw_only=True):
    """The core is about to ask an OCSP responder about a certificate, because a station's
    CALL (``message_id``) needs its status before it can be answered (docs/plug-and-charge.md).
    Recorded before the HTTP request is made."""

    request_id: str
    station: str
    message_id: str
    at: float
    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    """The certificate's OCSP ``CertID`` as OCPP's ``OCSPRequestDataType`` names it."""
    url: str
    """Where the request is POSTed (the responder URL, or where a plugin routed it)."""
    request: str
    """The request body, base64 (a DER ``OCSPRequest`` for the built-in check)."""
    node: str = ""


class OcspAnswered(msgspec.Struct, frozen=True, kw_only=True):
    """What came of an :class:`OcspRequested` (same ``request_id``): the responder's answer as
    received and the verdict read from it, or why there is none. Decisions read this, never
    the network: a replay decides from the same record."""

    request_id: str
    station: str
    at: float
    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    url: str
    http_status: int | None = None
    """The HTTP status; ``None`` when no answer arrived (timeout, connection refused)."""
    response: str | None = None
    """The response body, base64 (a DER ``OCSPResponse``), as received."""
    error: str | None = None
    """Why there is no usable answer (a timeout, an HTTP error, an unreadable response)."""
    status: OcspStatus = "failed"
    """The certificate's status by the answer; ``failed`` when there is none."""
    this_update: float | None = None
    next_update: float | None = None
    revocation_reason: str | None = None
    verified: bool = False
    """Whether the answer's signature was verified against the issuer's key."""
    node: str = ""


class ContractCertificateRequested(msgspec.Struct, frozen=True, kw_only=True):
    """The core is about to POST an EV's contract-certificate request (a station's
    Get15118EVCertificate, ``message_id``, received at ``call_at``) to a remote
    contract-certificate provider (docs/plug-and-charge.md). Recorded before the request is
    made."""

    request_id: str
    station: str
    message_id: str
    call_at: float
    """When the CALL arrived: with ``station`` and ``message_id`` it names the CALL."""
    at: float
    action: str
    """``Install`` or ``Update``."""
    schema_version: str
    url: str
    request: str
    """The request body, base64 (JSON carrying the ``exiRequest`` for the built-in one)."""
    node: str = ""


ContractStatus = Literal["Accepted", "Failed"]
"""A contract provider's answer; ``Failed`` too when there is no usable answer."""


class ContractCertificateAnswered(msgspec.Struct, frozen=True, kw_only=True):
    """What came of a :class:`ContractCertificateRequested` (same ``request_id``): the
    provider's answer as received and what it says (the ``exiResponse`` for the EV), or why
    there is none. The Get15118EVCertificate is answered from this record, never from the
    network: a replay decides the same."""

    request_id: str
    station: str
    message_id: str
    call_at: float
    at: float
    url: str
    http_status: int | None = None
    """The HTTP status; ``None`` when no answer arrived (timeout, connection refused)."""
    response: str | None = None
    """The response body, base64, as received."""
    status: ContractStatus = "Failed"
    exi_response: str = ""
    """The ``CertificateInstallationRes`` / ``CertificateUpdateRes`` for the EV, EXI, base64."""
    reason: str | None = None
    """``statusInfo.reasonCode`` the station gets when ``Failed``."""
    error: str | None = None
    """Why there is no usable answer (a timeout, an HTTP error, an unreadable answer)."""
    node: str = ""


# -- firmware campaigns (docs/device-management.md) ---------------------------------------------


class CampaignCreated(msgspec.Struct, frozen=True, kw_only=True):
    """An operator started a firmware campaign: the firmware at ``location`` for
    ``stations`` (the selection, resolved when it was made, in rollout order), at most
    ``max_in_flight`` of them updating at once, a rollout step every ``interval`` seconds,
    stopped once more than ``max_failure_ratio`` of the stations failed. The firmware
    plugin drives it; every update it sends is a recorded command."""

    request_id: str
    at: float
    key: str
    """Who asked (an API key's name, a Python caller's)."""
    campaign_id: str
    name: str = ""
    location: str
    retrieve_date: str | None = None
    """RFC 3339; ``None``: each station retrieves it when the campaign updates it."""
    install_date: str | None = None
    retries: int | None = None
    retry_interval: int | None = None
    signing_certificate: str | None = None
    signature: str | None = None
    stations: list[str]
    selection: dict[str, Any] = {}
    """The selection as asked (``stations``, ``vendor``, ``model``, ``firmware_version``)."""
    max_in_flight: int = 1
    interval: float = 60.0
    max_failure_ratio: float = 0.0
    station_timeout: float = 3600.0
    """A station still updating this long after its update was sent has failed."""


class CampaignPaused(msgspec.Struct, frozen=True, kw_only=True):
    """An operator paused the running campaign: no station is updated until it is resumed
    (those updating finish on their own)."""

    request_id: str
    at: float
    key: str
    campaign_id: str


class CampaignResumed(msgspec.Struct, frozen=True, kw_only=True):
    """An operator resumed the paused campaign: its next rollout step is due at once."""

    request_id: str
    at: float
    key: str
    campaign_id: str


class CampaignCancelled(msgspec.Struct, frozen=True, kw_only=True):
    """An operator cancelled the campaign: no further station is updated (those updating
    finish on their own)."""

    request_id: str
    at: float
    key: str
    campaign_id: str


Event = (
    SessionOpened
    | FrameLogged
    | CallTimedOut
    | SessionClosed
    | HandshakeRejected
    | TransactionIdsReserved
    | CommandRequested
    | StationRegistered
    | StationDeregistered
    | StationPasswordSet
    | TimerStarted
    | TimerFired
    | TokenRegistered
    | TokenRemoved
    | LocalListDefined
    | LocalListDeleted
    | LocalListPushRequested
    | TariffDefined
    | TariffRemoved
    | TariffAssigned
    | TariffUnassigned
    | SiteDefined
    | SiteDeleted
    | OcspRequested
    | OcspAnswered
    | ContractCertificateRequested
    | ContractCertificateAnswered
    | CampaignCreated
    | CampaignCancelled
    | CampaignPaused
    | CampaignResumed
    | SessionHeld
    | CommandRouted
    | CommandAnswered
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        SessionOpened,
        FrameLogged,
        CallTimedOut,
        SessionClosed,
        HandshakeRejected,
        TransactionIdsReserved,
        CommandRequested,
        StationRegistered,
        StationDeregistered,
        StationPasswordSet,
        TimerStarted,
        TimerFired,
        TokenRegistered,
        TokenRemoved,
        LocalListDefined,
        LocalListDeleted,
        LocalListPushRequested,
        TariffDefined,
        TariffRemoved,
        TariffAssigned,
        TariffUnassigned,
        SiteDefined,
        SiteDeleted,
        OcspRequested,
        OcspAnswered,
        ContractCertificateRequested,
        ContractCertificateAnswered,
        CampaignCreated,
        CampaignCancelled,
        CampaignPaused,
        CampaignResumed,
        SessionHeld,
        CommandRouted,
        CommandAnswered,
    )
}

_encoder = msgspec.json.Encoder()
_decoders = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()}


def encode_event(event: Event) -> tuple[str, bytes]:
    """The (topic, state) pair the store keeps for ``event``."""
    return type(event).__name__, _encoder.encode(event)


def decode_event(topic: str, state: bytes) -> Event:
    """Inverse of :func:`encode_event`; raises ``KeyError`` for an unknown topic."""
    return _decoders[topic].decode(state)


class Recorded(msgspec.Struct, frozen=True, gc=False):
    """An event as committed: its global ``position`` (the store's notification id) and its
    place in its stream. Not tracked by the garbage collector (see ``FrameLogged``): it holds
    an event and scalars only."""

    position: int
    stream: str
    version: int
    event: Event
    hash: bytes | None = None
    """sha256 chaining it to the previous event of its stream (see ``chargeledger.core.store``);
    ``None`` only for events built by hand or stored before the chain existed."""
    prev_hash: bytes | None = None
    """The ``hash`` of the previous event of its stream (32 zero bytes for version 1)."""


class LoggedEvent(msgspec.Struct, kw_only=True):
    """A recorded event: its log position, stream and version, its kind (the event type's
    name, e.g. ``FrameLogged``) and the event's own fields as this module defines them (a
    frame's ``text`` is verbatim; times are UNIX seconds).

    The one JSON shape of an event, wherever one is shown: ``chargeledger events --json``, the
    audit's evidence, the HTTP API's ``/api/events`` and its SSE stream.

    ``event`` is an open object rather than a union of the event types: they carry no tag of
    their own (``kind`` is the tag), which an OpenAPI union would need."""

    position: int
    stream: str
    version: int
    kind: str
    event: dict[str, Any]


def logged_event(recorded: Recorded) -> LoggedEvent:
    """The :class:`LoggedEvent` of ``recorded`` (its hashes are left out: ``chargeledger
    verify`` checks them)."""
    return LoggedEvent(
        position=recorded.position,
        stream=recorded.stream,
        version=recorded.version,
        kind=type(recorded.event).__name__,
        event=msgspec.to_builtins(recorded.event),
    )
