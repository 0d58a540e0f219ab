"""Plug & Charge use cases (ISO 15118 certificates, docs/plug-and-charge.md): the CSMS side's
requests to stations, for both versions.

A 2.0.1 station gets the 2.0.1 message itself; a 1.6 station gets it wrapped in a
``DataTransfer`` of vendor id ``org.openchargealliance.iso15118pnc`` (the OCA application note
"Using ISO 15118 Plug & Charge with OCPP 1.6"), and its answer is read out of the
DataTransfer's ``data``. The 2.0.1 requests are built by the builders of
:mod:`chargeledger.core.usecases`' certificate use cases, so both versions send the same
message; the inner payload is checked against the 2.0.1 schema before anything is recorded.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# The table in ``usecases`` imports this module: its builders are read when a request is
# built, never at import.
from chargeledger.core import usecases
from chargeledger.core.errors import InvalidUseCaseArguments, OutboundValidationError
from chargeledger.core.frames import to_wire
from chargeledger.core.usecase_base import (
    ACCEPTED_STATUSES,
    Request,
    UseCase,
    UseCaseArgs,
    UseCaseResult,
)
from chargeledger.projections.plug_and_charge import wrap
from chargeledger.schemas import OCPP16, OCPP201

__all__ = [
    "USE_CASES",
    "PncDeleteCertificateArgs",
    "PncGetInstalledCertificateIdsArgs",
    "PncInstallCertificateArgs",
    "PncTriggerSignCertificateArgs",
    "pnc_request",
    "trigger_sign_v2g_certificate",
]

PncRootType = Literal[
    "V2GRootCertificate", "MORootCertificate", "CSMSRootCertificate", "ManufacturerRootCertificate"
]
PncCertificateType = Literal[
    "V2GRootCertificate",
    "MORootCertificate",
    "CSMSRootCertificate",
    "V2GCertificateChain",
    "ManufacturerRootCertificate",
]


def pnc_request(protocol: str, request: Request) -> Request:
    """``request`` (a 2.0.1 request) as ``protocol`` carries it: itself for 2.0.1; for 1.6 a
    DataTransfer wrapping it, whose answer is read by the 2.0.1 request's reader from the
    answer's ``data`` (a DataTransfer refused, ``UnknownVendorId`` say, is that status, not
    accepted). Raises ``InvalidUseCaseArguments`` when the 2.0.1 payload breaks its schema."""
    try:
        payload = to_wire(OCPP201, request.action, request.payload, "request")
    except OutboundValidationError as exc:
        raise InvalidUseCaseArguments(f"{request.action}: {exc}") from None
    if protocol != OCPP16:
        return msgspec.structs.replace(request, payload=payload)

    def read(response: dict[str, Any]) -> UseCaseResult:
        status = str(response.get("status", ""))
        inner: Any = None
        if status == "Accepted":
            try:
                inner = msgspec.json.decode(str(response.get("data", "")))
            except msgspec.DecodeError:
                inner = None
        if type(inner) is not dict:
            return UseCaseResult(
                protocol=OCPP16,
                action="DataTransfer",
                status=status if status != "Accepted" else "Unreadable",
                accepted=False,
                response=response,
            )
        result = request.result(inner)
        return msgspec.structs.replace(
            result,
            protocol=OCPP16,
            action="DataTransfer",
            accepted=result.status in ACCEPTED_STATUSES,
            response=response,
        )

    return Request(OCPP16, "DataTransfer", wrap(request.action, payload), read)


def trigger_sign_v2g_certificate(protocol: str) -> Request:
    """TriggerMessage ``SignV2GCertificate``: the station sends a SignCertificate for its V2G
    (ISO 15118 TLS server) certificate, which the ``certificates`` block has signed."""
    return pnc_request(
        protocol,
        Request(OCPP201, "TriggerMessage", {"requestedMessage": "SignV2GCertificate"}),
    )


class PncInstallCertificateArgs(UseCaseArgs, tag="pnc_install_certificate"):
    """Install a PEM root certificate for Plug & Charge: ``certificate_type``
    ``V2GRootCertificate`` or ``MORootCertificate`` (or another 2.0.1 root type), in 2.0.1
    itself, in 1.6 over DataTransfer (`org.openchargealliance.iso15118pnc`). Folds into the
    certificate projection."""

    certificate_type: PncRootType
    certificate: str


class PncDeleteCertificateArgs(UseCaseArgs, tag="pnc_delete_certificate"):
    """Delete the certificate its OCPP hash data names, in 1.6 over the Plug & Charge
    DataTransfer; `status` `Accepted`, `Failed` or `NotFound`."""

    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    hash_algorithm: Literal["SHA256", "SHA384", "SHA512"] = "SHA256"


class PncGetInstalledCertificateIdsArgs(UseCaseArgs, tag="pnc_get_installed_certificate_ids"):
    """List the station's certificates of ``certificate_types`` (all when none), in 1.6 over
    the Plug & Charge DataTransfer; ``values`` as `get_installed_certificate_ids`'."""

    certificate_types: list[PncCertificateType] | None = None


class PncTriggerSignCertificateArgs(UseCaseArgs, tag="pnc_trigger_sign_certificate"):
    """Ask the station to send a SignCertificate for its V2G certificate (TriggerMessage
    `SignV2GCertificate`, in 1.6 over DataTransfer); the `certificates` block has it signed
    and sends CertificateSigned."""


USE_CASES: tuple[UseCase[Any], ...] = (
    UseCase[PncInstallCertificateArgs](
        "pnc_install_certificate",
        PncInstallCertificateArgs,
        lambda protocol, a, _: pnc_request(
            protocol, usecases.install_certificate(OCPP201, a.certificate_type, a.certificate)
        ),
        role="admin",
    ),
    UseCase[PncDeleteCertificateArgs](
        "pnc_delete_certificate",
        PncDeleteCertificateArgs,
        lambda protocol, a, _: pnc_request(
            protocol,
            usecases.delete_certificate(
                OCPP201, a.hash_algorithm, a.issuer_name_hash, a.issuer_key_hash, a.serial_number
            ),
        ),
        role="admin",
    ),
    UseCase[PncGetInstalledCertificateIdsArgs](
        "pnc_get_installed_certificate_ids",
        PncGetInstalledCertificateIdsArgs,
        lambda protocol, a, _: pnc_request(
            protocol,
            usecases.get_installed_certificate_ids(OCPP201, list(a.certificate_types or [])),
        ),
    ),
    UseCase[PncTriggerSignCertificateArgs](
        "pnc_trigger_sign_certificate",
        PncTriggerSignCertificateArgs,
        lambda protocol, a, _: trigger_sign_v2g_certificate(protocol),
        role="admin",
    ),
)
