"""Plug & Charge, CSMS side (ISO 15118 certificates; OCPP 2.0.1 M and C, and the same over
1.6 DataTransfer): one implementation for both versions. docs/plug-and-charge.md has the
whole story.

Station CALLs answered (2.0.1, or a 1.6 ``DataTransfer`` of vendor id
``org.openchargealliance.iso15118pnc`` carrying the 2.0.1 message as JSON in ``data``):

* ``Get15118EVCertificate``: forwarded to the remote contract-certificate provider at
  ``contract_provider_url`` (the core POSTs it before the CALL is answered and records
  ``ContractCertificateAnswered``; this block answers from that record), or, without one, to
  the in-process providers (``chargeledger_contract_certificate``, through ``provide``);
  answered with the ``exiResponse``, opaque EXI the CSMS never decodes; ``Failed`` when none
  answers or the provider is down, too slow, or answers something unusable.
* ``GetCertificateStatus``: ``Accepted`` with the OCSP responder's answer (``ocspResult``)
  when the log holds a usable one for the certificate, else ``Failed``.
* ``Authorize`` with ``iso15118CertificateHashData`` or a ``certificate``: the token's
  ``idTokenInfo`` (the ``authorization`` block's decision) and a ``certificateStatus`` from
  the same OCSP results; a certificate that is not ``Accepted`` turns the token's status to
  ``Blocked`` (revoked), ``Expired`` (expired) or ``Invalid``.
* over 1.6 only, ``SignCertificate`` (the station's V2G certificate): answered by the
  ``certificates`` block, which then has it signed; the chain goes back as a DataTransfer
  ``CertificateSigned``.

The OCSP results come from the core: this block names the checks a CALL needs
(``chargeledger_certificate_checks``: those without a usable result), the core makes them and
records ``OcspAnswered`` before the CALL is answered. A result is usable while it is not
``failed`` and the CALL's time is before both its ``nextUpdate`` and its recording plus
``ocsp_cache_seconds``. Also here: the built-in OCSP request and answer reading
(``cryptography``'s OCSP builder and parser) and the test contract-certificate provider.

Options (``[plugins.plug_and_charge]``): ``ocsp_timeout`` (seconds, 5), ``ocsp_cache_seconds``
(300), ``ocsp_allowed_hosts`` (the responder hosts the CSMS may ask; any when unset);
``contract_provider_url`` (the remote contract-certificate provider, ``http``/``https``),
``contract_provider_timeout`` (seconds, 4) and ``contract_provider_headers`` (a table of
headers sent with each request, such as ``Authorization``; not recorded); and for the test
provider ``contract_ca_certificate``, ``contract_ca_key`` (PEM files of the MO
sub-CA that issues contract certificates), ``contract_ca_chain`` (PEM of the CAs above it)
and ``contract_validity_days`` (730).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from typing import Any
from urllib.parse import urlsplit

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from chargeledger.core.errors import FrameError
from chargeledger.core.frames import validate_request
from chargeledger.core.plugin import (
    OCPP201,
    CertificateCheck,
    CertificateHash,
    CertificateSigner,
    Command,
    ContractCertificateAnswer,
    ContractCertificateRequest,
    ContractProvider,
    Exchange,
    HttpRequest,
    HttpResponse,
    InboundCall,
    OcspQuery,
    OcspVerdict,
    Reply,
    SendCall,
    Settings,
    Views,
    answers,
    certificate_hash,
    hookimpl,
    is_v16,
    plugin_options,
    reacts_to,
    read_chain,
)
from chargeledger.plugins import certificates
from chargeledger.plugins.authorization import token_answer
from chargeledger.projections.plug_and_charge import PNC_VENDOR_ID, OcspResult, unwrap, wrap

__all__ = [
    "EXI_HEADER",
    "OPTIONS",
    "STATION_MESSAGES",
    "answer_data_transfer",
    "chargeledger_answer_call",
    "chargeledger_certificate_checks",
    "chargeledger_contract_answer",
    "chargeledger_contract_certificate",
    "chargeledger_contract_request",
    "chargeledger_ocsp_request",
    "chargeledger_ocsp_verdict",
    "chargeledger_react",
    "exi_shaped_response",
    "usable",
]

OPTIONS = "plug_and_charge"
"""The ``[plugins.<name>]`` table of this block's options."""

STATION_MESSAGES = ("Authorize", "Get15118EVCertificate", "GetCertificateStatus", "SignCertificate")
"""The 2.0.1 messages a 1.6 station sends over DataTransfer (the OCA application note)."""

_OCSP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}

EXI_HEADER = b"\x80"
"""The EXI header every ISO 15118 message starts with (distinguishing bits ``10``, no
options, format version 1). The test provider's ``exiResponse`` starts with it too; the CSMS
itself never reads EXI (docs/plug-and-charge.md)."""

_EXI_MAX = 5600
"""``exiRequest`` / ``exiResponse``: at most 5600 characters of base64 (the 2.0.1 schemas)."""

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _options(settings: Settings) -> dict[str, Any]:
    return plugin_options(settings, OPTIONS)


# -- which message: 2.0.1 itself, or 1.6 DataTransfer carrying it ------------------------------


def _inner(call: InboundCall) -> InboundCall | str | None:
    """The 2.0.1 Plug & Charge CALL ``call`` is or carries: itself (2.0.1), the message a 1.6
    DataTransfer of our vendor id carries (its payload validated against the 2.0.1 schema),
    the DataTransfer status to answer when it carries nothing we answer (``UnknownMessageId``,
    ``Rejected`` for a payload that is not the 2.0.1 message), ``None`` when not ours."""
    if call.action != "DataTransfer":
        return call if not is_v16(call.protocol) else None
    if call.payload.vendor_id != PNC_VENDOR_ID:
        return None
    action = call.payload.message_id
    if action not in STATION_MESSAGES:
        return "UnknownMessageId"
    try:
        data = msgspec.json.decode(call.payload.data or "")
        payload = validate_request(OCPP201, action, data, message_id=call.message_id)
    except (ValueError, FrameError):
        return "Rejected"
    return msgspec.structs.replace(call, protocol=OCPP201, action=action, payload=payload)


def _queries(call: InboundCall) -> list[OcspQuery] | str:
    """The certificates a GetCertificateStatus or Authorize asks about, or why they cannot be
    named (a ``certificateStatus``: ``CertChainError``)."""
    if call.action == "GetCertificateStatus":
        return [_query(call.payload.ocsp_request_data)]
    if call.action != "Authorize":
        return []
    items = call.payload.iso15118_certificate_hash_data
    if items:
        return [_query(item) for item in items]
    if call.payload.certificate is None:
        return []
    chain = read_chain(call.payload.certificate)
    if len(chain) < 2:
        return "CertChainError"
    if _ocsp_url(chain[0]) is None:
        return "CertChainError"  # the contract certificate names no responder to ask
    return [
        OcspQuery(hash=certificate_hash(leaf, issuer), responder_url=url)
        for leaf, issuer in itertools.pairwise(chain)
        if (url := _ocsp_url(leaf)) is not None
    ]


def _query(data: Any) -> OcspQuery:
    hash_data = CertificateHash(
        hash_algorithm=data.hash_algorithm,
        issuer_name_hash=data.issuer_name_hash.lower(),
        issuer_key_hash=data.issuer_key_hash.lower(),
        serial_number=data.serial_number.lower().lstrip("0") or "0",
    )
    return OcspQuery(hash=hash_data, responder_url=data.responder_url)


def _ocsp_url(certificate: x509.Certificate) -> str | None:
    """The OCSP responder of the certificate's Authority Information Access, if any."""
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return None
    for description in access.value:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            location = description.access_location
            if isinstance(location, x509.UniformResourceIdentifier):
                return location.value
    return None


def usable(result: OcspResult | None, at: float, settings: Settings) -> bool:
    """Whether a recorded OCSP ``result`` may answer a CALL at ``at``: it is an answer (not
    ``failed``), and ``at`` is before its ``nextUpdate`` and its recording plus
    ``ocsp_cache_seconds``."""
    if result is None or result.status == "failed":
        return False
    cache = float(_options(settings).get("ocsp_cache_seconds", 300))
    until = result.at + cache
    if result.next_update is not None:
        until = min(until, result.next_update)
    return at < until


# -- the checks a CALL needs -----------------------------------------------------------------


@hookimpl
@answers("GetCertificateStatus", "Authorize", "Get15118EVCertificate", "DataTransfer")
def chargeledger_certificate_checks(
    call: InboundCall, views: Views, settings: Settings
) -> list[CertificateCheck]:
    """The OCSP checks without a usable recorded result, and a Get15118EVCertificate's call
    to the remote provider unless its answer is recorded (the core makes that call only when
    ``chargeledger_contract_request`` builds one: ``contract_provider_url``)."""
    inner = _inner(call)
    if not isinstance(inner, InboundCall):
        return []
    if inner.action == "Get15118EVCertificate":
        recorded = views.plug_and_charge.contract_answer(inner.station, inner.message_id, inner.at)
        return [_contract_request(inner)] if recorded is None else []
    queries = _queries(inner)
    if isinstance(queries, str):
        return []
    return [
        query
        for query in queries
        if not usable(views.plug_and_charge.result(query.hash), inner.at, settings)
    ]


# -- the answers -----------------------------------------------------------------------------


@hookimpl(tryfirst=True)
@answers("Get15118EVCertificate", "GetCertificateStatus", "Authorize")
def chargeledger_answer_call(
    call: InboundCall, views: Views, settings: Settings, provide: ContractProvider
) -> list[Command] | None:
    """The 2.0.1 messages; ``tryfirst`` so that an Authorize carrying certificate data is
    answered here (any other Authorize is left to the ``authorization`` block)."""
    return _answer(call, views, settings, provide)


@hookimpl(specname="chargeledger_answer_call")
@answers("DataTransfer")
def answer_data_transfer(
    call: InboundCall, views: Views, settings: Settings, provide: ContractProvider
) -> list[Command] | None:
    """The 1.6 DataTransfer of our vendor id (others are left to their vendors' blocks)."""
    return _answer(call, views, settings, provide)


def _answer(
    call: InboundCall, views: Views, settings: Settings, provide: ContractProvider
) -> list[Command] | None:
    inner = _inner(call)
    if inner is None:
        return None
    if isinstance(inner, str):
        return [Reply({"status": inner})]
    if inner.action == "SignCertificate":
        [answer] = certificates.chargeledger_answer_call(inner)
        payload: dict[str, Any] | None = answer.payload if isinstance(answer, Reply) else None
    elif inner.action == "Get15118EVCertificate":
        payload = _contract(inner, views, provide)
    elif inner.action == "GetCertificateStatus":
        payload = _certificate_status(inner, views, settings)
    else:
        payload = _authorize(inner, views, settings)
    if payload is None:
        return None  # an Authorize without certificate data: the authorization block's
    if inner is call:
        return [Reply(payload)]
    data = msgspec.json.encode(payload).decode()
    return [Reply({"status": "Accepted", "data": data})]


def _contract_request(call: InboundCall) -> ContractCertificateRequest:
    return ContractCertificateRequest(
        station=call.station,
        protocol=call.protocol,
        action=call.payload.action,
        schema_version=call.payload.iso15118_schema_version,
        exi_request=call.payload.exi_request,
        message_id=call.message_id,
        at=call.at,
    )


def _contract(call: InboundCall, views: Views, provide: ContractProvider) -> dict[str, Any]:
    """The remote provider's recorded answer for this very CALL, else the in-process
    providers' (``provide``), else ``Failed`` (``NoProvider``)."""
    recorded = views.plug_and_charge.contract_answer(call.station, call.message_id, call.at)
    if recorded is not None:
        answer: ContractCertificateAnswer | None = ContractCertificateAnswer(
            status=recorded.status,
            exi_response=recorded.exi_response,
            reason=recorded.reason,
            error=recorded.error,
        )
    else:
        answer = provide(_contract_request(call))
    if answer is None:
        answer = ContractCertificateAnswer(status="Failed", reason="NoProvider")
    accepted = answer.status == "Accepted"
    payload: dict[str, Any] = {
        "status": "Accepted" if accepted else "Failed",
        "exiResponse": answer.exi_response if accepted else "",
    }
    if not accepted:
        info = {"reasonCode": (answer.reason or "Failed")[:20]}
        if answer.error:
            info["additionalInfo"] = answer.error[:512]
        payload["statusInfo"] = info
    return payload


def _certificate_status(call: InboundCall, views: Views, settings: Settings) -> dict[str, Any]:
    result = views.plug_and_charge.result(_query(call.payload.ocsp_request_data).hash)
    if not usable(result, call.at, settings) or result is None or result.response is None:
        why = "no usable OCSP answer" if result is None else (result.error or "stale answer")
        info = {"reasonCode": "OCSPUnavailable", "additionalInfo": why[:512]}
        return {"status": "Failed", "statusInfo": info}
    if len(result.response) > 5500:
        info = {"reasonCode": "OCSPTooLarge", "additionalInfo": "over 5500 characters"}
        return {"status": "Failed", "statusInfo": info}
    return {"status": "Accepted", "ocspResult": result.response}


_TOKEN_STATUS = {"CertificateRevoked": "Blocked", "CertificateExpired": "Expired"}
"""The token status an Authorize gets for a certificate status other than Accepted
(``Invalid`` for the others)."""


def _authorize(call: InboundCall, views: Views, settings: Settings) -> dict[str, Any] | None:
    queries = _queries(call)
    if queries == []:
        return None
    status = (
        queries if isinstance(queries, str) else _certificate_state(call, queries, views, settings)
    )
    if isinstance(queries, list) and status == "Accepted" and call.payload.certificate:
        leaf = read_chain(call.payload.certificate)[0]
        if leaf.not_valid_after_utc.timestamp() <= call.at:
            status = "CertificateExpired"
    answer = token_answer(call, settings, views)
    info = dict(answer["idTokenInfo"])
    if status != "Accepted":
        info["status"] = _TOKEN_STATUS.get(status, "Invalid")
    return {"idTokenInfo": info, "certificateStatus": status}


def _certificate_state(
    call: InboundCall, queries: list[OcspQuery], views: Views, settings: Settings
) -> str:
    """``CertificateRevoked`` when a usable result says so, ``Accepted`` when every
    certificate has a usable ``good`` one, else ``NoCertificateAvailable`` (fail closed: a
    certificate whose status nobody could tell authorizes nothing)."""
    results = [views.plug_and_charge.result(query.hash) for query in queries]
    found = [
        result for result in results if result is not None and usable(result, call.at, settings)
    ]
    if any(result.status == "revoked" for result in found):
        return "CertificateRevoked"
    if len(found) == len(queries) and all(result.status == "good" for result in found):
        return "Accepted"
    return "NoCertificateAvailable"


# -- 1.6: SignCertificate's chain goes back over DataTransfer -------------------------------


@hookimpl
@reacts_to("DataTransfer")
def chargeledger_react(exchange: Exchange | None, sign: CertificateSigner) -> list[Command]:
    inner = unwrap(exchange)
    if inner is None or inner.origin != "in" or inner.action != "SignCertificate":
        return []
    signed = certificates.chargeledger_react(inner, sign)
    return [
        SendCall(command.station, "DataTransfer", wrap(command.action, command.payload))
        for command in signed
        if isinstance(command, SendCall)
    ]


# -- the built-in OCSP request and answer reading ----------------------------------------------


@hookimpl(trylast=True)
def chargeledger_ocsp_request(query: OcspQuery, settings: Settings) -> HttpRequest | None:
    """A DER OCSP request by hash to ``query.responder_url``; ``None`` (not asked: the check
    is recorded failed) for hash data that is not hex of the algorithm's length, a URL that
    is not ``http``/``https``, or one whose host is not in
    ``ocsp_allowed_hosts`` when that option is set: the URL comes from the station, and the
    CSMS must not be made to POST wherever a station says."""
    algorithm = _OCSP_HASHES.get(query.hash.hash_algorithm)
    url = urlsplit(query.responder_url)
    allowed = _options(settings).get("ocsp_allowed_hosts")
    if algorithm is None or url.scheme not in ("http", "https"):
        return None
    if allowed is not None and url.hostname not in allowed:
        return None
    try:
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(
                bytes.fromhex(query.hash.issuer_name_hash),
                bytes.fromhex(query.hash.issuer_key_hash),
                int(query.hash.serial_number, 16),
                algorithm(),
            )
            .build()
        )
    except ValueError:  # not hex, or hashes of the wrong length: nothing to ask about
        return None
    return HttpRequest(
        url=query.responder_url,
        body=request.public_bytes(serialization.Encoding.DER),
        content_type="application/ocsp-request",
        timeout=float(_options(settings).get("ocsp_timeout", 5)),
    )


@hookimpl(trylast=True)
def chargeledger_ocsp_verdict(query: OcspQuery, response: HttpResponse) -> OcspVerdict:
    try:
        answer = ocsp.load_der_ocsp_response(response.body)
    except ValueError:
        return OcspVerdict(status="failed", error="not a DER OCSP response")
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return OcspVerdict(status="failed", error=f"responder: {answer.response_status.name}")
    wanted = query.hash
    for single in answer.responses:
        serial = format(single.serial_number, "x")
        if (
            single.issuer_name_hash.hex() == wanted.issuer_name_hash
            and single.issuer_key_hash.hex() == wanted.issuer_key_hash
            and serial == wanted.serial_number
        ):
            next_update = single.next_update_utc
            reason = single.revocation_reason
            return OcspVerdict(
                status=single.certificate_status.name.lower(),
                this_update=single.this_update_utc.timestamp(),
                next_update=None if next_update is None else next_update.timestamp(),
                revocation_reason=None if reason is None else reason.name,
                verified=_verified(answer, wanted),
            )
    return OcspVerdict(status="failed", error="the answer is about another certificate")


def _verified(answer: ocsp.OCSPResponse, wanted: CertificateHash) -> bool:
    """Whether ``answer`` is signed by the issuer of the certificate asked about, or by a
    responder the issuer certified for OCSP signing, the issuer's certificate being among
    those the answer carries (found by its key hash)."""
    carried = answer.certificates
    issuers = [
        c
        for c in carried
        if certificate_hash(c, c, wanted.hash_algorithm).issuer_key_hash == wanted.issuer_key_hash
    ]
    for issuer in issuers:
        for signer in carried:
            if signer is not issuer and not _delegated(signer, issuer):
                continue
            if _signed(answer, signer):
                return True
    return False


def _delegated(responder: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        responder.verify_directly_issued_by(issuer)
        usage = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in usage


def _signed(answer: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    key = signer.public_key()
    algorithm = answer.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(answer.signature, answer.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


# -- the test contract-certificate provider ----------------------------------------------------


@hookimpl(trylast=True)
def chargeledger_contract_certificate(
    request: ContractCertificateRequest, settings: Settings
) -> ContractCertificateAnswer | None:
    """The test provider: with ``contract_ca_certificate`` and ``contract_ca_key``, issue a
    contract certificate for an eMAID derived from the EXI request, with a P-256 key derived
    from it too, valid from the CALL's time. Its ``exiResponse`` is EXI-shaped but NOT an EXI
    ``CertificateInstallationRes`` (no EXI codec here, docs/plug-and-charge.md): the EXI
    header byte, then the certificate's DER (:func:`exi_shaped_response`), something a test
    can read and check. ``None`` when unconfigured."""
    options = _options(settings)
    certificate, key = options.get("contract_ca_certificate"), options.get("contract_ca_key")
    if certificate is None or key is None:
        return None
    ca = certificates.authority(certificate, key, options.get("contract_ca_chain"))
    seed = f"{request.station}\n{request.message_id}\n{request.at}\n{request.exi_request}"
    digest = hashlib.sha256(seed.encode()).digest()
    emaid = "DECLC" + digest[:5].hex().upper()
    private = ec.derive_private_key(
        int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1()
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, emaid)])
    leaf = certificates.issue_certificate(
        subject,
        private.public_key(),
        digest,
        request.at,
        ca.certificate,
        ca.key,
        int(options.get("contract_validity_days", 730)),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    der = leaf.public_bytes(serialization.Encoding.DER)
    return ContractCertificateAnswer(status="Accepted", exi_response=exi_shaped_response(der))


def exi_shaped_response(der: bytes) -> str:
    """The test providers' ``exiResponse`` for a contract certificate (``der``): base64 of
    :data:`EXI_HEADER` then the DER. Opaque to the CSMS like a real one; a test finds the
    certificate after the header."""
    return base64.b64encode(EXI_HEADER + der).decode()


# -- the built-in remote contract-certificate provider client ----------------------------------


@hookimpl(trylast=True)
def chargeledger_contract_request(
    request: ContractCertificateRequest, settings: Settings
) -> HttpRequest | None:
    """The JSON POST to ``contract_provider_url`` (docs/plug-and-charge.md has the contract):
    the station, the CALL's message id, ``action``, ``iso15118SchemaVersion`` and the
    ``exiRequest`` as received; ``None`` when the option is unset. ``ValueError`` when it is
    not an ``http(s)`` URL: the core records the call failed with that error, and the station
    gets ``Failed``, rather than an in-process provider answering in silence."""
    options = _options(settings)
    url = options.get("contract_provider_url")
    if url is None:
        return None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"contract_provider_url {url!r} is not an http(s) URL")
    body = {
        "station": request.station,
        "messageId": request.message_id,
        "action": request.action,
        "iso15118SchemaVersion": request.schema_version,
        "exiRequest": request.exi_request,
    }
    headers = options.get("contract_provider_headers") or {}
    return HttpRequest(
        url=url,
        body=msgspec.json.encode(body),
        content_type="application/json",
        timeout=float(options.get("contract_provider_timeout", 4)),
        headers={str(name): str(value) for name, value in headers.items()},
    )


class _ProviderAnswer(msgspec.Struct, frozen=True, rename="camel"):
    """What a remote provider answers (HTTP 200, JSON)."""

    status: str
    exi_response: str = ""
    reason_code: str | None = None


@hookimpl(trylast=True)
def chargeledger_contract_answer(response: HttpResponse) -> ContractCertificateAnswer:
    """Read the provider's JSON answer: ``Accepted`` with a non-empty base64 ``exiResponse``
    of at most 5600 characters, or ``Failed`` with its ``reasonCode``; anything else is a
    ``Failed`` answer of reason ``ProviderBadAnswer`` saying what is wrong."""

    def bad(error: str) -> ContractCertificateAnswer:
        return ContractCertificateAnswer(status="Failed", reason="ProviderBadAnswer", error=error)

    try:
        answer = msgspec.json.decode(response.body, type=_ProviderAnswer)
    except msgspec.DecodeError as exc:  # ValidationError included
        return bad(f"not the provider's JSON answer: {exc}")
    if answer.status == "Failed":
        reason = (answer.reason_code or "ProviderFailed")[:20]
        return ContractCertificateAnswer(status="Failed", reason=reason)
    if answer.status != "Accepted":
        return bad(f"unknown status {answer.status[:40]!r}")
    exi = answer.exi_response
    if not exi or len(exi) > _EXI_MAX:
        return bad(f"exiResponse of {len(exi)} characters (1 to {_EXI_MAX})")
    try:
        base64.b64decode(exi, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        return bad("exiResponse is not base64")
    return ContractCertificateAnswer(status="Accepted", exi_response=exi)
