"""The test PKI of Plug & Charge (docs/plug-and-charge.md): a V2G root and its sub-CA (the
station's ISO 15118 TLS certificates), a mobility-operator (MO) root and its sub-CA (contract
certificates, which it also answers OCSP for), contract certificates good and revoked, an
OCSP responder on loopback answering RFC 6960 requests with ``cryptography``'s OCSP builder,
and a remote contract-certificate provider on loopback speaking the JSON contract of
docs/plug-and-charge.md (and misbehaving on demand: slow, HTTP errors, garbage, down).

Everything is made here, at import or per test, with fresh keys: nothing is read from disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from chargeledger.plugins.plug_and_charge import EXI_HEADER, exi_shaped_response

__all__ = [
    "Authority",
    "ContractProvider",
    "OcspResponder",
    "TestPki",
    "contract_provider",
    "exi_request",
    "ocsp_responder",
    "pem",
    "write_key",
]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ChargeLedger test PKI"),
        ]
    )


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


class Authority:
    """A CA: its certificate and key, and what it issues."""

    def __init__(
        self, common_name: str, issuer: Authority | None = None, path_length: int | None = None
    ) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        signer = self if issuer is None else issuer
        subject = _name(common_name)
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if issuer is None else issuer.certificate.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
        )
        self.certificate = builder.sign(signer.key, hashes.SHA256())
        self.issuer = issuer

    def issue(
        self, common_name: str, ocsp_url: str | None, days: float = 365
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """An end-entity certificate for ``common_name`` (valid ``days`` from a day ago;
        negative: expired) naming ``ocsp_url`` as its OCSP responder, and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=2))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if ocsp_url is not None:
            access = x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
            builder = builder.add_extension(
                x509.AuthorityInformationAccess([access]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256()), key


class TestPki:
    """The V2G and MO hierarchies; contract certificates are issued by the MO sub-CA, which
    answers OCSP for them itself (the responder is the issuer)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self.v2g_root = Authority("V2G Root CA", path_length=1)
        self.v2g_sub = Authority("V2G Sub-CA", self.v2g_root, path_length=0)
        self.mo_root = Authority("MO Root CA", path_length=1)
        self.mo_sub = Authority("MO Sub-CA", self.mo_root, path_length=0)
        self.revoked: dict[int, datetime] = {}
        """Serial number -> revocation time, of the MO sub-CA's certificates."""
        self.issued: dict[int, x509.Certificate] = {}

    def contract(
        self, emaid: str, ocsp_url: str, *, revoked: bool = False, days: float = 365
    ) -> x509.Certificate:
        """A contract certificate for ``emaid`` issued by the MO sub-CA (revoked when asked)."""
        certificate, _ = self.mo_sub.issue(emaid, ocsp_url, days)
        self.issued[certificate.serial_number] = certificate
        if revoked:
            self.revoked[certificate.serial_number] = datetime.now(UTC) - timedelta(hours=1)
        return certificate

    def chain(self, certificate: x509.Certificate) -> str:
        """The PEM chain an EV presents: the contract certificate, then the MO sub-CA."""
        return pem(certificate) + pem(self.mo_sub.certificate)

    def hash_data(self, certificate: x509.Certificate, responder_url: str) -> dict[str, str]:
        """OCPP ``OCSPRequestDataType`` of a contract certificate, as a station computes it."""
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(certificate, self.mo_sub.certificate, hashes.SHA256())
            .build()
        )
        return {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": request.issuer_name_hash.hex(),
            "issuerKeyHash": request.issuer_key_hash.hex(),
            "serialNumber": format(certificate.serial_number, "x"),
            "responderURL": responder_url,
        }

    def answer(self, body: bytes) -> bytes:
        """The DER OCSP response to a DER OCSP request about an MO sub-CA certificate."""
        try:
            request = ocsp.load_der_ocsp_request(body)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ).public_bytes(serialization.Encoding.DER)
        certificate = self.issued.get(request.serial_number)
        if certificate is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(serialization.Encoding.DER)
        now = datetime.now(UTC).replace(microsecond=0)
        revoked_at = self.revoked.get(request.serial_number)
        status = ocsp.OCSPCertStatus.GOOD if revoked_at is None else ocsp.OCSPCertStatus.REVOKED
        response = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=certificate,
                issuer=self.mo_sub.certificate,
                algorithm=hashes.SHA256(),
                cert_status=status,
                this_update=now - timedelta(minutes=1),
                next_update=now + timedelta(hours=1),
                revocation_time=revoked_at,
                revocation_reason=None if revoked_at is None else x509.ReasonFlags.key_compromise,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.mo_sub.certificate)
            .certificates([self.mo_sub.certificate])
            .sign(self.mo_sub.key, hashes.SHA256())
        )
        return response.public_bytes(serialization.Encoding.DER)


class OcspResponder:
    """An HTTP OCSP responder on loopback for a :class:`TestPki`; counts the requests."""

    def __init__(self, pki: TestPki) -> None:
        self.pki = pki
        self.requests = 0
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                responder.requests += 1
                answer = responder.pki.answer(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ocsp"


@contextmanager
def ocsp_responder(pki: TestPki) -> Iterator[OcspResponder]:
    """A running :class:`OcspResponder`, shut down on exit."""
    responder = OcspResponder(pki)
    thread = threading.Thread(target=responder.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield responder
    finally:
        responder.server.shutdown()
        responder.server.server_close()
        thread.join(10)


def exi_request(seed: str, size: int = 700) -> str:
    """An EV's ``exiRequest`` as a station relays it: base64 of bytes shaped like an ISO 15118
    EXI stream (the EXI header byte, then ``size`` opaque bytes, about what a
    CertificateInstallationReq with its OEM provisioning certificate weighs). Not decodable
    EXI: the CSMS never decodes it, it only relays it (docs/plug-and-charge.md)."""
    body = bytearray()
    counter = 0
    while len(body) < size:
        body += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return base64.b64encode(EXI_HEADER + bytes(body[:size])).decode()


class ContractProvider:
    """A remote contract-certificate provider (an eMSP's) on loopback, for a :class:`TestPki`:
    POST the JSON of docs/plug-and-charge.md, get a contract certificate issued by the MO
    sub-CA in an EXI-shaped ``exiResponse``. ``mode`` makes it misbehave: ``accept`` (the
    default), ``fail`` (a ``Failed`` answer), ``error`` (HTTP 503), ``garbage`` (200, not
    JSON), ``slow`` (answers only after :meth:`stop` or 10 s). Every request is kept in
    ``received`` (the JSON body, the ``Authorization`` header)."""

    def __init__(self, pki: TestPki, ocsp_url: str) -> None:
        self.pki = pki
        self.ocsp_url = ocsp_url
        self.mode = "accept"
        self.received: list[tuple[dict[str, Any], str | None]] = []
        self.issued: list[x509.Certificate] = []
        self.release = threading.Event()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = json.loads(body)
                provider.received.append((request, self.headers.get("Authorization")))
                status, answer = provider.answer(request)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the CSMS gave up waiting (the ``slow`` mode's point)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/contracts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, request: dict[str, Any]) -> tuple[int, bytes]:
        """The HTTP status and body for ``request``, by ``mode``."""
        if self.mode == "slow":
            self.release.wait(10)
        if self.mode == "error":
            return 503, b'{"error": "maintenance"}'
        if self.mode == "garbage":
            return 200, b"<html>Service temporarily unavailable</html>"
        if self.mode == "fail":
            return 200, json.dumps({"status": "Failed", "reasonCode": "NoContract"}).encode()
        exi = base64.b64decode(request["exiRequest"], validate=True)
        assert exi.startswith(EXI_HEADER) and request["action"] in ("Install", "Update")
        emaid = "DECLP" + hashlib.sha256(exi).digest()[:4].hex().upper()
        certificate = self.pki.contract(emaid, self.ocsp_url)
        self.issued.append(certificate)
        der = certificate.public_bytes(serialization.Encoding.DER)
        answer = {"status": "Accepted", "exiResponse": exi_shaped_response(der)}
        return 200, json.dumps(answer).encode()

    def stop(self) -> None:
        """Go down: later requests find nobody listening (connection refused)."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@contextmanager
def contract_provider(pki: TestPki, ocsp_url: str) -> Iterator[ContractProvider]:
    """A running :class:`ContractProvider`, stopped on exit (if the test has not)."""
    provider = ContractProvider(pki, ocsp_url)
    provider.thread.start()
    try:
        yield provider
    finally:
        if provider.thread.is_alive():
            provider.stop()
