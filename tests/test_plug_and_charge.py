"""Plug & Charge, CSMS side, end to end (docs/plug-and-charge.md): the ``ocpp`` package's 2.0.1
charge point and its 1.6 charge point (over the ``org.openchargealliance.iso15118pnc``
DataTransfer) against a real server, the test PKI and an OCSP responder on loopback:
Get15118EVCertificate through the test provider, GetCertificateStatus good, revoked and with
an unreachable responder, Authorize with certificate hash data and with a certificate chain,
the V2G certificate and root-certificate use cases; every OCSP exchange recorded before the
answer it decided, shown over HTTP and the CLI, and a replay decides the same; and a remote
contract-certificate provider on loopback, called by the core and recorded, for both versions,
with its failure modes (down, too slow, HTTP error, garbage, a refusal)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
import websockets
from cryptography import x509
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import strategies as st
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201.enums import Action as Action201

from chargeledger.core.audit.replay import WhatIf
from chargeledger.core.console.routes import ROUTES as CONSOLE_ROUTES
from chargeledger.core.events import (
    ContractCertificateAnswered,
    ContractCertificateRequested,
    FrameLogged,
    OcspAnswered,
    OcspRequested,
    Recorded,
)
from chargeledger.core.frames import validate_request
from chargeledger.core.ocsp import post
from chargeledger.core.plugin import (
    CertificateHash,
    ContractCertificateAnswer,
    ContractCertificateRequest,
    HttpRequest,
    HttpResponse,
    InboundCall,
    OcspQuery,
    Reply,
    hookimpl,
)
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import CertificateSigning, Settings
from chargeledger.plugins import authorization, plug_and_charge
from chargeledger.projections import Exchange, Views, plug_and_charge_json
from chargeledger.projections.plug_and_charge import PNC_VENDOR_ID, OcspResult, unwrap, wrap
from chargeledger.schemas import OCPP16, OCPP201
from tests import test_certificates, test_e2e_v201
from tests.conftest import on_sqlite_and_postgres
from tests.harness import RunningServer, chargeledger_cli, running_server
from tests.pki import (
    OcspResponder,
    TestPki,
    contract_provider,
    exi_request,
    ocsp_responder,
    pem,
    write_key,
)

SCHEMA = "urn:iso:15118:2:2013:MsgDef"
EXI_REQUEST = exi_request("the EV's CertificateInstallationReq")


class PncStation201(test_certificates.Station201):
    """The 2.0.1 test station; a triggered SignV2GCertificate sends a SignCertificate for
    its V2G certificate."""

    @after(Action201.trigger_message)
    async def triggered(self, requested_message: str, **_: Any) -> None:
        if requested_message == "SignV2GCertificate":
            csr = test_certificates.make_csr(self.id)
            await self.call(call201.SignCertificate(csr=csr, certificate_type="V2GCertificate"))


class PncStation16(test_certificates.Station16):
    """The 1.6 test charge point speaking Plug & Charge over DataTransfer (the OCA
    application note): the certificate messages of 2.0.1 as JSON in ``data``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.received: list[tuple[str | None, Any]] = []

    async def pnc(self, message_id: str, payload: dict[str, Any]) -> tuple[str, Any]:
        """Send the 2.0.1 ``message_id`` request wrapped; the status and the unwrapped answer."""
        data = json.dumps(payload)
        answer = await self.call(
            call16.DataTransfer(vendor_id=PNC_VENDOR_ID, message_id=message_id, data=data)
        )
        return answer.status, None if answer.data is None else json.loads(answer.data)

    @on(Action16.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> Any:
        if vendor_id != PNC_VENDOR_ID:
            return result16.DataTransfer(status="UnknownVendorId")
        payload = json.loads(data or "{}")
        self.received.append((message_id, payload))
        answer: dict[str, Any] = {"status": "Accepted"}
        if message_id == "InstallCertificate":
            status = self.holder.install(payload["certificateType"], payload["certificate"])
            answer = {"status": status}
        elif message_id == "DeleteCertificate":
            serial = payload["certificateHashData"]["serialNumber"]
            answer = {"status": self.holder.delete({"serial_number": serial})}
        elif message_id == "GetInstalledCertificateIds":
            chains = [
                {"certificateType": kind, "certificateHashData": hash_data}
                for kind, hash_data in self.holder.listed(payload.get("certificateType") or [])
            ]
            answer = {"status": "Accepted" if chains else "NotFound"}
            if chains:
                answer["certificateHashDataChain"] = chains
        elif message_id == "CertificateSigned":
            self.holder.chains.append(payload["certificateChain"])
        elif message_id != "TriggerMessage":
            return result16.DataTransfer(status="UnknownMessageId")
        return result16.DataTransfer(status="Accepted", data=json.dumps(answer))

    @after(Action16.data_transfer)
    async def after_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> None:
        if vendor_id == PNC_VENDOR_ID and message_id == "TriggerMessage":
            await self.pnc("SignCertificate", {"csr": test_certificates.make_csr(self.id)})


class Pki:
    """The test PKI with its OCSP responder running, a good and a revoked contract
    certificate, an expired one, and the settings naming the MO sub-CA (test provider) and
    the V2G sub-CA (station V2G certificates)."""

    def __init__(self, pki: TestPki, responder: OcspResponder, tmp_path: Path) -> None:
        self.pki = pki
        self.responder = responder
        self.good = pki.contract("DECLGOOD00001", responder.url)
        self.revoked = pki.contract("DECLREVOKED01", responder.url, revoked=True)
        self.expired = pki.contract("DECLEXPIRED01", responder.url, days=-1)
        (tmp_path / "mo.pem").write_text(pem(pki.mo_sub.certificate))
        (tmp_path / "v2g.pem").write_text(pem(pki.v2g_sub.certificate))
        self.options = {
            "ocsp_allowed_hosts": ["127.0.0.1"],
            "contract_ca_certificate": str(tmp_path / "mo.pem"),
            "contract_ca_key": write_key(pki.mo_sub.key, tmp_path / "mo.key"),
            "ocsp_timeout": 3,
        }
        self.signing = CertificateSigning(
            ca_certificate=str(tmp_path / "v2g.pem"),
            ca_key=write_key(pki.v2g_sub.key, tmp_path / "v2g.key"),
            validity_days=365,
        )

    def settings(self, store: str) -> Settings:
        return Settings(
            port=0,
            api_port=0,
            store=store,
            plugins={"plug_and_charge": self.options},
            certificate_signing=self.signing,
        )

    def hash_data(self, certificate: x509.Certificate, url: str | None = None) -> dict[str, str]:
        return self.pki.hash_data(certificate, url or self.responder.url)


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Pki]:
    test_pki = TestPki()
    with ocsp_responder(test_pki) as responder:
        yield Pki(test_pki, responder, tmp_path)


def dead_url() -> str:
    """A loopback URL nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ocsp"


def ocsp_status(result: str) -> tuple[ocsp.OCSPCertStatus, int]:
    """The certificate status and serial number of a relayed ``ocspResult``."""
    response = ocsp.load_der_ocsp_response(base64.b64decode(result))
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status, response.serial_number


def contract_of(exi_response: str) -> x509.Certificate:
    """The contract certificate a test provider put in its EXI-shaped ``exiResponse``."""
    exi = base64.b64decode(exi_response, validate=True)
    assert exi.startswith(plug_and_charge.EXI_HEADER)
    return x509.load_der_x509_certificate(exi[len(plug_and_charge.EXI_HEADER) :])


def emaid(certificate: x509.Certificate) -> dict[str, str]:
    cn = certificate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    return {"idToken": str(cn), "type": "eMAID"}


def log_of(server: RunningServer) -> list[Recorded]:
    assert server.csms is not None
    return list(server.csms.store.iter_all())


def checked_before_answered(log: list[Recorded], station: str) -> list[tuple[str, str]]:
    """Per OcspAnswered of ``station``: its status and the action of the CALL answered next
    (the one it was made for), checking the order request, answer, CALL, our answer."""
    found = []
    for index, recorded in enumerate(log):
        if isinstance(recorded.event, OcspAnswered) and recorded.event.station == station:
            requested = [
                r.event
                for r in log[:index]
                if isinstance(r.event, OcspRequested)
                and r.event.request_id == recorded.event.request_id
            ]
            assert len(requested) == 1
            frames = [
                r.event
                for r in log[index + 1 :]
                if isinstance(r.event, FrameLogged) and r.event.station == station
            ]
            call = json.loads(frames[0].text)
            assert frames[0].direction == "in" and call[0] == 2
            assert call[1] == requested[0].message_id
            found.append((recorded.event.status, call[2]))
    return found


def replay_decides_the_same(server: RunningServer, settings: Settings) -> None:
    """Replaying the log through the same plugins gives the recorded answers, and the
    projection folded from the log is the live one."""
    log = log_of(server)
    what_if = WhatIf(PluginHost(settings))
    for recorded in log:
        what_if.feed(recorded)
    assert what_if.decided > 0
    assert what_if.differences == []
    assert server.csms is not None
    replayed = Views.replay(log).plug_and_charge
    live = server.run(_live_json, server)
    assert [plug_and_charge_json(state) for state in replayed.all()] == live


async def _live_json(server: RunningServer) -> list[dict[str, Any]]:
    assert server.csms is not None
    return [plug_and_charge_json(s) for s in server.csms.views.plug_and_charge.all()]


DOC = Path(__file__).resolve().parent.parent / "docs" / "plug-and-charge.md"


def walkthrough_commands() -> list[str]:
    """The commands of docs/plug-and-charge.md's walkthrough."""
    section = DOC.read_text().split("\n## Walkthrough\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


async def walkthrough(server: RunningServer, tmp_path: Path, pki: Pki) -> list[tuple[str, Any]]:
    """Run the walkthrough's commands (with ``$API``, ``$STORE`` and ``mo-root.pem``) against
    the running server; each command with its exit status and output."""
    assert server.csms is not None
    (tmp_path / "mo-root.pem").write_text(pem(pki.pki.mo_root.certificate))
    options, signing = pki.options, pki.signing
    (tmp_path / "chargeledger.toml").write_text(
        "[plugins.plug_and_charge]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in options.items())
        + "[certificate_signing]\n"
        + f"ca_certificate = {json.dumps(signing.ca_certificate)}\n"
        + f"ca_key = {json.dumps(signing.ca_key)}\n"
    )
    env = {
        **os.environ,
        "API": f"http://127.0.0.1:{server.csms.api_port}",
        "STORE": server.settings.store,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
    }
    results = []
    for command in walkthrough_commands():
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        results.append((command, process.returncode, out.decode()))
    return results


@on_sqlite_and_postgres
def test_plug_and_charge_201(tmp_path: Path, pki: Pki, server_store: str) -> None:
    station = "CP-PNC-201"
    good, revoked = pki.hash_data(pki.good), pki.hash_data(pki.revoked)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        facts: dict[str, Any] = {}
        cp, ws, task = await test_e2e_v201.connect(server, station, PncStation201)
        try:
            await cp.boot()
            facts["contract"] = await cp.call(
                call201.Get15118EVCertificate(
                    iso15118_schema_version=SCHEMA, action="Install", exi_request=EXI_REQUEST
                )
            )
            facts["good"] = await cp.call(call201.GetCertificateStatus(ocsp_request_data=good))
            facts["requests_after_good"] = pki.responder.requests
            facts["good_again"] = await cp.call(
                call201.GetCertificateStatus(ocsp_request_data=good)
            )
            facts["requests_after_good_again"] = pki.responder.requests
            facts["revoked"] = await cp.call(
                call201.GetCertificateStatus(ocsp_request_data=revoked)
            )
            unreachable = pki.hash_data(pki.expired, dead_url())
            facts["unreachable"] = await cp.call(
                call201.GetCertificateStatus(ocsp_request_data=unreachable)
            )
            for name, url in (
                ("not_allowed", "http://localhost:9/ocsp"),
                ("not_http", "file:///etc/passwd"),
            ):
                data = pki.hash_data(pki.expired, url)
                facts[name] = await cp.call(call201.GetCertificateStatus(ocsp_request_data=data))
            facts["authorize_good"] = await cp.call(
                call201.Authorize(id_token=emaid(pki.good), iso15118_certificate_hash_data=[good])
            )
            facts["authorize_revoked"] = await cp.call(
                call201.Authorize(
                    id_token=emaid(pki.revoked), iso15118_certificate_hash_data=[revoked]
                )
            )
            facts["authorize_chain"] = await cp.call(
                call201.Authorize(id_token=emaid(pki.good), certificate=pki.pki.chain(pki.good))
            )
            facts["authorize_expired"] = await cp.call(
                call201.Authorize(
                    id_token=emaid(pki.expired), certificate=pki.pki.chain(pki.expired)
                )
            )
            facts["authorize_leaf_only"] = await cp.call(
                call201.Authorize(id_token=emaid(pki.good), certificate=pem(pki.good))
            )
            facts["authorize_plain"] = await cp.call(
                call201.Authorize(id_token={"idToken": "TAG-1", "type": "ISO14443"})
            )
            csms = server.csms
            facts["trigger"] = await server.arun(
                partial(csms.pnc_trigger_sign_certificate, station)
            )
            facts["v2g_chain"] = list(
                await test_e2e_v201.until(
                    server, lambda: cp.holder.chains, "the V2G CertificateSigned"
                )
            )
            facts["install"] = await server.arun(
                partial(
                    csms.pnc_install_certificate,
                    station,
                    "MORootCertificate",
                    pem(pki.pki.mo_root.certificate),
                )
            )
            base = f"http://127.0.0.1:{csms.api_port}/api/stations"
            async with httpx.AsyncClient(timeout=30) as client:
                facts["http"] = await client.get(f"{base}/{station}/plug-and-charge")
                facts["http_unknown"] = await client.get(f"{base}/NOPE/plug-and-charge")
            facts["walkthrough"] = await walkthrough(server, tmp_path, pki)
            facts["v2g_chains"] = await test_e2e_v201.until(
                server,
                lambda: cp.holder.chains if len(cp.holder.chains) == 2 else None,
                "the walkthrough's V2G CertificateSigned",
            )
        finally:
            task.cancel()
            await ws.close()
        return facts

    settings = pki.settings(server_store)
    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))
        log = log_of(server)
        replay_decides_the_same(server, settings)

    contract = facts["contract"]
    assert contract.status == "Accepted"
    issued = contract_of(contract.exi_response)
    issued.verify_directly_issued_by(pki.pki.mo_sub.certificate)
    assert issued.subject.rfc4514_string().startswith("CN=DECLC")

    assert facts["good"].status == "Accepted"
    assert ocsp_status(facts["good"].ocsp_result) == (
        ocsp.OCSPCertStatus.GOOD,
        pki.good.serial_number,
    )
    assert facts["good_again"].ocsp_result == facts["good"].ocsp_result
    assert facts["requests_after_good_again"] == facts["requests_after_good"]  # cached
    assert facts["revoked"].status == "Accepted"  # the station relays the revocation
    assert ocsp_status(facts["revoked"].ocsp_result) == (
        ocsp.OCSPCertStatus.REVOKED,
        pki.revoked.serial_number,
    )
    assert facts["unreachable"].status == "Failed"
    assert facts["unreachable"].ocsp_result is None
    assert facts["unreachable"].status_info["reason_code"] == "OCSPUnavailable"
    assert "ConnectError" in facts["unreachable"].status_info["additional_info"]
    for name in ("not_allowed", "not_http"):  # never asked: not http, or not an allowed host
        assert facts[name].status == "Failed"
        assert facts[name].status_info["additional_info"] == "no plugin would ask this responder"

    assert facts["authorize_good"].certificate_status == "Accepted"
    assert facts["authorize_good"].id_token_info["status"] == "Accepted"
    assert facts["authorize_revoked"].certificate_status == "CertificateRevoked"
    assert facts["authorize_revoked"].id_token_info["status"] == "Blocked"
    assert facts["authorize_chain"].certificate_status == "Accepted"
    assert facts["authorize_expired"].certificate_status == "CertificateExpired"
    assert facts["authorize_expired"].id_token_info["status"] == "Expired"
    assert facts["authorize_leaf_only"].certificate_status == "CertChainError"
    assert facts["authorize_leaf_only"].id_token_info["status"] == "Invalid"
    assert facts["authorize_plain"].certificate_status is None
    assert facts["authorize_plain"].id_token_info["status"] == "Accepted"

    assert (facts["trigger"].status, facts["install"].status) == ("Accepted", "Accepted")
    [chain] = facts["v2g_chain"]
    v2g = x509.load_pem_x509_certificates(chain.encode())[0]
    v2g.verify_directly_issued_by(pki.pki.v2g_sub.certificate)

    # Every OCSP check was recorded, request then answer, before the CALL it was made for.
    assert checked_before_answered(log, station) == [
        ("good", "GetCertificateStatus"),
        ("revoked", "GetCertificateStatus"),
        ("failed", "GetCertificateStatus"),
        ("failed", "GetCertificateStatus"),
        ("failed", "GetCertificateStatus"),
        ("good", "Authorize"),  # the expired contract certificate: the responder says good
    ]
    answered = [r.event for r in log if isinstance(r.event, OcspAnswered)]
    assert [event.verified for event in answered] == [True, True, False, False, False, True]

    assert facts["http"].status_code == 200, facts["http"].text
    shown = facts["http"].json()
    assert [(a["action"], a["status"]) for a in shown["answers"]] == [
        ("GetCertificateStatus", "Accepted"),
        ("GetCertificateStatus", "Accepted"),
        ("GetCertificateStatus", "Accepted"),
        ("GetCertificateStatus", "Failed"),
        ("GetCertificateStatus", "Failed"),
        ("GetCertificateStatus", "Failed"),
        ("Authorize", "Accepted"),
        ("Authorize", "CertificateRevoked"),
        ("Authorize", "Accepted"),
        ("Authorize", "CertificateExpired"),
        ("Authorize", "CertChainError"),
    ]
    assert [(c["action"], c["status"], c["via"]) for c in shown["contracts"]] == [
        ("Install", "Accepted", OCPP201)
    ]
    assert [c["status"] for c in shown["ocsp_checks"]] == [
        "good",
        "revoked",
        "failed",
        "failed",
        "failed",
        "good",
    ]
    assert facts["http_unknown"].status_code == 404

    ran = facts["walkthrough"]
    assert len(ran) == len(walkthrough_commands()) == 6
    assert [code for _, code, _ in ran] == [0] * 6, ran
    assert json.loads(ran[2][2]) == shown  # curl shows what the API showed
    assert ran[3][2].startswith(f"{station} ")
    assert "contracts=1 ocsp_checks=6 provider_calls=0" in ran[3][2]
    assert "installed=1" in ran[4][2]
    assert ": 0 answered differently today" in ran[5][2], ran[5][2]
    assert not ran[5][2].startswith("re-decided 0 ")
    assert len(facts["v2g_chains"]) == 2

    [row] = chargeledger_cli("plug-and-charge", "--station", station, store=settings.store)
    assert row == shown
    certificates = chargeledger_cli("certificates", "--station", station, store=settings.store)
    assert [i["certificate_type"] for i in certificates[0]["installed"]] == ["MORootCertificate"]


def test_plug_and_charge_16_over_data_transfer(tmp_path: Path, pki: Pki) -> None:
    station = "CP-PNC-16"
    good, revoked = pki.hash_data(pki.good), pki.hash_data(pki.revoked)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        assert server.csms is not None
        csms = server.csms
        facts: dict[str, Any] = {}
        ws = await websockets.connect(f"{server.url}/{station}", subprotocols=[OCPP16])
        cp = PncStation16(station, ws)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            facts["contract"] = await cp.pnc(
                "Get15118EVCertificate",
                {"iso15118SchemaVersion": SCHEMA, "action": "Install", "exiRequest": EXI_REQUEST},
            )
            facts["good"] = await cp.pnc("GetCertificateStatus", {"ocspRequestData": good})
            facts["revoked"] = await cp.pnc("GetCertificateStatus", {"ocspRequestData": revoked})
            facts["authorize"] = await cp.pnc(
                "Authorize", {"idToken": emaid(pki.good), "iso15118CertificateHashData": [good]}
            )
            facts["authorize_revoked"] = await cp.pnc(
                "Authorize",
                {"idToken": emaid(pki.revoked), "iso15118CertificateHashData": [revoked]},
            )
            facts["unknown_message"] = await cp.pnc("Heartbeat", {})
            facts["invalid"] = await cp.pnc("GetCertificateStatus", {"ocspRequestData": {}})
            facts["other_vendor"] = await cp.call(call16.DataTransfer(vendor_id="com.example"))
            facts["wrong_csr"] = await cp.pnc(
                "SignCertificate", {"csr": test_certificates.make_csr("CP-SOMEONE-ELSE")}
            )
            facts["trigger"] = await server.arun(
                partial(csms.pnc_trigger_sign_certificate, station)
            )
            facts["chains"] = await test_e2e_v201.until(
                server, lambda: cp.holder.chains, "the V2G CertificateSigned over DataTransfer"
            )
            root = pem(pki.pki.v2g_root.certificate)
            facts["install"] = await server.arun(
                partial(csms.pnc_install_certificate, station, "V2GRootCertificate", root)
            )
            facts["ids"] = await server.arun(
                partial(csms.pnc_get_installed_certificate_ids, station, ["V2GRootCertificate"])
            )
            [key] = facts["ids"].values
            _, name_hash, key_hash, serial = key.split(":")
            facts["certificates_before"] = await test_e2e_v201.until(
                server, lambda: csms.views.certificates.get(station), "the installed root"
            )
            facts["installed_before"] = dict(facts["certificates_before"].installed)
            facts["delete"] = await server.arun(
                partial(csms.pnc_delete_certificate, station, name_hash, key_hash, serial)
            )
            facts["installed_after"] = dict(csms.views.certificates.get(station).installed)
        finally:
            task.cancel()
            await ws.close()
        return facts

    settings = pki.settings(f"sqlite:///{tmp_path / 'pnc16.db'}")
    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))
        log = log_of(server)
        replay_decides_the_same(server, settings)

    status, answer = facts["contract"]
    assert (status, answer["status"]) == ("Accepted", "Accepted")
    contract_of(answer["exiResponse"]).verify_directly_issued_by(pki.pki.mo_sub.certificate)
    status, answer = facts["good"]
    assert (status, answer["status"]) == ("Accepted", "Accepted")
    assert ocsp_status(answer["ocspResult"])[0] == ocsp.OCSPCertStatus.GOOD
    status, answer = facts["revoked"]
    assert ocsp_status(answer["ocspResult"])[0] == ocsp.OCSPCertStatus.REVOKED
    assert facts["authorize"][1]["certificateStatus"] == "Accepted"
    assert facts["authorize"][1]["idTokenInfo"]["status"] == "Accepted"
    assert facts["authorize_revoked"][1]["certificateStatus"] == "CertificateRevoked"
    assert facts["authorize_revoked"][1]["idTokenInfo"]["status"] == "Blocked"
    assert facts["unknown_message"] == ("UnknownMessageId", None)
    assert facts["invalid"] == ("Rejected", None)
    assert facts["other_vendor"].status == "UnknownVendorId"
    status, answer = facts["wrong_csr"]
    assert (status, answer["status"]) == ("Accepted", "Rejected")
    assert answer["statusInfo"]["reasonCode"] == "InvalidCSR"

    assert facts["trigger"].status == "Accepted" and facts["trigger"].protocol == OCPP16
    [chain] = facts["chains"]
    v2g = x509.load_pem_x509_certificates(chain.encode())[0]
    v2g.verify_directly_issued_by(pki.pki.v2g_sub.certificate)
    assert (facts["install"].status, facts["ids"].status) == ("Accepted", "Accepted")
    assert list(facts["ids"].values.values()) == ["V2GRootCertificate"]
    assert [i.certificate_type for i in facts["installed_before"].values()] == [
        "V2GRootCertificate"
    ]
    assert facts["delete"].status == "Accepted"
    assert facts["installed_after"] == {}

    assert checked_before_answered(log, station) == [
        ("good", "DataTransfer"),
        ("revoked", "DataTransfer"),
    ]
    [row] = chargeledger_cli("plug-and-charge", "--station", station, store=settings.store)
    assert {a["via"] for a in row["answers"]} == {"DataTransfer"}
    assert [(a["action"], a["status"]) for a in row["answers"]] == [
        ("GetCertificateStatus", "Accepted"),
        ("GetCertificateStatus", "Accepted"),
        ("Authorize", "Accepted"),
        ("Authorize", "CertificateRevoked"),
    ]
    assert [(c["status"], c["via"]) for c in row["contracts"]] == [("Accepted", "DataTransfer")]
    [certificates] = chargeledger_cli("certificates", "--station", station, store=settings.store)
    assert [(c["status"], c["certificate_type"]) for c in certificates["csrs"]] == [
        ("Rejected", "V2GCertificate"),
        ("Accepted", "V2GCertificate"),
    ]
    assert [s["status"] for s in certificates["signed"]] == ["Accepted"]


# -- a remote contract-certificate provider, called by the core ----------------------------------

PROVIDER_MODES = ["accept", "fail", "error", "garbage", "slow", "down", "accept"]
"""What the provider does for each Get15118EVCertificate in turn; the last finds it stopped
(``down``) and the CSMS restarted the test's order: it never comes back, so the final
``accept`` is answered ``Failed`` too."""


async def _ask_certificate(cp: Any, protocol: str, exi: str) -> dict[str, Any]:
    """A Get15118EVCertificate from ``cp`` (2.0.1, or 1.6 over DataTransfer) and the answer
    as 2.0.1 JSON (``status``, ``exiResponse``, ``statusInfo``)."""
    request = {"iso15118SchemaVersion": SCHEMA, "action": "Install", "exiRequest": exi}
    if protocol == OCPP16:
        status, answer = await cp.pnc("Get15118EVCertificate", request)
        assert status == "Accepted"
        return dict(answer)
    result = await cp.call(
        call201.Get15118EVCertificate(
            iso15118_schema_version=SCHEMA, action="Install", exi_request=exi
        )
    )
    answer = {"status": result.status, "exiResponse": result.exi_response}
    if result.status_info:
        info = result.status_info
        answer["statusInfo"] = {"reasonCode": info["reason_code"]}
        if "additional_info" in info:
            answer["statusInfo"]["additionalInfo"] = info["additional_info"]
    return answer


def provider_calls_before_answers(log: list[Recorded], station: str) -> list[tuple[str, str]]:
    """Per ContractCertificateAnswered of ``station``: its status and the action of the CALL
    answered next, checking the order request, answer, that very CALL (message id and time),
    our answer."""
    found = []
    for index, recorded in enumerate(log):
        event = recorded.event
        if isinstance(event, ContractCertificateAnswered) and event.station == station:
            [asked] = [
                r.event
                for r in log[:index]
                if isinstance(r.event, ContractCertificateRequested)
                and r.event.request_id == event.request_id
            ]
            frames = [
                r.event
                for r in log[index + 1 :]
                if isinstance(r.event, FrameLogged) and r.event.station == station
            ]
            call = json.loads(frames[0].text)
            assert frames[0].direction == "in" and call[0] == 2
            assert call[1] == asked.message_id == event.message_id
            assert frames[0].at == asked.call_at == event.call_at
            found.append((event.status, call[2]))
    return found


@pytest.mark.parametrize("protocol", [OCPP201, OCPP16])
def test_a_remote_contract_provider_is_called_by_the_core_and_recorded(
    tmp_path: Path, pki: Pki, protocol: str
) -> None:
    """With ``contract_provider_url``, the core POSTs each Get15118EVCertificate to the
    provider and records request and answer before the station is answered from the record:
    the EXI-shaped ``exiResponse`` relayed as is; a refusal, an HTTP error, garbage, a provider
    too slow or down are ``Failed`` with the reason, recorded, never the in-process test
    provider's certificate instead. A replay decides the same without any network."""
    station = f"CP-CONTRACT-{protocol[-3:].replace('.', '')}"

    async def scenario(server: RunningServer) -> list[dict[str, Any]]:
        answers = []
        if protocol == OCPP16:
            ws = await websockets.connect(f"{server.url}/{station}", subprotocols=[OCPP16])
            cp: Any = PncStation16(station, ws)
            task = asyncio.create_task(cp.start())
            boot: Any = call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
        else:
            cp, ws, task = await test_e2e_v201.connect(server, station, PncStation201)
            boot = None
        try:
            await (cp.call(boot) if boot is not None else cp.boot())
            for index, mode in enumerate(PROVIDER_MODES):
                if mode == "down":
                    provider.stop()
                else:
                    provider.mode = mode
                exi = exi_request(f"{station} EV {index}")
                answers.append(await _ask_certificate(cp, protocol, exi))
        finally:
            task.cancel()
            await ws.close()
        assert server.csms is not None
        fragment = f"http://127.0.0.1:{server.csms.api_port}/console/fragment/station"
        async with httpx.AsyncClient(timeout=30) as client:
            page = await client.get(fragment, params={"id": station})
        assert page.status_code == 200, page.text
        pages.append(page.text)
        return answers

    options = {
        **pki.options,
        "contract_provider_timeout": 0.5,
        "contract_provider_headers": {"Authorization": "Bearer test-token"},
    }
    pages: list[str] = []
    with contract_provider(pki.pki, pki.responder.url) as provider:
        options["contract_provider_url"] = provider.url
        settings = msgspec.structs.replace(
            pki.settings(f"sqlite:///{tmp_path / 'contracts.db'}"),
            plugins={"plug_and_charge": options},
        )
        with running_server(settings, web=CONSOLE_ROUTES) as server:
            answers = asyncio.run(scenario(server))
            log = log_of(server)
            replay_decides_the_same(server, settings)  # the provider is down by now

    accepted, refused, error, garbage, slow, down, after = answers
    assert accepted["status"] == "Accepted"
    [issued, *_] = provider.issued
    assert contract_of(accepted["exiResponse"]) == issued  # relayed byte for byte
    [first, *_] = provider.received
    assert first[0] == {
        "station": station,
        "messageId": first[0]["messageId"],
        "action": "Install",
        "iso15118SchemaVersion": SCHEMA,
        "exiRequest": exi_request(f"{station} EV 0"),
    }
    assert first[1] == "Bearer test-token"
    assert len(provider.received) == 5  # accept, fail, error, garbage, slow: then down

    def failed(answer: dict[str, Any]) -> tuple[str, str, str | None]:
        assert answer["exiResponse"] == ""
        info = answer["statusInfo"]
        return answer["status"], info["reasonCode"], info.get("additionalInfo")

    assert failed(refused) == ("Failed", "NoContract", None)
    assert failed(error) == ("Failed", "ProviderUnavailable", "HTTP 503")
    status, reason, info = failed(garbage)
    assert (status, reason) == ("Failed", "ProviderBadAnswer")
    assert info is not None and info.startswith("not the provider's JSON answer")
    assert failed(slow) == ("Failed", "ProviderUnavailable", "no answer within 0.5 s")
    for answer in (down, after):
        status, reason, info = failed(answer)
        assert (status, reason) == ("Failed", "ProviderUnavailable")
        assert info is not None and "ConnectError" in info

    action = "DataTransfer" if protocol == OCPP16 else "Get15118EVCertificate"
    assert provider_calls_before_answers(log, station) == [
        ("Accepted", action),
        *[("Failed", action)] * (len(PROVIDER_MODES) - 1),
    ]
    answered = [r.event for r in log if isinstance(r.event, ContractCertificateAnswered)]
    assert [event.http_status for event in answered] == [200, 200, 503, 200, None, None, None]
    assert base64.b64decode(answered[2].response or "") == b'{"error": "maintenance"}'
    asked = [r.event for r in log if isinstance(r.event, ContractCertificateRequested)]
    assert all("Bearer" not in base64.b64decode(event.request).decode() for event in asked)

    [row] = chargeledger_cli("plug-and-charge", "--station", station, store=settings.store)
    assert [(c["status"], c["reason"]) for c in row["provider_calls"]] == [
        ("Accepted", None),
        ("Failed", "NoContract"),
        ("Failed", "ProviderUnavailable"),
        ("Failed", "ProviderBadAnswer"),
        *[("Failed", "ProviderUnavailable")] * 3,
    ]
    # The console's station page lists the provider calls (its fragment, as the browser gets it).
    [page] = pages
    assert page.count("Contract provider call") == len(PROVIDER_MODES)
    assert "(HTTP 503)" in page and "ProviderBadAnswer" in page and "NoContract" in page
    via = "DataTransfer" if protocol == OCPP16 else OCPP201
    assert [(c["status"], c["via"]) for c in row["contracts"]] == [
        ("Accepted", via),
        *[("Failed", via)] * (len(PROVIDER_MODES) - 1),
    ]


def test_a_misconfigured_provider_url_fails_the_request_and_is_recorded(
    tmp_path: Path, pki: Pki
) -> None:
    """``contract_provider_url`` with a typo: nothing leaves, the call is recorded failed with
    the error, and the EV's request is ``Failed`` with it, not answered by the in-process test
    provider that is configured too."""
    station = "CP-CONTRACT-TYPO"
    options = {**pki.options, "contract_provider_url": "htps://emsp.example/contracts"}
    settings = msgspec.structs.replace(
        pki.settings(f"sqlite:///{tmp_path / 'typo.db'}"), plugins={"plug_and_charge": options}
    )

    async def scenario(server: RunningServer) -> dict[str, Any]:
        cp, ws, task = await test_e2e_v201.connect(server, station, PncStation201)
        try:
            await cp.boot()
            return await _ask_certificate(cp, OCPP201, EXI_REQUEST)
        finally:
            task.cancel()
            await ws.close()

    with running_server(settings) as server:
        answer = asyncio.run(scenario(server))
        log = log_of(server)
    assert answer["status"] == "Failed" and answer["exiResponse"] == ""
    assert answer["statusInfo"]["reasonCode"] == "ProviderUnavailable"
    assert "is not an http(s) URL" in answer["statusInfo"]["additionalInfo"]
    assert provider_calls_before_answers(log, station) == [("Failed", "Get15118EVCertificate")]
    [asked] = [r.event for r in log if isinstance(r.event, ContractCertificateRequested)]
    assert (asked.url, asked.request) == ("", "")


# -- the pure parts ------------------------------------------------------------------------------


@given(
    action=st.sampled_from(["InstallCertificate", "Authorize", "GetCertificateStatus"]),
    payload=st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=4),
    answer=st.dictionaries(st.text(max_size=8), st.integers(), max_size=4),
)
def test_wrap_then_unwrap_gives_the_201_exchange(
    action: str, payload: dict[str, str], answer: dict[str, int]
) -> None:
    exchange = Exchange(
        station="CP",
        session="s",
        protocol=OCPP16,
        origin="out",
        action="DataTransfer",
        request=wrap(action, payload),
        response={"status": "Accepted", "data": json.dumps(answer)},
        call_position=1,
        result_position=2,
        at=1.0,
    )
    inner = unwrap(exchange)
    assert inner is not None
    assert (inner.action, inner.protocol, inner.request, inner.response) == (
        action,
        OCPP201,
        payload,
        answer,
    )
    refused = unwrap(msgspec.structs.replace(exchange, response={"status": "Rejected"}))
    assert refused is not None and refused.response is None
    assert refused.error is not None and refused.error.code == "Rejected"
    other = msgspec.structs.replace(exchange, request={**exchange.request, "vendorId": "x"})
    assert unwrap(other) is None
    assert unwrap(msgspec.structs.replace(exchange, protocol=OCPP201)) is None


@given(body=st.binary(max_size=64))
def test_an_unreadable_ocsp_answer_is_a_failed_verdict(body: bytes) -> None:
    query = OcspQuery(
        hash=CertificateHash(
            hash_algorithm="SHA256",
            issuer_name_hash="00" * 32,
            issuer_key_hash="11" * 32,
            serial_number="1",
        ),
        responder_url="http://127.0.0.1:9/ocsp",
    )
    verdict = plug_and_charge.chargeledger_ocsp_verdict(query, HttpResponse(status=200, body=body))
    assert verdict.status == "failed" and verdict.error


def _result(status: str, at: float, next_update: float | None) -> OcspResult:
    return OcspResult(
        hash=CertificateHash(
            hash_algorithm="SHA256", issuer_name_hash="a", issuer_key_hash="b", serial_number="1"
        ),
        url="http://ocsp",
        status=status,
        this_update=at,
        next_update=next_update,
        revocation_reason=None,
        verified=True,
        error=None,
        response="AA==",
        request_id="r",
        station="CP",
        position=1,
        at=at,
    )


def test_a_recorded_answer_is_usable_until_next_update_and_the_cache_limit() -> None:
    settings = Settings(plugins={"plug_and_charge": {"ocsp_cache_seconds": 60}})
    usable = plug_and_charge.usable
    assert usable(_result("good", 100, 130), 129.9, settings)
    assert not usable(_result("good", 100, 130), 130, settings)  # nextUpdate passed
    assert usable(_result("revoked", 100, None), 159, settings)
    assert not usable(_result("good", 100, None), 160, settings)  # cached long enough
    assert not usable(_result("failed", 100, None), 100, settings)
    assert not usable(None, 100, settings)


async def test_an_ocsp_responder_that_never_answers_times_out() -> None:
    """The core's POST gives up after the request's timeout, connection accepted or not."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    request = HttpRequest(
        url=f"http://127.0.0.1:{port}/ocsp",
        body=b"x",
        content_type="application/ocsp-request",
        timeout=0.5,
    )
    started = trio.current_time()
    assert await post(request) == "no answer within 0.5 s"
    assert trio.current_time() - started < 5
    for listener in listeners:
        await listener.aclose()


class _Provider:
    """A contract-certificate provider plugin, as an eMSP integration would be."""

    @staticmethod
    @hookimpl
    def chargeledger_contract_certificate(
        request: ContractCertificateRequest,
    ) -> ContractCertificateAnswer | None:
        if request.action != "Update":
            return None  # leaves installations to the next provider
        return ContractCertificateAnswer(status="Accepted", exi_response="RVhJ")


def _get_certificate(protocol: str, action: str) -> InboundCall:
    payload = {"iso15118SchemaVersion": SCHEMA, "action": action, "exiRequest": EXI_REQUEST}
    if protocol == OCPP16:
        data = json.dumps(payload)
        payload = {"vendorId": PNC_VENDOR_ID, "messageId": "Get15118EVCertificate", "data": data}
    name = "DataTransfer" if protocol == OCPP16 else "Get15118EVCertificate"
    return InboundCall(
        station="CP",
        session="s",
        protocol=protocol,
        message_id="m1",
        action=name,
        payload=validate_request(protocol, name, payload),
        at=1_800_000_000.0,
    )


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_contract_providers_answer_in_order_and_none_is_failed(protocol: str) -> None:
    """A provider plugin answers what it takes; without any provider the EV's request is
    ``Failed`` (``NoProvider``), never left unanswered."""
    builtin = {"plug_and_charge": plug_and_charge, "authorization": authorization}
    host = PluginHost(Settings(), plugins={**builtin, "emsp": _Provider()})

    def answer(action: str) -> dict[str, Any]:
        [reply] = host.answer_call(_get_certificate(protocol, action), Views()) or []
        assert isinstance(reply, Reply)
        if protocol == OCPP16:
            assert reply.payload["status"] == "Accepted"
            return dict(json.loads(reply.payload["data"]))
        return dict(reply.payload)

    assert answer("Update") == {"status": "Accepted", "exiResponse": "RVhJ"}
    assert answer("Install") == {
        "status": "Failed",
        "exiResponse": "",
        "statusInfo": {"reasonCode": "NoProvider"},
    }


@pytest.mark.parametrize(
    ("name_hash", "serial", "url", "asked"),
    [
        ("00" * 32, "1f", "http://127.0.0.1/ocsp", True),
        ("00" * 32, "not-hex", "http://127.0.0.1/ocsp", False),
        ("00" * 31, "1f", "http://127.0.0.1/ocsp", False),  # not a SHA-256
        ("00" * 32, "1f", "gopher://127.0.0.1/ocsp", False),
        ("00" * 32, "1f", "http://10.0.0.1/ocsp", False),  # not an allowed host
    ],
)
def test_the_builtin_ocsp_request_asks_only_what_it_may(
    name_hash: str, serial: str, url: str, asked: bool
) -> None:
    settings = Settings(plugins={"plug_and_charge": {"ocsp_allowed_hosts": ["127.0.0.1"]}})
    query = OcspQuery(
        hash=CertificateHash(
            hash_algorithm="SHA256",
            issuer_name_hash=name_hash,
            issuer_key_hash="11" * 32,
            serial_number=serial,
        ),
        responder_url=url,
    )
    request = plug_and_charge.chargeledger_ocsp_request(query, settings)
    assert (request is not None) == asked
    if request is not None:
        parsed = ocsp.load_der_ocsp_request(request.body)
        assert (parsed.serial_number, parsed.issuer_name_hash) == (0x1F, bytes(32))
        assert (request.url, request.content_type) == (url, "application/ocsp-request")


@given(
    body=st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda value: json.dumps(value).encode(),
            st.dictionaries(
                st.sampled_from(["status", "exiResponse", "reasonCode"]),
                st.one_of(
                    st.sampled_from(["Accepted", "Failed", "", "gA==", "not base64!"]),
                    st.text(max_size=8),
                    st.integers(),
                    st.none(),
                ),
            ),
        ),
    )
)
def test_any_provider_answer_is_read_as_accepted_with_exi_or_failed(body: bytes) -> None:
    """Whatever a remote provider answers, the verdict is an answer the station can get:
    ``Accepted`` only with a non-empty base64 ``exiResponse``, else ``Failed`` with a reason
    of at most 20 characters."""
    answer = plug_and_charge.chargeledger_contract_answer(HttpResponse(status=200, body=body))
    assert answer.status in ("Accepted", "Failed")
    if answer.status == "Accepted":
        assert base64.b64decode(answer.exi_response, validate=True)
    else:
        assert answer.reason and len(answer.reason) <= 20


def test_the_provider_contract_accepts_exactly_the_documented_answers() -> None:
    read = plug_and_charge.chargeledger_contract_answer

    def verdict(answer: Any) -> tuple[str, str, str | None]:
        got = read(HttpResponse(status=200, body=json.dumps(answer).encode()))
        return got.status, got.exi_response, got.reason

    assert verdict({"status": "Accepted", "exiResponse": "gAEC"}) == ("Accepted", "gAEC", None)
    assert verdict({"status": "Failed", "reasonCode": "NoContract"}) == (
        "Failed",
        "",
        "NoContract",
    )
    assert verdict({"status": "Failed"}) == ("Failed", "", "ProviderFailed")
    for bad in (
        {"status": "Accepted"},  # no exiResponse
        {"status": "Accepted", "exiResponse": "not base64!"},
        {"status": "Accepted", "exiResponse": "A" * 5604},  # over the schema's 5600
        {"status": "Maybe", "exiResponse": "gAEC"},
        {"exiResponse": "gAEC"},
        ["Accepted", "gAEC"],
    ):
        assert verdict(bad)[::2] == ("Failed", "ProviderBadAnswer"), bad


@pytest.mark.parametrize(
    ("url", "asked"),
    [
        (None, False),
        ("file:///etc/passwd", "is not an http(s) URL"),
        ("htps://emsp.example/contracts", "is not an http(s) URL"),
        ("https://emsp.example/contracts", True),
    ],
)
def test_the_builtin_provider_request_is_made_only_to_an_http_url(
    url: str | None, asked: bool | str
) -> None:
    """No URL: no remote provider (the in-process ones answer). A URL that is not http(s): an
    error, which the core records as the call's failure (``Failed`` for the station)."""
    options: dict[str, Any] = {"contract_provider_timeout": 2}
    if url is not None:
        options["contract_provider_url"] = url
    settings = Settings(plugins={"plug_and_charge": options})
    request = ContractCertificateRequest(
        station="CP",
        protocol=OCPP201,
        action="Update",
        schema_version=SCHEMA,
        exi_request=EXI_REQUEST,
        message_id="m1",
        at=1.0,
    )
    if isinstance(asked, str):
        with pytest.raises(ValueError, match=r"is not an http\(s\) URL"):
            plug_and_charge.chargeledger_contract_request(request, settings)
        return
    http = plug_and_charge.chargeledger_contract_request(request, settings)
    assert (http is not None) == asked
    if http is not None:
        assert (http.url, http.timeout, http.content_type) == (url, 2.0, "application/json")
        assert json.loads(http.body) == {
            "station": "CP",
            "messageId": "m1",
            "action": "Update",
            "iso15118SchemaVersion": SCHEMA,
            "exiRequest": EXI_REQUEST,
        }
