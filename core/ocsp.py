"""The exchanges with certificate services the core carries out before a station's CALL is
answered (Plug & Charge): OCSP checks, and calls to a remote contract-certificate provider.

A plugin never does I/O, yet a GetCertificateStatus or a Plug & Charge Authorize can only be
answered once an OCSP responder has said something, and a Get15118EVCertificate once the
eMSP's provider has issued the contract certificate. So, before such a CALL is decided, the
session asks the plugins which exchanges it needs (``chargeledger_certificate_checks``; they
name only those the views hold no usable result for) and, for each:

1. builds the HTTP request (``chargeledger_ocsp_request`` / ``chargeledger_contract_request``)
   and records ``OcspRequested`` / ``ContractCertificateRequested``;
2. POSTs it, giving up after the request's ``timeout`` (the whole exchange, connection
   included);
3. reads the answer (``chargeledger_ocsp_verdict`` / ``chargeledger_contract_answer``) and
   records ``OcspAnswered`` / ``ContractCertificateAnswered`` with the raw answer, or with
   the error when there is none (timeout, refused connection, HTTP error, unreadable answer).

Each record is committed (and folded into the views) before the next step, so the CALL is
then decided from the log like any other: a replay, or ``replay --what-if``, reads the same
answers and decides the same, without a network. A contract request for which no plugin
builds an HTTP request (no remote provider configured) is neither made nor recorded: the
in-process providers (``chargeledger_contract_certificate``) answer it when the CALL is
decided. docs/plug-and-charge.md has the whole design, the timeouts and the failure answers.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid

import httpx
import trio

from chargeledger.core.decide import inbound_call
from chargeledger.core.errors import FrameError
from chargeledger.core.events import (
    ContractCertificateAnswered,
    ContractCertificateRequested,
    Event,
    OcspAnswered,
    OcspRequested,
    OcspStatus,
    contract_stream,
    ocsp_stream,
)
from chargeledger.core.frames import Call
from chargeledger.core.plugin import (
    ContractCertificateAnswer,
    ContractCertificateRequest,
    HttpRequest,
    HttpResponse,
    OcspQuery,
    OcspVerdict,
)
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.writer import GroupCommitWriter
from chargeledger.projections import Views

__all__ = ["check_certificates", "post"]

log = logging.getLogger("chargeledger.ocsp")


async def post(request: HttpRequest) -> HttpResponse | str:
    """POST ``request``: the response, or why there is none (one line). Never raises but
    ``Cancelled``."""
    with trio.move_on_after(request.timeout):
        try:
            async with httpx.AsyncClient(timeout=request.timeout) as client:
                answer = await client.post(
                    request.url,
                    content=request.body,
                    headers={"Content-Type": request.content_type, **request.headers},
                )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # a station's URL may be anything
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return HttpResponse(
            status=answer.status_code,
            body=answer.content,
            content_type=answer.headers.get("content-type"),
        )
    return f"no answer within {request.timeout:g} s"


async def check_certificates(
    plugins: PluginHost,
    views: Views,
    writer: GroupCommitWriter,
    frame: Call,
    *,
    station: str,
    session: str,
    protocol: str,
    at: float,
    node: str = "",
) -> int:
    """Carry out the OCSP checks and contract-provider calls the CALL ``frame`` needs before
    it is answered, recording each; how many were made. A CALL the plugins would not be asked
    about (an invalid payload, one the gate refuses) needs none. ``StoreUnavailable``
    propagates: the session ends without answering, as for any failed commit."""
    if not plugins.checks_asked(frame.action):
        return 0  # the usual case: nobody checks certificates for this action
    try:
        call = inbound_call(frame, station=station, session=session, protocol=protocol, at=at)
    except FrameError:
        return 0
    try:
        queries = plugins.certificate_checks(call, views)
    except Exception:
        log.exception("plugins failed to name the checks of %s from %s", call.action, station)
        return 0
    seen: set[str] = set()
    for query in queries:
        if isinstance(query, ContractCertificateRequest):
            if await _fetch_contract(plugins, writer, query, node):
                seen.add(f"contract:{query.message_id}")
        elif query.hash.key not in seen:
            seen.add(query.hash.key)
            await _check(plugins, writer, query, station, frame.message_id, node)
    return len(seen)


async def _exchange(
    writer: GroupCommitWriter,
    stream: str,
    asked: Event,
    request: HttpRequest | None,
    problem: str,
) -> HttpResponse | str:
    """Record ``asked`` (committed before anything leaves), then POST ``request``: its
    response, or why there is none (``problem`` when there is no request to make)."""
    await writer.append([(stream, asked)], new_stream=True)
    if request is None:
        return problem
    return await post(request)


async def _check(
    plugins: PluginHost,
    writer: GroupCommitWriter,
    query: OcspQuery,
    station: str,
    message_id: str,
    node: str,
) -> None:
    request_id = str(uuid.uuid4())
    stream = ocsp_stream(request_id)
    certificate = {
        "hash_algorithm": query.hash.hash_algorithm,
        "issuer_name_hash": query.hash.issuer_name_hash,
        "issuer_key_hash": query.hash.issuer_key_hash,
        "serial_number": query.hash.serial_number,
    }
    try:
        request = plugins.ocsp_request(query)
        problem = None if request is not None else "no plugin would ask this responder"
    except Exception as exc:
        log.exception("plugins failed to build the OCSP request for %s", station)
        request, problem = None, f"the OCSP request could not be built: {exc}"
    url = query.responder_url if request is None else request.url
    body = b"" if request is None else request.body
    asked = OcspRequested(
        request_id=request_id,
        station=station,
        message_id=message_id,
        at=time.time(),
        url=url,
        request=base64.b64encode(body).decode(),
        node=node,
        **certificate,
    )
    outcome = await _exchange(writer, stream, asked, request, problem or "")
    response = None if isinstance(outcome, str) else outcome
    if response is None:
        verdict = OcspVerdict(status="failed", error=str(outcome))
    else:
        verdict = _verdict(plugins, query, response)
    answered = OcspAnswered(
        request_id=request_id,
        station=station,
        at=time.time(),
        url=url,
        http_status=None if response is None else response.status,
        response=None if response is None else base64.b64encode(response.body).decode(),
        error=verdict.error,
        status=_status(verdict.status),
        this_update=verdict.this_update,
        next_update=verdict.next_update,
        revocation_reason=verdict.revocation_reason,
        verified=verdict.verified,
        node=node,
        **certificate,
    )
    await writer.append([(stream, answered)])


async def _fetch_contract(
    plugins: PluginHost,
    writer: GroupCommitWriter,
    query: ContractCertificateRequest,
    node: str,
) -> bool:
    """Ask the remote contract-certificate provider for ``query`` and record both ways;
    ``False`` (nothing asked, nothing recorded) when no plugin builds a request for it."""
    problem = ""
    try:
        request = plugins.contract_request(query)
    except Exception as exc:
        log.exception("plugins failed to build the contract request for %s", query.station)
        request, problem = None, f"the provider request could not be built: {exc}"
    if request is None and not problem:
        return False  # no remote provider: the in-process ones answer
    request_id = str(uuid.uuid4())
    stream = contract_stream(request_id)
    asked = ContractCertificateRequested(
        request_id=request_id,
        at=time.time(),
        action=query.action,
        schema_version=query.schema_version,
        url="" if request is None else request.url,
        request=base64.b64encode(b"" if request is None else request.body).decode(),
        node=node,
        station=query.station,
        message_id=query.message_id,
        call_at=query.at,
    )
    outcome = await _exchange(writer, stream, asked, request, problem)
    response = None if isinstance(outcome, str) else outcome
    if response is None:
        answer = ContractCertificateAnswer(
            status="Failed", reason="ProviderUnavailable", error=str(outcome)
        )
    else:
        answer = _contract_answer(plugins, query, response)
    answered = ContractCertificateAnswered(
        request_id=request_id,
        at=time.time(),
        url=asked.url,
        http_status=None if response is None else response.status,
        response=None if response is None else base64.b64encode(response.body).decode(),
        status="Accepted" if answer.status == "Accepted" else "Failed",
        exi_response=answer.exi_response,
        reason=answer.reason,
        error=answer.error,
        node=node,
        station=query.station,
        message_id=query.message_id,
        call_at=query.at,
    )
    await writer.append([(stream, answered)])
    return True


def _contract_answer(
    plugins: PluginHost, query: ContractCertificateRequest, response: HttpResponse
) -> ContractCertificateAnswer:
    if response.status != 200:
        return ContractCertificateAnswer(
            status="Failed", reason="ProviderUnavailable", error=f"HTTP {response.status}"
        )
    try:
        answer = plugins.contract_answer(query, response)
    except Exception as exc:
        log.exception("plugins failed to read a contract provider's answer")
        error = f"the answer could not be read: {exc}"
        return ContractCertificateAnswer(status="Failed", reason="ProviderBadAnswer", error=error)
    if answer is None:
        error = "no plugin reads the provider's answers"
        return ContractCertificateAnswer(status="Failed", reason="ProviderBadAnswer", error=error)
    return answer


def _verdict(plugins: PluginHost, query: OcspQuery, response: HttpResponse) -> OcspVerdict:
    if response.status != 200:
        return OcspVerdict(status="failed", error=f"HTTP {response.status}")
    try:
        verdict = plugins.ocsp_verdict(query, response)
    except Exception as exc:
        log.exception("plugins failed to read an OCSP answer")
        return OcspVerdict(status="failed", error=f"the answer could not be read: {exc}")
    return verdict or OcspVerdict(status="failed", error="no plugin reads OCSP answers")


_STATUSES: dict[str, OcspStatus] = {
    "good": "good",
    "revoked": "revoked",
    "unknown": "unknown",
}


def _status(status: str) -> OcspStatus:
    return _STATUSES.get(status, "failed")
