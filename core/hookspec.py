"""The hook specification: every hook a functional-block plugin can implement.

Read this file to learn the whole extension surface, and import every name a plugin needs
from :mod:`chargeledger.core.plugin` (the types, ``hookimpl``, ``answers``, the helpers). A
plugin is a module (or object) with functions decorated ``@hookimpl`` whose names match the
specifications below (or that name one with ``@hookimpl(specname=...)``); it may implement
any subset, and each implementation may accept any subset of a hook's parameters.

Rules every implementation follows:

* **Synchronous and pure.** No I/O, no clock, no randomness, no ``async def`` (pluggy would
  return an un-awaited coroutine, silently breaking ``firstresult``). Time comes from
  ``call.at`` or ``recorded.event.at``. That is what lets ``chargeledger replay --what-if``
  re-run a recorded log through today's plugins.
* **Return commands, do not perform them.** See :mod:`chargeledger.core.commands`.
* **Read state through ``views`` only.** Views are the projections as of the last committed
  event; treat them as read-only.

Ordering is by ``tryfirst`` / ``trylast`` on ``@hookimpl``, never by registration order. A
hook implementation that raises is a bug: for a CALL the station gets ``InternalError`` (the
frames are still recorded); for a reaction it is logged and its commands are lost.

The order for one station CALL: the core parses and schema-checks it and answers a verbatim
retransmission from memory; then ``chargeledger_admit_call`` may refuse it; then, for the
actions ``chargeledger_certificate_checks`` declares, the core makes and records the OCSP
checks and contract-provider calls it names; then ``chargeledger_answer_call`` answers it.
Once the CALL and its answer are committed, every ``chargeledger_react`` sees each of the two
frames.
"""

# Hook specifications have docstrings for bodies, like pytest's.
# mypy: disable-error-code="empty-body"
from __future__ import annotations

from typing import Any

import pluggy

from chargeledger.core.plugin import (
    PROJECT,
    CertificateCheck,
    CertificateRequest,
    CertificateSigner,
    Command,
    ContractCertificateAnswer,
    ContractCertificateRequest,
    ContractProvider,
    EVChargingNeeds,
    Exchange,
    HttpRequest,
    HttpResponse,
    InboundCall,
    OcspQuery,
    OcspVerdict,
    Recorded,
    ReplyError,
    ScheduleProposer,
    Settings,
    Views,
    hookimpl,
)

__all__ = [
    "PROJECT",
    "chargeledger_admit_call",
    "chargeledger_answer_call",
    "chargeledger_certificate_checks",
    "chargeledger_contract_answer",
    "chargeledger_contract_certificate",
    "chargeledger_contract_request",
    "chargeledger_ocsp_request",
    "chargeledger_ocsp_verdict",
    "chargeledger_propose_charging_schedule",
    "chargeledger_react",
    "chargeledger_sign_certificate",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker(PROJECT)


# -------------------------------------------------------------------------
# Answering the station
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def chargeledger_admit_call(
    call: InboundCall, views: Views, settings: Settings
) -> ReplyError | None:
    """Refuse a CALL before any plugin answers it: the gate for CALLs a station may not send
    (a station whose boot was not accepted, a role it does not hold).

    Called once per CALL that ``chargeledger_answer_call`` would be asked about, with the
    same arguments, for every action (no routing by :func:`~chargeledger.core.plugin.answers`).

    :return: ``None`` to admit the call, or the ``ReplyError`` the station gets instead of an
        answer (no ``chargeledger_answer_call`` is asked then).

    Stops at the first non-``None`` result (``firstresult``).
    """


@hookspec(firstresult=True)
def chargeledger_answer_call(
    call: InboundCall, views: Views, settings: Settings, provide: ContractProvider
) -> list[Command] | None:
    """Decide how to answer a CALL the station sent.

    Called once per inbound CALL whose frame and payload are valid for the station's
    protocol version (invalid ones are answered by the core with the version's error code),
    which is not a retransmission (a verbatim one gets the recorded earlier answer, a
    message id reused by a different CALL gets ``ProtocolError``) and which every
    ``chargeledger_admit_call`` admitted.

    An implementation declared with ``@answers("Action", ...)`` is asked only about CALLs of
    those actions; one without the declaration is asked about every CALL and returns
    ``None`` for those it does not handle.

    :param call: the CALL: station, session, protocol, message id, action, typed payload
        (a :mod:`chargeledger.schemas` struct) and the time it arrived.
    :param views: the projections as of the last committed event.
    :param settings: the server settings (boot policy, plugin options, ...).
    :param provide: asks the contract-certificate providers
        (``chargeledger_contract_certificate``) for an EV's certificate: the
        ``plug_and_charge`` block answers Get15118EVCertificate with it.
    :return: ``None`` to let another plugin answer, or a list of commands holding exactly
        one answer (``Reply``, ``ReplyError`` or ``ReplyWithNewTransactionId``) and possibly
        further commands (``SendCall``, ``CloseSession``) carried out after the answer is
        committed and sent. A list without exactly one answer gets ``InternalError``.

    Stops at the first non-``None`` result (``firstresult``) among the implementations asked.
    Use ``trylast`` for defaults that others may override: the data-transfer block answers
    ``UnknownVendorId`` with ``trylast``, so a vendor-extension plugin simply answers the
    DataTransfer calls whose ``vendorId`` it owns. When no plugin answers, the core replies
    ``NotSupported`` (an action the protocol version does not define at all gets
    ``NotImplemented`` before any plugin is asked).
    """


# -------------------------------------------------------------------------
# Reacting to what happened
# -------------------------------------------------------------------------


@hookspec
def chargeledger_react(
    recorded: Recorded,
    exchange: Exchange | None,
    views: Views,
    settings: Settings,
    sign: CertificateSigner,
    propose: ScheduleProposer,
) -> list[Command]:
    """React to a committed event (a frame in either direction, a session opening or closing,
    a timed-out call, a command requested, ...).

    Called once per event, in log order, after it is committed and folded into ``views``.
    Typical uses: configure a station once its boot is answered ``Pending``, send a
    ``SendCall`` when a station's answer to an earlier call arrives.

    :param recorded: the event and its position in the log.
    :param exchange: when ``recorded`` is a CALLRESULT or CALLERROR that answered a CALL of
        the same session, that CALL and the answer (``origin`` ``in``: the station's CALL we
        answered; ``out``: our CALL the station answered; ``error`` set, ``response``
        ``None``, for a CALLERROR); otherwise ``None`` (a CALL, an answer nobody asked for,
        every other event). A CALL that timed out has no exchange: its ``CallTimedOut``
        event is ``recorded``.
    :param views: the projections, with ``recorded`` folded in.
    :param sign: signs a :class:`~chargeledger.core.plugin.CertificateRequest` through
        ``chargeledger_sign_certificate`` (the ``certificates`` block calls it once its
        answer to a SignCertificate is committed, and sends the chain in CertificateSigned).
    :param propose: proposes a charging schedule for an EV's ISO 15118 charging needs
        through ``chargeledger_propose_charging_schedule`` (the ``smart_charging`` block
        calls it once its answer to a NotifyEVChargingNeeds is committed).
    :return: commands for the executor (``SendCall``, ``CloseSession``, ``StartTimer``: its
        ``TimerFired`` comes back here as ``recorded``); an empty list when there is nothing
        to do. The results of all plugins are concatenated.
    """


# -------------------------------------------------------------------------
# Signing station certificates
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def chargeledger_sign_certificate(request: CertificateRequest, settings: Settings) -> str | None:
    """Sign a station's CSR: the pluggable signer (an external CA, an HSM-backed service
    reached through a PEM chain precomputed elsewhere, a test CA).

    Called through the ``sign`` callable ``chargeledger_react`` gets, once per CSR the
    ``certificates`` block accepted (its subject CN is the station identity and its
    signature verifies). Pure like every hook: no clock (the validity starts at
    ``request.at``), no randomness (derive the serial number from ``request.position``),
    so a replay signs the same certificate. Reading the CA's key files once is allowed.

    :return: the PEM chain (the station's certificate first, then the CAs above it up to,
        not including, the root), or ``None`` to let another signer sign. The built-in one
        (``trylast``) signs with ``[certificate_signing]``'s operator sub-CA and returns
        ``None`` when none is configured; then nothing is sent.

    Stops at the first non-``None`` result (``firstresult``). A signer that raises is a bug:
    it is logged like any react failure, and the station gets no certificate.
    """


# -------------------------------------------------------------------------
# Smart charging
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def chargeledger_propose_charging_schedule(
    needs: EVChargingNeeds, views: Views, settings: Settings
) -> dict[str, Any] | None:
    """Propose a charging schedule for an EV's ISO 15118 charging needs (2.0.1 K15-K17).

    Called through the ``propose`` callable ``chargeledger_react`` gets: the
    ``smart_charging`` block calls it once its ``Accepted`` answer to a NotifyEVChargingNeeds
    is committed, and sends the proposal as a relative TxProfile of the transaction running
    on the EVSE. Pure like every hook: time is ``needs.at``.

    :param needs: the needs as folded (``station``, ``evse_id``, ``at``, ``energy_amount_wh``,
        ``departure_time``, ``min_current`` / ``max_current`` (A), ``max_power`` (W),
        ``max_schedule_tuples``).
    :return: ``{"unit": "A" | "W", "periods": [{"start": s, "limit": x}, ...]}`` (optionally
        ``"stack_level"``, default 1), or ``None`` to let another plugin propose. The
        built-in proposal (``trylast``): the EV's maximum capped by the EVSE's composite
        limit now.

    Stops at the first non-``None`` result (``firstresult``).
    """


# Plug & Charge: certificate status and contract certificates (docs/plug-and-charge.md)
# -------------------------------------------------------------------------


@hookspec
def chargeledger_certificate_checks(
    call: InboundCall, views: Views, settings: Settings
) -> list[CertificateCheck]:
    """The exchanges with certificate services a station's CALL needs before it can be
    answered: OCSP checks (an :class:`~chargeledger.core.plugin.OcspQuery`) and calls to a
    remote contract-certificate provider (a
    :class:`~chargeledger.core.plugin.ContractCertificateRequest`).

    Called by the core for each new, valid, admitted CALL, before ``chargeledger_answer_call``
    is asked. For each OCSP query returned, the core builds the request
    (``chargeledger_ocsp_request``), records ``OcspRequested``, POSTs it (with the request's
    timeout), reads the answer (``chargeledger_ocsp_verdict``) and records ``OcspAnswered``.
    For each contract request, it asks ``chargeledger_contract_request`` for the HTTP request
    (none: no remote provider, nothing is recorded and the in-process providers answer), records
    ``ContractCertificateRequested``, POSTs it, reads the answer
    (``chargeledger_contract_answer``) and records ``ContractCertificateAnswered``. Only once
    those are committed and folded into ``views`` is the CALL answered, from them. Return only
    what ``views`` holds no usable result for (a replay asks no one: it decides from what was
    recorded). Declare the actions with :func:`~chargeledger.core.plugin.answers`: CALLs of
    other actions skip this step altogether (no second validation of their payload).

    :return: the checks, possibly none. The results of all plugins are concatenated.
    """


@hookspec(firstresult=True)
def chargeledger_ocsp_request(query: OcspQuery, settings: Settings) -> HttpRequest | None:
    """How to ask about ``query``: the HTTP POST the core makes. The built-in one
    (``trylast``) sends a DER ``OCSPRequest`` (RFC 6960, built from the ``CertID`` by hash,
    no nonce: pure) to ``query.responder_url``; a plugin may route it elsewhere (a local OCSP
    cache, a proxy). ``None`` to let another plugin build it.

    Stops at the first non-``None`` result (``firstresult``).
    """


@hookspec(firstresult=True)
def chargeledger_ocsp_verdict(
    query: OcspQuery, response: HttpResponse, settings: Settings
) -> OcspVerdict | None:
    """What the responder's answer says of ``query``'s certificate. The built-in one
    (``trylast``) parses a DER ``OCSPResponse``, matches its single response to the
    ``CertID`` and verifies its signature when the issuer's key is at hand. The verdict is
    recorded with the raw answer (``OcspAnswered``), so decisions and replays read it from the
    log. ``None`` to let another plugin read it.

    Stops at the first non-``None`` result (``firstresult``).
    """


@hookspec(firstresult=True)
def chargeledger_contract_certificate(
    request: ContractCertificateRequest, settings: Settings
) -> ContractCertificateAnswer | None:
    """An in-process contract-certificate provider (the eMSP / PKI integration): answer an
    EV's certificate installation or update (2.0.1 Get15118EVCertificate, or the same over 1.6
    DataTransfer) with the EXI response the station hands the EV, from data at hand.

    Asked (through ``provide``) only when the log holds no answer of a remote provider for the
    CALL: a provider that needs a network round trip implements
    ``chargeledger_contract_request`` / ``chargeledger_contract_answer`` instead (or sets
    ``contract_provider_url``), and the core makes the call. The built-in test provider
    (``trylast``, only when ``[plugins.plug_and_charge]`` names a contract CA) issues a
    contract certificate itself, deterministically from the request.

    :return: the answer, or ``None`` to let another provider answer; when none does, the
        station gets ``Failed``.

    Stops at the first non-``None`` result (``firstresult``).
    """


@hookspec(firstresult=True)
def chargeledger_contract_request(
    request: ContractCertificateRequest, settings: Settings
) -> HttpRequest | None:
    """How to ask a remote contract-certificate provider for ``request``: the HTTP POST the
    core makes (and records, ``ContractCertificateRequested``) before the Get15118EVCertificate
    is answered. The built-in one (``trylast``) POSTs the JSON of docs/plug-and-charge.md to
    ``contract_provider_url`` when that option is set. ``None`` when there is no remote
    provider: nothing is asked or recorded, and ``chargeledger_contract_certificate`` answers.

    Stops at the first non-``None`` result (``firstresult``).
    """


@hookspec(firstresult=True)
def chargeledger_contract_answer(
    request: ContractCertificateRequest, response: HttpResponse, settings: Settings
) -> ContractCertificateAnswer | None:
    """What the remote provider's answer (HTTP 200) says: the ``exiResponse`` for the EV, or a
    ``Failed`` answer with the reason when it is unusable. The built-in one (``trylast``)
    reads the JSON of docs/plug-and-charge.md. Recorded with the raw answer
    (``ContractCertificateAnswered``), so the decision and a replay read it from the log.
    ``None`` to let another plugin read it.

    Stops at the first non-``None`` result (``firstresult``).
    """
