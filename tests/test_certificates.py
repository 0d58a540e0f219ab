"""Certificates and security events, CSMS side, end to end with the ``ocpp`` package's charge
points of both versions over real websockets: a CSR signed by the operator sub-CA made here
and sent back in CertificateSigned, a CSR for another identity refused and recorded, the
certificate use cases folding into the certificate projection, and security events shown by
the API, the CLI and (critical ones) the audit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import textwrap
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from chargeledger.core.api import Caller
from chargeledger.core.plugin import CertificateRequest
from chargeledger.core.settings import CertificateSigning, Settings
from chargeledger.plugins import certificates as certificates_plugin
from chargeledger.projections.certificates import csr_problem
from chargeledger.schemas import OCPP16, OCPP201
from tests import test_e2e_v16, test_e2e_v201
from tests.diagnostics_station import Diagnostics16
from tests.harness import RunningServer, chargeledger_cli, running_server
from tests.test_audit import chargeledger, json_lines

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def make_csr(common_name: str, key: Any = None) -> str:
    """A PEM CSR for ``common_name``, signed by ``key`` (a fresh EC key by default) as a
    station would."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return request.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def station_hash(certificate: x509.Certificate) -> dict[str, str]:
    """OCPP hash data of a self-signed EC certificate, computed as a station would (without
    our :func:`certificate_hash`): SHA-256 of the issuer name's DER and of the issuer's public
    key bits, the serial in hex."""
    key = certificate.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hashlib.sha256(certificate.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.sha256(key).hexdigest(),
        "serialNumber": format(certificate.serial_number, "x"),
    }


ROOT, _ = make_ca("Operator Root")
ROOT_PEM = pem(ROOT)
ROOT_HASH = station_hash(ROOT)


class Holder:
    """What a station does with certificates, in either version: keeps the chains the CSMS
    signed, installs root certificates, lists and deletes them by hash data."""

    def __init__(self) -> None:
        self.chains: list[str] = []
        self.installed: dict[str, tuple[str, dict[str, str]]] = {}
        """serial -> (certificate type, hash data)."""

    def install(self, certificate_type: str, certificate: str) -> str:
        parsed = x509.load_pem_x509_certificate(certificate.encode())
        hash_data = station_hash(parsed)
        self.installed[hash_data["serialNumber"]] = (certificate_type, hash_data)
        return "Accepted"

    def delete(self, certificate_hash_data: dict[str, str]) -> str:
        found = self.installed.pop(certificate_hash_data["serial_number"], None)
        return "NotFound" if found is None else "Accepted"

    def listed(self, types: list[str]) -> list[tuple[str, dict[str, str]]]:
        return [held for held in self.installed.values() if not types or held[0] in types]


class Station16(Diagnostics16, test_e2e_v16.Station):
    """The 1.6 test charge point with the security extension's certificate messages (and
    its GetLog, and GetDiagnostics)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.holder = Holder()

    @on(Action16.update_firmware)
    def on_update_firmware(self, **_: Any) -> Any:
        return result16.UpdateFirmware()

    @on(Action16.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str) -> Any:
        self.holder.chains.append(certificate_chain)
        return result16.CertificateSigned(status="Accepted")

    @on(Action16.install_certificate)
    def on_install(self, certificate_type: str, certificate: str) -> Any:
        return result16.InstallCertificate(
            status=self.holder.install(certificate_type, certificate)
        )

    @on(Action16.delete_certificate)
    def on_delete(self, certificate_hash_data: dict[str, str]) -> Any:
        return result16.DeleteCertificate(status=self.holder.delete(certificate_hash_data))

    @on(Action16.get_installed_certificate_ids)
    def on_get_ids(self, certificate_type: str) -> Any:
        found = [data for _, data in self.holder.listed([certificate_type])]
        if not found:
            return result16.GetInstalledCertificateIds(status="NotFound")
        return result16.GetInstalledCertificateIds(status="Accepted", certificate_hash_data=found)


class Station201(test_e2e_v201.Station):
    """The 2.0.1 test station with the certificate messages of blocks A and M."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.holder = Holder()

    @on(Action201.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **_: Any) -> Any:
        self.holder.chains.append(certificate_chain)
        return result201.CertificateSigned(status="Accepted")

    @on(Action201.install_certificate)
    def on_install(self, certificate_type: str, certificate: str) -> Any:
        status = self.holder.install(certificate_type, certificate)
        return result201.InstallCertificate(status=status)

    @on(Action201.delete_certificate)
    def on_delete(self, certificate_hash_data: dict[str, str]) -> Any:
        return result201.DeleteCertificate(status=self.holder.delete(certificate_hash_data))

    @on(Action201.get_installed_certificate_ids)
    def on_get_ids(self, certificate_type: list[str] | None = None) -> Any:
        chains = [
            {"certificateType": kind, "certificateHashData": data}
            for kind, data in self.holder.listed(certificate_type or [])
        ]
        if not chains:
            return result201.GetInstalledCertificateIds(status="NotFound")
        return result201.GetInstalledCertificateIds(
            status="Accepted", certificate_hash_data_chain=chains
        )


async def connect(server: RunningServer, name: str, protocol: str) -> tuple[Any, Any, Any]:
    """A booted station of the version with the certificate messages."""
    if protocol == OCPP16:
        ws = await websockets.connect(f"{server.url}/{name}", subprotocols=[OCPP16])
        cp = Station16(name, ws)
        task = asyncio.create_task(cp.start())
        await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    else:
        cp, ws, task = await test_e2e_v201.connect(server, name, Station201)
        await cp.boot()
    return cp, ws, task


def sign_certificate(protocol: str, csr: str) -> Any:
    if protocol == OCPP16:
        return call16.SignCertificate(csr=csr)
    return call201.SignCertificate(csr=csr, certificate_type="ChargingStationCertificate")


@pytest.fixture
def ca_files(tmp_path: Path) -> tuple[x509.Certificate, CertificateSigning]:
    """An operator sub-CA made here, written to files, and the settings naming them."""
    certificate, key = make_ca("Operator Sub-CA")
    (tmp_path / "ca.pem").write_text(pem(certificate))
    (tmp_path / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signing = CertificateSigning(
        ca_certificate=str(tmp_path / "ca.pem"), ca_key=str(tmp_path / "ca.key"), validity_days=90
    )
    return certificate, signing


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_a_csr_is_signed_and_one_for_another_identity_is_refused(
    tmp_path: Path, protocol: str, ca_files: tuple[x509.Certificate, CertificateSigning]
) -> None:
    ca, signing = ca_files
    station = f"CP-CSR-{protocol}"

    async def scenario(server: RunningServer) -> tuple[list[Any], list[str]]:
        cp, ws, task = await connect(server, station, protocol)
        try:
            wrong = await cp.call(sign_certificate(protocol, make_csr("CP-SOMEONE-ELSE")))
            right = await cp.call(sign_certificate(protocol, make_csr(station)))
            chains = await test_e2e_v201.until(
                server, lambda: cp.holder.chains, "the CertificateSigned"
            )

            def answered() -> bool:
                assert server.csms is not None
                held = server.csms.views.certificates.get(station)
                return held is not None and [s.status for s in held.signed] == ["Accepted"]

            # The station's answer to CertificateSigned is folded after the station has it.
            await test_e2e_v201.until(server, answered, "the CertificateSigned answer folded")
            return [wrong, right], chains
        finally:
            task.cancel()
            await ws.close()

    settings = Settings(
        port=0, store=f"sqlite:///{tmp_path / 'csr.db'}", api_port=0, certificate_signing=signing
    )
    with running_server(settings) as server:
        answers, chains = asyncio.run(scenario(server))
        assert server.csms is not None
        base = f"http://127.0.0.1:{server.csms.api_port}"
        shown = httpx.get(f"{base}/api/stations/{station}/certificates", timeout=10).json()
    [printed] = chargeledger_cli("certificates", "--station", station, store=settings.store)
    assert printed == shown

    wrong, right = answers
    assert (wrong.status, right.status) == ("Rejected", "Accepted")
    if protocol == OCPP201:
        assert wrong.status_info["reason_code"] == "InvalidCSR"
        assert "CP-SOMEONE-ELSE" in wrong.status_info["additional_info"]
    # Only the right CSR was signed: its chain verifies against the CA, for this station.
    [chain] = chains
    leaf, issuer = x509.load_pem_x509_certificates(chain.encode())
    assert issuer == ca
    leaf.verify_directly_issued_by(ca)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == station
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=90)
    # Both CSRs and the signed certificate are in the projection, the refusal with its reason.
    refused, accepted = shown["csrs"]
    assert (refused["status"], refused["common_name"]) == ("Rejected", "CP-SOMEONE-ELSE")
    assert "not the station identity" in refused["problem"]
    assert (accepted["status"], accepted["problem"]) == ("Accepted", None)
    [signed] = shown["signed"]
    assert signed["serial_number"] == format(leaf.serial_number, "x")
    assert signed["common_name"] == station and signed["status"] == "Accepted"
    assert signed["not_after"].startswith(leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S"))


def test_signing_is_pure_given_the_key_and_the_answer(
    ca_files: tuple[x509.Certificate, CertificateSigning],
) -> None:
    """The same request signs the same certificate (a replay re-signs byte for byte); its
    validity starts at the answer's time, not the clock's; no CA configured signs nothing."""
    _, signing = ca_files
    request = CertificateRequest(
        station="CP-1", protocol=OCPP201, csr=make_csr("CP-1"), certificate_type=None,
        position=42, at=NOW.timestamp(),
    )  # fmt: skip
    settings = Settings(certificate_signing=signing)
    first = certificates_plugin.chargeledger_sign_certificate(request, settings)
    assert first is not None
    assert first == certificates_plugin.chargeledger_sign_certificate(request, settings)
    leaf = x509.load_pem_x509_certificates(first.encode())[0]
    assert leaf.not_valid_before_utc == NOW
    later = msgspec.structs.replace(request, position=43)
    other = certificates_plugin.chargeledger_sign_certificate(later, settings)
    assert other is not None and x509.load_pem_x509_certificates(other.encode())[0].serial_number
    assert x509.load_pem_x509_certificates(other.encode())[0].serial_number != leaf.serial_number
    assert certificates_plugin.chargeledger_sign_certificate(request, Settings()) is None


def test_installing_and_deleting_trust_anchors_needs_the_admin_role() -> None:
    operator = Caller("ops", "operator")
    with running_server(Settings(port=0, store="memory://")) as server:
        csms = server.csms
        assert csms is not None
        install = partial(
            csms.install_certificate, "CP-X", "CSMSRootCertificate", ROOT_PEM, caller=operator
        )
        with pytest.raises(PermissionError, match="needs the 'admin' role"):
            server.run(install)
        delete = partial(csms.delete_certificate, "CP-X", "aa", "bb", "1", caller=operator)
        with pytest.raises(PermissionError, match="needs the 'admin' role"):
            server.run(delete)


def test_what_a_csr_must_be_to_be_signed() -> None:
    assert csr_problem(make_csr("CP-1"), "CP-1") is None
    assert "not the station identity" in str(csr_problem(make_csr("CP-1"), "CP-2"))
    assert "not a PEM" in str(csr_problem("-----BEGIN CERTIFICATE REQUEST-----\nAA==", "CP-1"))
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert "1024 bits" in str(csr_problem(make_csr("CP-1", weak), "CP-1"))
    edwards = ed25519.Ed25519PrivateKey.generate()
    assert "only EC and RSA" in str(csr_problem(make_csr("CP-1", edwards), "CP-1"))
    # A CSR whose signature no longer matches its contents (its last byte, in the
    # signature, flipped).
    der = x509.load_pem_x509_csr(make_csr("CP-1").encode()).public_bytes(serialization.Encoding.DER)
    forged = pem_of_csr(der[:-1] + bytes([der[-1] ^ 1]))
    assert csr_problem(forged, "CP-1") == "the CSR's signature does not verify"


def pem_of_csr(der: bytes) -> str:
    lines = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{lines}\n-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_certificate_use_cases_fold_into_the_projection(tmp_path: Path, protocol: str) -> None:
    """install, list and delete over HTTP; the projection follows the station's answers and
    names each certificate by the hash data the station computes."""
    station = f"CP-CERTS-{protocol}"
    key = ":".join(ROOT_HASH.values())

    async def scenario(server: RunningServer) -> list[Any]:
        assert server.csms is not None
        _, ws, task = await connect(server, station, protocol)
        shown = []
        base = f"http://127.0.0.1:{server.csms.api_port}/api/stations/{station}"
        commands = [
            {"use_case": "install_certificate", "certificate_type": "CSMSRootCertificate",
             "certificate": ROOT_PEM},
            {"use_case": "get_installed_certificate_ids",
             "certificate_types": ["CSMSRootCertificate"]},
            {"use_case": "delete_certificate", "issuer_name_hash": ROOT_HASH["issuerNameHash"],
             "issuer_key_hash": ROOT_HASH["issuerKeyHash"],
             "serial_number": ROOT_HASH["serialNumber"]},
            {"use_case": "get_installed_certificate_ids",
             "certificate_types": ["CSMSRootCertificate"]},
        ]  # fmt: skip
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                for command in commands:
                    answer = await client.post(f"{base}/commands", json=command)
                    assert answer.status_code == 200, answer.text
                    shown.append((answer.json(), (await client.get(f"{base}/certificates")).json()))
        finally:
            task.cancel()
            await ws.close()
        return shown

    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'certs.db'}", api_port=0)
    with running_server(settings) as server:
        (installed, after_install), (listed, after_list), (deleted, after_delete), (empty, _) = (
            asyncio.run(scenario(server))
        )
    root_type = "CentralSystemRootCertificate" if protocol == OCPP16 else "CSMSRootCertificate"
    assert installed["status"] == "Accepted"
    [held] = after_install["installed"]
    assert held["hash"] == ROOT_HASH, "our hash data differs from the station's"
    assert (held["certificate_type"], held["common_name"]) == (root_type, "Operator Root")
    assert (listed["status"], listed["values"]) == ("Accepted", {key: root_type})
    [reported] = after_list["installed"]
    assert (reported["source"], reported["common_name"]) == (
        "GetInstalledCertificateIds",
        held["common_name"],
    )
    assert deleted["status"] == "Accepted"
    assert after_delete["installed"] == []
    [deletion] = after_delete["deletions"]
    assert (deletion["hash"], deletion["status"]) == (ROOT_HASH, "Accepted")
    assert (empty["status"], empty["accepted"]) == ("NotFound", False)


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_security_events_in_the_api_the_cli_and_the_audit(tmp_path: Path, protocol: str) -> None:
    station = f"CP-SEC-{protocol}"
    store = f"sqlite:///{tmp_path / 'sec.db'}"
    module = call16 if protocol == OCPP16 else call201
    events = [
        ("InvalidMessages", "bad frame"),
        ("TamperDetectionActivated", "enclosure opened"),
    ]

    async def scenario(server: RunningServer) -> None:
        cp, ws, task = await connect(server, station, protocol)
        try:
            for event_type, info in events:
                notification = module.SecurityEventNotification(
                    type=event_type, timestamp="2026-11-21T10:00:00Z", tech_info=info
                )
                await cp.call(notification)
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        asyncio.run(scenario(server))
        assert server.csms is not None
        api = f"http://127.0.0.1:{server.csms.api_port}/api/stations/{station}/security-events"
        shown = httpx.get(api, timeout=10).json()
        critical_only = httpx.get(f"{api}?critical=true", timeout=10).json()
        unknown = httpx.get(api.replace(station, "NOPE"), timeout=10)

    assert [(e["type"], e["critical"]) for e in shown["recent"]] == [
        ("InvalidMessages", False),
        ("TamperDetectionActivated", True),
    ]
    assert shown["critical"] == 1
    assert shown["counts"] == {"InvalidMessages": 1, "TamperDetectionActivated": 1}
    assert [e["type"] for e in critical_only["recent"]] == ["TamperDetectionActivated"]
    assert unknown.status_code == 404
    [printed] = chargeledger_cli("security-events", "--station", station, store=store)
    assert printed == shown
    code, out, err = chargeledger("audit", "--store", store, "--json")
    assert code == 0, err
    found = [f for f in json_lines(out) if f["kind"] == "critical_security_event"]
    assert [(f["station"], f["severity"]) for f in found] == [(station, "warning")]
    assert "TamperDetectionActivated" in found[0]["detail"]
    assert "enclosure opened" in found[0]["detail"]
