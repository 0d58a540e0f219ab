"""Station certificates (2.0.1 A02/A03, the 1.6 security extension): answer a station's
SignCertificate, have its CSR signed, and send the chain back in CertificateSigned.

1. ``SignCertificate``: ``Accepted`` when :func:`~chargeledger.core.plugin.csr_problem`
   finds nothing wrong (the CSR parses, its key is EC or RSA of 2048 bits or more, its
   signature verifies, its subject CN is the station identity); else ``Rejected``, with the
   reason in 2.0.1 ``statusInfo`` (1.6 has no field for it; the certificate projection
   records the reason for both).
2. Once that answer is committed, the react hook has the CSR signed through ``sign`` (the
   ``chargeledger_sign_certificate`` hook) and sends ``CertificateSigned`` with the chain.
3. The built-in signer (``trylast``, so any other signer goes first) signs with the operator
   sub-CA of ``[certificate_signing]``; without one it signs nothing and nothing is sent.

Signing is pure given the CA's key and the answer: the validity starts when the CSR was
answered, the serial number derives from the answer's log position, and RSA PKCS#1 v1.5,
deterministic ECDSA (RFC 6979) and EdDSA signatures are deterministic, so a replay signs
byte-for-byte the same certificate.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from chargeledger.core.plugin import (
    CertificateRequest,
    CertificateSigner,
    Command,
    Exchange,
    InboundCall,
    Reply,
    SendCall,
    Settings,
    answers,
    as_dict,
    as_str,
    csr_problem,
    hookimpl,
    is_v16,
    reacts_to,
)

__all__ = [
    "SERIAL_BYTES",
    "Authority",
    "authority",
    "chargeledger_answer_call",
    "chargeledger_react",
    "chargeledger_sign_certificate",
    "issue_certificate",
    "sign_csr",
]

SERIAL_BYTES = 19
"""Serial numbers are 19 bytes of a SHA-256 (positive, within RFC 5280's 20 octets)."""

_USAGE = {"V2GCertificate": ExtendedKeyUsageOID.SERVER_AUTH}
"""Extended key usage by 2.0.1 certificate type: the station's own certificate is a TLS
client certificate (security profile 3); its V2G certificate serves the EV's TLS."""


@hookimpl
@answers("SignCertificate")
def chargeledger_answer_call(call: InboundCall) -> list[Command]:
    problem = csr_problem(call.payload.csr, call.station)
    if problem is None:
        return [Reply({"status": "Accepted"})]
    if is_v16(call.protocol):
        return [Reply({"status": "Rejected"})]
    info = {"reasonCode": "InvalidCSR", "additionalInfo": problem[:512]}
    return [Reply({"status": "Rejected", "statusInfo": info})]


@hookimpl
@reacts_to("SignCertificate")
def chargeledger_react(exchange: Exchange | None, sign: CertificateSigner) -> list[Command]:
    if (
        exchange is None
        or exchange.origin != "in"
        or exchange.action != "SignCertificate"
        or as_str(as_dict(exchange.response).get("status")) != "Accepted"
    ):
        return []
    request = as_dict(exchange.request)
    certificate_type = as_str(request.get("certificateType"))
    chain = sign(
        CertificateRequest(
            station=exchange.station,
            protocol=exchange.protocol,
            csr=as_str(request.get("csr")) or "",
            certificate_type=certificate_type,
            position=exchange.result_position,
            at=exchange.at,
        )
    )
    if chain is None:
        return []
    payload = {"certificateChain": chain}
    if certificate_type is not None and not is_v16(exchange.protocol):
        payload["certificateType"] = certificate_type
    return [SendCall(exchange.station, "CertificateSigned", payload)]


class Authority:
    """The operator sub-CA: its certificate, private key, and the PEM of the CAs above it."""

    def __init__(self, certificate: str, key: str, chain: str | None) -> None:
        self.certificate = x509.load_pem_x509_certificate(Path(certificate).read_bytes())
        loaded = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
        if not isinstance(
            loaded,
            (
                rsa.RSAPrivateKey,
                ec.EllipticCurvePrivateKey,
                ed25519.Ed25519PrivateKey,
                ed448.Ed448PrivateKey,
            ),
        ):
            raise ValueError(f"{key}: a CA key must be RSA, EC, Ed25519 or Ed448")
        self.key: CertificateIssuerPrivateKeyTypes = loaded
        self.chain = "" if chain is None else Path(chain).read_text()


@lru_cache(maxsize=4)
def authority(certificate: str, key: str, chain: str | None) -> Authority:
    """The CA of these files, read once per process (a changed file needs a restart)."""
    return Authority(certificate, key, chain)


def sign_csr(
    request: CertificateRequest,
    issuer: x509.Certificate,
    key: CertificateIssuerPrivateKeyTypes,
    validity_days: int,
) -> x509.Certificate:
    """The certificate for ``request``'s CSR (its subject and public key), issued by
    ``issuer`` with ``key``: valid from ``request.at`` for ``validity_days``, serial number
    from a hash of the station, the answer's position and the CSR, not a CA, with the key
    usages of a TLS end entity. Raises ``ValueError`` for a CSR that does not parse."""
    csr = x509.load_pem_x509_csr(request.csr.encode())
    seed = f"{request.station}\n{request.position}\n{request.csr}".encode()
    usage = _USAGE.get(request.certificate_type or "", ExtendedKeyUsageOID.CLIENT_AUTH)
    return issue_certificate(
        csr.subject, csr.public_key(), seed, request.at, issuer, key, validity_days, [usage]
    )


def issue_certificate(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    seed: bytes,
    at: float,
    issuer: x509.Certificate,
    key: CertificateIssuerPrivateKeyTypes,
    validity_days: int,
    usages: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    """An end-entity certificate for ``subject`` and ``public_key``, issued by ``issuer`` with
    ``key``: serial number from a hash of ``seed``, valid from ``at`` (whole seconds) for
    ``validity_days``, not a CA, key usage digital signature (and key encipherment for RSA),
    extended key usages ``usages``. Deterministic: the same arguments give the same
    certificate (RSA PKCS#1 v1.5, RFC 6979 ECDSA, EdDSA)."""
    serial = int.from_bytes(hashlib.sha256(seed).digest()[:SERIAL_BYTES], "big") or 1
    start = datetime.fromtimestamp(int(at), UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    edwards = isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    return builder.sign(
        key,
        None if edwards else hashes.SHA256(),
        ecdsa_deterministic=True if isinstance(key, ec.EllipticCurvePrivateKey) else None,
    )


@hookimpl(trylast=True)
def chargeledger_sign_certificate(request: CertificateRequest, settings: Settings) -> str | None:
    """The built-in signer: the operator sub-CA of ``[certificate_signing]``; ``None``
    without one. Raises ``OSError`` / ``ValueError`` when its files cannot be read."""
    config = settings.certificate_signing
    if config.ca_certificate is None or config.ca_key is None:
        return None
    ca = authority(config.ca_certificate, config.ca_key, config.chain)
    leaf = sign_csr(request, ca.certificate, ca.key, config.validity_days)
    encoding = serialization.Encoding.PEM
    issuer = ca.certificate.public_bytes(encoding).decode()
    return leaf.public_bytes(encoding).decode() + issuer + ca.chain
