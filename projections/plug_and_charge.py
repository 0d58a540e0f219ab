"""The Plug & Charge projection (ISO 15118 certificates, OCPP 2.0.1 M and C, and the same over
1.6 DataTransfer): the OCSP checks the core made and what we answered from them, the
contract certificates we were asked for, and the calls the core made to a remote
contract-certificate provider for them.

A 1.6 station's messages arrive wrapped in DataTransfer; :func:`unwrap` (defined with the
certificate projection, which folds them too) gives the 2.0.1 exchange they carry, so one
fold serves both versions.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import ContractCertificateAnswered, OcspAnswered, Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.certificates import (
    PNC_VENDOR_ID,
    CertificateHash,
    keep_latest,
    unwrap,
    wrap,
)
from chargeledger.projections.exchanges import (
    Exchange,
    Kind,
    as_dict,
    as_list,
    as_str,
    is_v16,
)
from chargeledger.schemas import OCPP201

__all__ = [
    "PNC_VENDOR_ID",
    "CertificateAnswer",
    "ContractAnswer",
    "ContractRequest",
    "OcspResult",
    "PlugAndChargeProjection",
    "StationPlugAndCharge",
    "ocsp_result",
    "plug_and_charge_json",
    "unwrap",
    "wrap",
]


class OcspResult(msgspec.Struct, frozen=True, kw_only=True):
    """The newest recorded OCSP answer about one certificate (``OcspAnswered``)."""

    hash: CertificateHash
    url: str
    status: str
    """``good``, ``revoked``, ``unknown`` or ``failed``."""
    this_update: float | None
    next_update: float | None
    revocation_reason: str | None
    verified: bool
    error: str | None
    response: str | None
    """The responder's answer, base64 DER, as received (what GetCertificateStatus relays)."""
    request_id: str
    station: str
    position: int
    at: float


def ocsp_result(recorded: Recorded, event: OcspAnswered) -> OcspResult:
    """The :class:`OcspResult` an ``OcspAnswered`` records."""
    return OcspResult(
        hash=CertificateHash(
            hash_algorithm=event.hash_algorithm,
            issuer_name_hash=event.issuer_name_hash,
            issuer_key_hash=event.issuer_key_hash,
            serial_number=event.serial_number,
        ),
        url=event.url,
        status=event.status,
        this_update=event.this_update,
        next_update=event.next_update,
        revocation_reason=event.revocation_reason,
        verified=event.verified,
        error=event.error,
        response=event.response,
        request_id=event.request_id,
        station=event.station,
        position=recorded.position,
        at=event.at,
    )


class CertificateAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What we answered a station asking about certificates: a GetCertificateStatus (its
    ``status``, ``Accepted`` or ``Failed``) or an Authorize carrying certificate data (its
    ``certificateStatus`` and the token's ``idTokenInfo.status``)."""

    action: str
    """``GetCertificateStatus`` or ``Authorize``."""
    via: str
    """``ocpp2.0.1``, or ``DataTransfer`` for a 1.6 station."""
    serial_numbers: list[str]
    """The serial numbers of the certificates asked about (lowercase hex)."""
    status: str | None
    """GetCertificateStatus ``status``; Authorize ``certificateStatus``."""
    token_status: str | None
    """Authorize only: ``idTokenInfo.status``."""
    id_token: str | None
    position: int
    at: float


class ContractRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A Get15118EVCertificate and our answer."""

    via: str
    action: str | None
    """``Install`` or ``Update``."""
    schema_version: str | None
    exi_request_sha256: str
    """The EV's EXI request, hashed (the request itself is in the log)."""
    status: str | None
    """``Accepted`` or ``Failed``."""
    reason: str | None
    """``statusInfo.reasonCode`` when we failed it."""
    exi_response_length: int
    """Length of the EXI response we relayed (base64 characters), 0 when none."""
    position: int
    at: float


class ContractAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A remote contract-certificate provider's answer, as recorded
    (``ContractCertificateAnswered``): what the Get15118EVCertificate it was asked for is
    answered from."""

    request_id: str
    station: str
    message_id: str
    call_at: float
    """When the CALL it was asked for arrived."""
    url: str
    http_status: int | None
    status: str
    """``Accepted`` or ``Failed``."""
    exi_response: str
    reason: str | None
    error: str | None
    position: int
    at: float


class StationPlugAndCharge(msgspec.Struct, kw_only=True):
    """One station's Plug & Charge history. Read-only for everyone but the projection."""

    station: str
    answers: list[CertificateAnswer] = []
    contracts: list[ContractRequest] = []
    checks: list[OcspResult] = []
    """The OCSP checks made for its CALLs, oldest first."""
    provider_calls: list[ContractAnswer] = []
    """The calls made to a remote contract-certificate provider for it, oldest first."""


def _serials(items: list[Any]) -> list[str]:
    hashes = [CertificateHash.from_wire(item) for item in items]
    return [item.serial_number for item in hashes if item is not None]


class PlugAndChargeProjection:
    """Plug & Charge folded from ``OcspAnswered`` and ``ContractCertificateAnswered`` events
    and the exchanges closed by a CALLRESULT, of 2.0.1 stations and 1.6 ones (their
    DataTransfer unwrapped)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            OcspAnswered,
            ContractCertificateAnswered,
            "DataTransfer",
            "GetCertificateStatus",
            "Authorize",
            "Get15118EVCertificate",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        self._stations: dict[str, StationPlugAndCharge] = {}
        self._results: dict[str, OcspResult] = {}
        self._contracts: dict[str, ContractAnswer] = {}

    def get(self, station: str) -> StationPlugAndCharge | None:
        """The station's history, ``None`` when it has none."""
        return self._stations.get(station)

    def all(self) -> list[StationPlugAndCharge]:
        """Every station with a history, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def result(self, hash_data: CertificateHash) -> OcspResult | None:
        """The newest recorded OCSP answer about the certificate ``hash_data`` names."""
        return self._results.get(hash_data.key)

    def contract_answer(self, station: str, message_id: str, at: float) -> ContractAnswer | None:
        """The remote provider's recorded answer for the station's CALL ``message_id`` that
        arrived at ``at``; ``None`` when none was recorded for that CALL (a session handles
        one CALL at a time, so the station's newest answer is the only candidate)."""
        answer = self._contracts.get(station)
        if answer is None or answer.message_id != message_id or answer.call_at != at:
            return None
        return answer

    def _state(self, station: str) -> StationPlugAndCharge:
        state = self._stations.get(station)
        if state is None:
            state = self._stations[station] = StationPlugAndCharge(station=station)
        return state

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange (closed by a CALLRESULT) it completes."""
        event = recorded.event
        if isinstance(event, OcspAnswered):
            result = ocsp_result(recorded, event)
            self._results[result.hash.key] = result
            keep_latest(self._state(event.station).checks, result)
            return
        if isinstance(event, ContractCertificateAnswered):
            answer = ContractAnswer(
                request_id=event.request_id,
                station=event.station,
                message_id=event.message_id,
                call_at=event.call_at,
                url=event.url,
                http_status=event.http_status,
                status=event.status,
                exi_response=event.exi_response,
                reason=event.reason,
                error=event.error,
                position=recorded.position,
                at=event.at,
            )
            self._contracts[event.station] = answer
            keep_latest(self._state(event.station).provider_calls, answer)
            return
        inner = unwrap(exchange)
        if inner is not None:
            if inner.error is None:  # a refused DataTransfer did nothing
                self._exchange(inner, "DataTransfer")
        elif exchange is not None and not is_v16(exchange.protocol):
            self._exchange(exchange, OCPP201)

    def _exchange(self, exchange: Exchange, via: str) -> None:
        if exchange.origin != "in" or type(exchange.request) is not dict:
            return
        request, response = exchange.request, as_dict(exchange.response)
        action = exchange.action
        if action == "GetCertificateStatus":
            self._answer(exchange, via, _serials([request.get("ocspRequestData")]), response)
        elif action == "Authorize":
            items = as_list(request.get("iso15118CertificateHashData"))
            if not items and as_str(request.get("certificate")) is None:
                return  # an Authorize without certificate data is not Plug & Charge
            self._answer(exchange, via, _serials(items), response)
        elif action == "Get15118EVCertificate":
            exi = as_str(request.get("exiRequest")) or ""
            relayed = as_str(response.get("exiResponse")) or ""
            keep_latest(
                self._state(exchange.station).contracts,
                ContractRequest(
                    via=via,
                    action=as_str(request.get("action")),
                    schema_version=as_str(request.get("iso15118SchemaVersion")),
                    exi_request_sha256=hashlib.sha256(exi.encode()).hexdigest(),
                    status=as_str(response.get("status")),
                    reason=as_str(as_dict(response.get("statusInfo")).get("reasonCode")),
                    exi_response_length=len(relayed),
                    position=exchange.result_position,
                    at=exchange.at,
                ),
            )

    def _answer(
        self, exchange: Exchange, via: str, serials: list[str], response: dict[str, Any]
    ) -> None:
        authorize = exchange.action == "Authorize"
        status_field = "certificateStatus" if authorize else "status"
        token = as_dict(as_dict(exchange.request).get("idToken"))
        keep_latest(
            self._state(exchange.station).answers,
            CertificateAnswer(
                action=exchange.action,
                via=via,
                serial_numbers=serials,
                status=as_str(response.get(status_field)),
                token_status=(
                    as_str(as_dict(response.get("idTokenInfo")).get("status"))
                    if authorize
                    else None
                ),
                id_token=as_str(token.get("idToken")) if authorize else None,
                position=exchange.result_position,
                at=exchange.at,
            ),
        )


def _time(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def _result_json(result: OcspResult) -> dict[str, Any]:
    return {
        "hash": result.hash.to_wire(),
        "url": result.url,
        "status": result.status,
        "this_update": _time(result.this_update),
        "next_update": _time(result.next_update),
        "revocation_reason": result.revocation_reason,
        "verified": result.verified,
        "error": result.error,
        "request_id": result.request_id,
        "position": result.position,
        "at": rfc3339(result.at),
    }


def plug_and_charge_json(state: StationPlugAndCharge) -> dict[str, Any]:
    """``state`` as JSON-ready builtins (documented in ``docs/plug-and-charge.md``)."""
    return {
        "station": state.station,
        "answers": [
            {
                "action": answer.action,
                "via": answer.via,
                "serial_numbers": list(answer.serial_numbers),
                "status": answer.status,
                "token_status": answer.token_status,
                "id_token": answer.id_token,
                "position": answer.position,
                "at": rfc3339(answer.at),
            }
            for answer in state.answers
        ],
        "contracts": [
            {
                "via": contract.via,
                "action": contract.action,
                "schema_version": contract.schema_version,
                "exi_request_sha256": contract.exi_request_sha256,
                "status": contract.status,
                "reason": contract.reason,
                "exi_response_length": contract.exi_response_length,
                "position": contract.position,
                "at": rfc3339(contract.at),
            }
            for contract in state.contracts
        ],
        "ocsp_checks": [_result_json(result) for result in state.checks],
        "provider_calls": [
            {
                "message_id": call.message_id,
                "url": call.url,
                "http_status": call.http_status,
                "status": call.status,
                "reason": call.reason,
                "error": call.error,
                "exi_response_length": len(call.exi_response),
                "request_id": call.request_id,
                "position": call.position,
                "at": rfc3339(call.at),
            }
            for call in state.provider_calls
        ],
    }
