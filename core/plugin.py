"""The plugin contract: every name a functional-block plugin imports, from this one module.

A plugin imports from here and nowhere else in ChargeLedger; the hooks it may implement are
specified, with when each is called and what it returns, in :mod:`chargeledger.core.hookspec`.
This module holds the types those hooks take and return, defined here or re-exported from the
module that owns them:

* the markers: :data:`hookimpl` (pluggy's, ``tryfirst`` / ``trylast`` / ``specname`` as
  usual), :func:`answers`, which declares the actions an answer implementation handles so
  the host routes only those CALLs to it, and :func:`reacts_to`, which declares the events a
  react implementation reacts to so the host calls it for those only;
* what a hook is given: :class:`InboundCall`, :class:`CertificateRequest` and the
  :data:`CertificateSigner` that signs one, the Plug & Charge values (:class:`OcspQuery`,
  :class:`HttpRequest`, :class:`HttpResponse`, :class:`OcspVerdict`,
  :class:`ContractCertificateRequest`, :class:`ContractCertificateAnswer`), :class:`Recorded`
  and the events it carries,
  :class:`Exchange` (a CALL and the CALLRESULT or CALLERROR, :class:`ErrorAnswer`, that
  answered it), :class:`Views` and its
  state types, :class:`Settings` with :func:`plugin_options`;
* what a hook returns: the commands of :mod:`chargeledger.core.commands`;
* helpers for pure code: :func:`rfc3339` (the one formatter of our times), the tolerant
  payload conversions (``as_int``, ``as_str``, ``as_text``, ``as_bool``, ``as_dict``,
  ``as_list``), ``decode_frame`` and ``is_v16``, the certificate reading ``csr_problem``,
  ``common_name`` and ``read_chain``, and the protocol names.

Everything in ``__all__`` is public and stable; anything else a plugin reaches for is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import pluggy

from chargeledger.core.commands import (
    CloseSession,
    Command,
    Reply,
    ReplyError,
    ReplyWithNewTransactionId,
    SendCall,
    StartTimer,
)
from chargeledger.core.events import (
    CallTimedOut,
    CommandRequested,
    ContractCertificateAnswered,
    ContractCertificateRequested,
    Event,
    FrameLogged,
    HandshakeRejected,
    OcspAnswered,
    OcspRequested,
    Recorded,
    SessionClosed,
    SessionOpened,
    SiteDefined,
    SiteDeleted,
    StationDeregistered,
    StationRegistered,
    TimerFired,
    TimerStarted,
    TokenRegistered,
    TokenRemoved,
    TransactionIdsReserved,
)
from chargeledger.core.settings import Settings
from chargeledger.core.times import rfc3339
from chargeledger.projections import (
    Anomaly,
    BootInfo,
    ConfigurationKey,
    ConnectorState,
    DeviceModelState,
    StationProblems,
    StationState,
    TokenState,
    TransactionState,
    Views,
)
from chargeledger.projections.certificates import (
    CertificateHash,
    certificate_hash,
    common_name,
    csr_problem,
    read_chain,
)
from chargeledger.projections.charging_profiles import EVChargingNeeds, ev_schedule_within
from chargeledger.projections.composite import CAP_PURPOSES
from chargeledger.projections.exchanges import (
    ErrorAnswer,
    Exchange,
    Kind,
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_str,
    as_text,
    decode_frame,
    is_v16,
)
from chargeledger.projections.reservations import (
    ReservationAnomaly,
    ReservationState,
    reservation_timer,
)
from chargeledger.projections.sites import (
    SITE_LIMITS_PREFIX,
    allocate,
    allocation_request_id,
    next_change,
    site_profile_id,
)
from chargeledger.projections.tokens import expiry_instant
from chargeledger.schemas import OCPP16, OCPP201

__all__ = [
    "CAP_PURPOSES",
    "OCPP16",
    "OCPP201",
    "PROJECT",
    "SITE_LIMITS_PREFIX",
    "Anomaly",
    "BootInfo",
    "CallTimedOut",
    "CertificateCheck",
    "CertificateHash",
    "CertificateRequest",
    "CertificateSigner",
    "CloseSession",
    "Command",
    "CommandRequested",
    "ConfigurationKey",
    "ConnectorState",
    "ContractCertificateAnswer",
    "ContractCertificateAnswered",
    "ContractCertificateRequest",
    "ContractCertificateRequested",
    "ContractProvider",
    "DeviceModelState",
    "EVChargingNeeds",
    "ErrorAnswer",
    "Event",
    "Exchange",
    "FrameLogged",
    "HandshakeRejected",
    "HttpRequest",
    "HttpResponse",
    "InboundCall",
    "Kind",
    "OcspAnswered",
    "OcspQuery",
    "OcspRequested",
    "OcspVerdict",
    "Recorded",
    "Reply",
    "ReplyError",
    "ReplyWithNewTransactionId",
    "ReservationAnomaly",
    "ReservationState",
    "ScheduleProposer",
    "SendCall",
    "SessionClosed",
    "SessionOpened",
    "Settings",
    "SiteDefined",
    "SiteDeleted",
    "StartTimer",
    "StationDeregistered",
    "StationProblems",
    "StationRegistered",
    "StationState",
    "TimerFired",
    "TimerStarted",
    "TokenRegistered",
    "TokenRemoved",
    "TokenState",
    "TransactionIdsReserved",
    "TransactionState",
    "Views",
    "allocate",
    "allocation_request_id",
    "answered_actions",
    "answers",
    "as_bool",
    "as_dict",
    "as_int",
    "as_list",
    "as_str",
    "as_text",
    "certificate_hash",
    "common_name",
    "csr_problem",
    "decode_frame",
    "ev_schedule_within",
    "expiry_instant",
    "hookimpl",
    "is_v16",
    "next_change",
    "plugin_options",
    "reacted_kinds",
    "reacts_to",
    "read_chain",
    "reservation_timer",
    "rfc3339",
    "site_profile_id",
]

PROJECT = "chargeledger"
"""The pluggy project name: hook implementations are marked for it."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a hook implementation: ``@hookimpl``, ``@hookimpl(tryfirst=True)``, ..."""


class InboundCall(msgspec.Struct, frozen=True, kw_only=True):
    """A valid CALL from a station, as ``chargeledger_answer_call`` and
    ``chargeledger_admit_call`` see it."""

    station: str
    session: str
    protocol: str
    """``ocpp1.6`` or ``ocpp2.0.1`` (:data:`OCPP16`, :data:`OCPP201`)."""
    message_id: str
    action: str
    payload: Any
    """The typed request (a :mod:`chargeledger.schemas` struct for ``protocol``/``action``),
    already validated against the official schema."""
    at: float
    """When it arrived (UNIX seconds): the only clock a hook may read."""


class CertificateRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A station's certificate signing request we accepted, as
    ``chargeledger_sign_certificate`` sees it."""

    station: str
    protocol: str
    csr: str
    """The PEM CSR as the station sent it; :func:`csr_problem` found nothing wrong with it."""
    certificate_type: str | None
    """2.0.1 ``certificateType`` (``ChargingStationCertificate``, ``V2GCertificate``);
    ``None`` for 1.6 (always the charge point certificate) or when absent."""
    position: int
    """Log position of our answer to the SignCertificate: unique, so a signer can derive a
    serial number from it and sign the same certificate again on a replay."""
    at: float
    """When we answered it (UNIX seconds): the validity starts here, never at the clock."""


class OcspQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A certificate whose revocation status a station's CALL needs before it is answered:
    what ``chargeledger_certificate_checks`` returns, and what the core asks an OCSP
    responder about (docs/plug-and-charge.md)."""

    hash: CertificateHash
    """The certificate's OCSP ``CertID`` (issuer name and key hashes, serial number)."""
    responder_url: str
    """The OCSP responder the station named (``responderURL``) or the certificate's AIA."""


class HttpRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP POST the core makes for a plugin (a plugin never does I/O itself)."""

    url: str
    body: bytes
    content_type: str
    timeout: float = 5.0
    """Seconds for the whole exchange; past it the check is recorded failed."""
    headers: dict[str, str] = {}
    """Further headers (a provider's ``Authorization``); not recorded, unlike the body."""


class HttpResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to an :class:`HttpRequest`, as received."""

    status: int
    body: bytes
    content_type: str | None = None


class OcspVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """What an OCSP answer says of the certificate asked about; recorded in ``OcspAnswered``."""

    status: str
    """``good``, ``revoked``, ``unknown`` (the responder does not know it) or ``failed`` (no
    usable answer: ``error`` says why)."""
    this_update: float | None = None
    next_update: float | None = None
    revocation_reason: str | None = None
    verified: bool = False
    """Whether the answer's signature verified against the issuer's key."""
    error: str | None = None


class ContractCertificateRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An EV's request for a contract certificate (2.0.1 Get15118EVCertificate, or the same
    over 1.6 DataTransfer), as ``chargeledger_contract_certificate`` sees it."""

    station: str
    protocol: str
    action: str
    """``Install`` or ``Update``."""
    schema_version: str
    """``iso15118SchemaVersion``: how to read the EXI stream (``urn:iso:15118:2:2013:MsgDef``)."""
    exi_request: str
    """The EV's ``CertificateInstallationReq`` / ``CertificateUpdateReq``, EXI, base64."""
    message_id: str
    at: float
    """When the CALL arrived: a provider derives validity from it, never from the clock."""


class ContractCertificateAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A contract-certificate provider's answer: the EXI response for the EV."""

    status: str
    """``Accepted`` or ``Failed``."""
    exi_response: str = ""
    """The ``CertificateInstallationRes`` / ``CertificateUpdateRes``, EXI, base64."""
    reason: str | None = None
    """Why it failed (``statusInfo.reasonCode``, at most 20 characters)."""
    error: str | None = None
    """What went wrong, in words (``statusInfo.additionalInfo``)."""


CertificateCheck = OcspQuery | ContractCertificateRequest
"""What ``chargeledger_certificate_checks`` names: an exchange with a certificate service
(an OCSP responder, a remote contract-certificate provider) that the core makes and records
before the CALL is answered."""


ContractProvider = Callable[[ContractCertificateRequest], ContractCertificateAnswer | None]
"""What ``chargeledger_answer_call`` gets as ``provide``: runs the
``chargeledger_contract_certificate`` hook; ``None`` when no provider answered."""


CertificateSigner = Callable[[CertificateRequest], str | None]

ScheduleProposer = Callable[[EVChargingNeeds], "dict[str, Any] | None"]
"""What ``chargeledger_react`` is given as ``propose``: the first plugin's proposal
(``chargeledger_propose_charging_schedule``) for an EV's charging needs."""
"""What ``chargeledger_react`` gets as ``sign``: runs the ``chargeledger_sign_certificate``
hook and returns the signed PEM chain (leaf first), or ``None`` when no signer signed it."""


_ANSWERS = "chargeledger_answers"
"""The attribute :func:`answers` sets on an implementation."""

_Function = TypeVar("_Function", bound=Callable[..., Any])


def answers(*actions: str) -> Callable[[_Function], _Function]:
    """Declare the actions a ``chargeledger_answer_call`` implementation answers.

    The host asks the implementation about CALLs of these actions only, so it need not check
    ``call.action``; pluggy's order (``tryfirst`` / ``trylast``) and ``firstresult`` apply
    among the implementations asked. An implementation without the declaration is asked
    about every CALL. Stack it with ``@hookimpl`` in either order::

        @hookimpl(trylast=True)
        @answers("DataTransfer")
        def chargeledger_answer_call(call): ...

    ``chargeledger_certificate_checks`` implementations are routed the same way.

    Raises ``ValueError`` when no action is given (an implementation that answers nothing is
    a mistake, not a declaration)."""
    if not actions:
        raise ValueError("answers() needs at least one action")

    def declare(function: _Function) -> _Function:
        setattr(function, _ANSWERS, frozenset(actions))
        return function

    return declare


def answered_actions(function: Callable[..., Any]) -> frozenset[str] | None:
    """The actions ``function`` was declared to answer with :func:`answers`; ``None`` when it
    declared none (it is asked about every CALL)."""
    declared: frozenset[str] | None = getattr(function, _ANSWERS, None)
    return declared


_REACTS_TO = "chargeledger_reacts_to"
"""The attribute :func:`reacts_to` sets on an implementation."""


def reacts_to(*kinds: Kind) -> Callable[[_Function], _Function]:
    """Declare what a ``chargeledger_react`` implementation reacts to.

    Each kind is an event type (``TokenRegistered``, ``TimerFired``, ...: every event of that
    type; ``FrameLogged``: every frame) or an OCPP action: a frame of that action, the CALL
    itself and the CALLRESULT or CALLERROR that answers it (the ``exchange`` the hook is
    given). The host calls the implementation for those events only, so declare everything
    the hook acts on, or it silently misses it; an implementation without the declaration is
    called for every event. Stack it with ``@hookimpl`` in either order::

        @hookimpl
        @reacts_to(TokenRegistered, "BootNotification")
        def chargeledger_react(recorded, exchange, views): ...

    Raises ``ValueError`` when no kind is given, and ``TypeError`` for a kind that is neither
    an action (``str``) nor a type."""
    if not kinds:
        raise ValueError("reacts_to() needs at least one event type or action")
    for kind in kinds:
        if not isinstance(kind, str | type):
            raise TypeError(f"reacts_to(): {kind!r} is neither an action nor an event type")

    def declare(function: _Function) -> _Function:
        setattr(function, _REACTS_TO, frozenset(kinds))
        return function

    return declare


def reacted_kinds(function: Callable[..., Any]) -> frozenset[Kind] | None:
    """What ``function`` was declared to react to with :func:`reacts_to`; ``None`` when it
    declared nothing (it is called for every event)."""
    declared: frozenset[Kind] | None = getattr(function, _REACTS_TO, None)
    return declared


def plugin_options(settings: Settings, plugin: str) -> dict[str, Any]:
    """The ``[plugins.<plugin>]`` table of the settings (empty when absent); read it inside a
    hook, never at import, so a settings change reaches a replay too."""
    table: dict[str, Any] = settings.plugins.get(plugin, {})
    return table
