"""Security profiles 1-3 over real TLS on loopback (certificates made here with ``trustme``):
who may connect as which station, what each refusal answers and records, password rotation
with no lock-out, and a profile upgrade. docs/security.md describes what is tested here."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
import trustme
import websockets
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as call_result16
from ocpp.v16.enums import Action as Action16

from chargeledger.core.errors import StationOffline
from chargeledger.core.events import (
    CommandRequested,
    FrameLogged,
    HandshakeRejected,
    SessionOpened,
    StationPasswordSet,
)
from chargeledger.core.security import (
    Transport,
    admit,
    check_password,
    generate_password,
    hash_password,
    transport_of,
    verify_password,
)
from chargeledger.core.settings import Settings, TlsSettings, load_settings
from chargeledger.projections import Credentials
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, running_server
from tests.polling import wait_for

PASSWORD = "correct-horse-battery-staple-1"
OTHER_PASSWORD = "another-station-password-22"
BOOT = '[2,"boot","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


@dataclass(frozen=True)
class Pki:
    """The operator CA, the server's certificate files, and a way to make client contexts."""

    ca: trustme.CA
    directory: Path

    def client(
        self, common_name: str | None = None, ca: trustme.CA | None = None
    ) -> ssl.SSLContext:
        """A client context trusting the server; with a certificate of ``common_name`` (issued
        by ``ca``, the operator CA by default) when one is named."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        if common_name is not None:
            (ca or self.ca).issue_cert(common_name, common_name=common_name).configure_cert(context)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return Pki(ca, directory)


@pytest.fixture(scope="module")
def server(pki: Pki, module_server_store: str) -> Iterator[RunningServer]:
    """A server with ``ws://`` on ``port`` and ``wss://`` on ``tls_port``, registered stations
    only: SP1 ``CP-1`` and ``CP-1B``, SP2 ``CP-2``, SP3 ``CP-3``, disabled SP1 ``CP-OFF``; on
    SQLite, then on a fresh PostgreSQL schema."""
    store = module_server_store
    tls = TlsSettings(
        cert_file=str(pki.directory / "server.pem"),
        key_file=str(pki.directory / "server.key"),
        ca_file=str(pki.directory / "ca.pem"),
        port=0,
    )
    settings = Settings(port=0, store=store, tls=tls, registration="registered_only", api_port=0)
    with running_server(settings) as running:
        csms = running.csms
        assert csms is not None
        for station, profile, password, enabled in (
            ("CP-1", 1, PASSWORD, True),
            ("CP-1B", 1, OTHER_PASSWORD, True),
            ("CP-2", 2, PASSWORD, True),
            ("CP-3", 3, None, True),
            ("CP-OFF", 1, PASSWORD, False),
        ):
            running.run(partial(csms.register_station, station, profile=profile, enabled=enabled))
            if password is not None:
                running.run(partial(csms.set_station_password, station, password))
        yield running


def _basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass(frozen=True)
class Outcome:
    status: int
    body: str = ""
    headers: dict[str, str] | None = None


def _url(server: RunningServer, station: str, secure: bool) -> str:
    assert server.csms is not None
    if secure:
        return f"wss://127.0.0.1:{server.csms.gateway.tls_port}/ocpp/{station}"
    return f"ws://127.0.0.1:{server.csms.port}/ocpp/{station}"


async def _attempt(
    server: RunningServer,
    station: str,
    *,
    secure: bool = False,
    context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Outcome:
    """Open a connection as ``station``; once accepted, boot (so the session is committed)
    and close. The HTTP status (101: accepted) and, for a refusal, its body and headers."""
    headers = {} if password is None else _basic(username or station, password)
    try:
        ws = await websockets.connect(
            _url(server, station, secure),
            subprotocols=[websockets.Subprotocol("ocpp1.6")],
            additional_headers=headers,
            ssl=context if secure else None,
        )
    except websockets.InvalidStatus as refused:
        response = refused.response
        return Outcome(response.status_code, response.body.decode(), dict(response.headers))
    try:
        await ws.send(BOOT)
        assert json.loads(await ws.recv())[0] == 3
    finally:
        await ws.close()
    return Outcome(101)


def attempt(server: RunningServer, station: str, **kwargs: Any) -> Outcome:
    return asyncio.run(_attempt(server, station, **kwargs))


def _events(server: RunningServer, kind: type[Any]) -> list[Any]:
    assert server.csms is not None
    return [r.event for r in server.csms.store.iter_all() if isinstance(r.event, kind)]


def last_refusal(server: RunningServer, station: str) -> HandshakeRejected:
    refusals = [e for e in _events(server, HandshakeRejected) if e.station == station]
    assert refusals, f"no HandshakeRejected recorded for {station}"
    return refusals[-1]


def last_session(server: RunningServer, station: str) -> SessionOpened:
    opened = wait_for(
        lambda: [e for e in _events(server, SessionOpened) if e.station == station],
        what=f"a session of {station}",
    )
    return opened[-1]


def assert_refused(outcome: Outcome, server: RunningServer, station: str, cause: str) -> None:
    """Refused with 401 (or 403 for ``disabled``), nothing in the answer but the status's
    name and, for 401, the Basic challenge; recorded with ``cause``."""
    status = 403 if cause == "disabled" else 401
    assert outcome.status == status, outcome
    assert outcome.body == ("Forbidden" if status == 403 else "Unauthorized")
    if status == 401:
        assert outcome.headers is not None
        assert outcome.headers["www-authenticate"].startswith("Basic realm=")
    refusal = last_refusal(server, station)
    assert (refusal.status, refusal.cause) == (status, cause), refusal
    assert refusal.reason


# -- profile 1 -------------------------------------------------------------------------------


def test_sp1_right_password_opens_a_session_recording_how(server: RunningServer) -> None:
    assert attempt(server, "CP-1", password=PASSWORD).status == 101
    opened = last_session(server, "CP-1")
    assert (opened.auth, opened.profile, opened.credential) == ("basic", 1, "current")
    assert opened.tls_fingerprint is None


def test_sp1_wrong_or_missing_password_is_refused_and_recorded(server: RunningServer) -> None:
    assert_refused(
        attempt(server, "CP-1", password="not-the-password-at-all"),
        server,
        "CP-1",
        "wrong_password",
    )
    assert_refused(attempt(server, "CP-1"), server, "CP-1", "no_credentials")


def test_unknown_station_gets_the_same_answer_as_a_wrong_password(server: RunningServer) -> None:
    """registered_only: a prober cannot tell an unknown station from a wrong password."""
    unknown = attempt(server, "CP-NOBODY", password=PASSWORD)
    wrong = attempt(server, "CP-1", password="not-the-password-at-all")
    assert_refused(unknown, server, "CP-NOBODY", "unknown_station")
    assert (unknown.status, unknown.body) == (wrong.status, wrong.body)


def test_sp1_station_cannot_take_over_another_station(server: RunningServer) -> None:
    """CP-1B's credentials open nothing as CP-1, and the real CP-1's session survives."""

    async def scenario() -> tuple[Outcome, Outcome, str, str]:
        assert server.csms is not None
        ws = await websockets.connect(
            _url(server, "CP-1", False),
            subprotocols=[websockets.Subprotocol("ocpp1.6")],
            additional_headers=_basic("CP-1", PASSWORD),
        )
        try:
            await ws.send(BOOT)
            await ws.recv()
            before = server.csms.gateway.sessions["CP-1"].id
            as_self = await _attempt(server, "CP-1", username="CP-1B", password=OTHER_PASSWORD)
            own_user = await _attempt(server, "CP-1", password=OTHER_PASSWORD)
            after = server.csms.gateway.sessions["CP-1"].id
            await ws.send(BOOT)
            assert json.loads(await ws.recv())[0] == 3, "the real CP-1 is still served"
        finally:
            await ws.close()
        return as_self, own_user, before, after

    as_self, own_user, before, after = asyncio.run(scenario())
    assert as_self.status == 401 and own_user.status == 401
    causes = [e.cause for e in _events(server, HandshakeRejected) if e.station == "CP-1"][-2:]
    assert causes == ["username_mismatch", "wrong_password"]
    assert before == after


def test_disabled_station_is_refused_once_it_proved_its_identity(server: RunningServer) -> None:
    assert_refused(
        attempt(server, "CP-OFF", password="not-the-password-at-all"),
        server,
        "CP-OFF",
        "wrong_password",
    )
    assert_refused(attempt(server, "CP-OFF", password=PASSWORD), server, "CP-OFF", "disabled")


# -- profile 2 -------------------------------------------------------------------------------


def test_sp2_needs_tls_and_its_password(server: RunningServer, pki: Pki) -> None:
    assert_refused(attempt(server, "CP-2", password=PASSWORD), server, "CP-2", "tls_required")
    assert_refused(
        attempt(server, "CP-2", secure=True, context=pki.client(), password="nope-nope-nope-nope"),
        server,
        "CP-2",
        "wrong_password",
    )
    assert (
        attempt(server, "CP-2", secure=True, context=pki.client(), password=PASSWORD).status == 101
    )
    opened = last_session(server, "CP-2")
    assert (opened.auth, opened.profile, opened.credential) == ("basic", 2, "current")


def test_tls_speaks_only_ocpps_tls12_cipher_suites(server: RunningServer, pki: Pki) -> None:
    """A TLS 1.2 client offering only a suite OCPP does not list gets no connection; one
    offering an OCPP suite does."""
    outside = pki.client()
    outside.maximum_version = ssl.TLSVersion.TLSv1_2
    outside.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
    with pytest.raises((ssl.SSLError, OSError)):
        attempt(server, "CP-2", secure=True, context=outside, password=PASSWORD)
    listed = pki.client()
    listed.maximum_version = ssl.TLSVersion.TLSv1_2
    listed.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    assert attempt(server, "CP-2", secure=True, context=listed, password=PASSWORD).status == 101


# -- profile 3 -------------------------------------------------------------------------------


def test_sp3_client_certificate_naming_the_station(server: RunningServer, pki: Pki) -> None:
    context = pki.client("CP-3")
    assert attempt(server, "CP-3", secure=True, context=context).status == 101
    opened = last_session(server, "CP-3")
    assert (opened.auth, opened.profile, opened.credential) == ("client-certificate", 3, "")
    assert opened.tls_fingerprint is not None and len(opened.tls_fingerprint) == 64


def test_sp3_certificate_of_another_station_is_refused(server: RunningServer, pki: Pki) -> None:
    """A certificate from the operator CA that names CP-9 claims nothing as CP-3."""
    outcome = attempt(server, "CP-3", secure=True, context=pki.client("CP-9"))
    assert_refused(outcome, server, "CP-3", "cn_mismatch")
    assert "CP-9" in last_refusal(server, "CP-3").reason
    assert last_refusal(server, "CP-3").tls_fingerprint is not None
    assert_refused(
        attempt(server, "CP-3", secure=True, context=pki.client()),
        server,
        "CP-3",
        "no_client_certificate",
    )


def test_certificate_from_another_ca_fails_the_tls_handshake_recorded(
    server: RunningServer, pki: Pki
) -> None:
    rogue = trustme.CA()
    with pytest.raises((ssl.SSLError, OSError, websockets.exceptions.InvalidMessage)):
        attempt(server, "CP-3", secure=True, context=pki.client("CP-3", ca=rogue))
    failed = wait_for(
        lambda: [
            e for e in _events(server, HandshakeRejected) if e.cause == "tls_handshake_failed"
        ],
        what="the failed TLS handshake recorded",
    )
    assert failed[-1].reason.startswith("TLS handshake failed")


# -- metrics ---------------------------------------------------------------------------------


def test_refusals_are_counted_in_the_metrics_by_cause(server: RunningServer) -> None:
    assert server.csms is not None
    attempt(server, "CP-1", password="not-the-password-at-all")
    text = httpx.get(f"http://127.0.0.1:{server.csms.api_port}/metrics", timeout=10).text
    recorded = sum(1 for e in _events(server, HandshakeRejected) if e.cause == "wrong_password")
    assert f'chargeledger_handshake_refusals_total{{cause="wrong_password"}} {recorded}.0' in text


# -- a charge point nobody here wrote, over wss:// -------------------------------------------


def test_ocpp_charge_point_over_wss_with_basic_auth(server: RunningServer, pki: Pki) -> None:
    async def scenario() -> str:
        ws = await websockets.connect(
            _url(server, "CP-2", True),
            subprotocols=[websockets.Subprotocol("ocpp1.6")],
            additional_headers=_basic("CP-2", PASSWORD),
            ssl=pki.client(),
        )
        cp = test_e2e_v16.Station("CP-2", ws)
        task = asyncio.create_task(cp.start())
        try:
            boot = await cp.call(
                call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
            return str(boot.status)
        finally:
            task.cancel()
            await ws.close()

    assert asyncio.run(scenario()) == "Accepted"


# -- rotation and upgrade --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_password_rotation_never_locks_the_station_out(
    server: RunningServer, pki: Pki, protocol: str
) -> None:
    """The station takes the generated password (1.6 AuthorizationKey, 2.0.1
    SecurityCtrlr.BasicAuthPassword); until it connects with it, old and new both work; from
    then on only the new one. Only hashes are in the registry's and the command's events."""
    assert server.csms is not None
    csms = server.csms
    station = f"CP-ROT-{protocol}"
    server.run(partial(csms.register_station, station, profile=2))
    server.run(partial(csms.set_station_password, station, PASSWORD))
    context = pki.client()

    async def rotate() -> tuple[str, str]:
        ws = await websockets.connect(
            _url(server, station, True),
            subprotocols=[websockets.Subprotocol(protocol)],
            additional_headers=_basic(station, PASSWORD),
            ssl=context,
        )
        cp: Any
        if protocol == "ocpp1.6":
            cp = test_e2e_v16.Station(station, ws)
        else:
            cp = test_e2e_v201.Station(station, ws)
        task = asyncio.create_task(cp.start())
        try:
            result = await server.arun(partial(csms.change_station_password, station))
            assert result.accepted, result
            if protocol == "ocpp1.6":
                taken = cp.configuration["AuthorizationKey"]
            else:
                taken = cp.variables[("SecurityCtrlr", "BasicAuthPassword")]
            return str(result.values["password"]), taken
        finally:
            task.cancel()
            await ws.close()

    new, taken = asyncio.run(rotate())
    check_password(new)
    assert taken == new
    registration = csms.views.registry.get(station)
    assert registration is not None and registration.password_pending
    # Before the station used the new one: both work (the old one as often as needed).
    assert attempt(server, station, secure=True, context=context, password=PASSWORD).status == 101
    assert last_session(server, station).credential == "current"
    assert attempt(server, station, secure=True, context=context, password=new).status == 101
    assert last_session(server, station).credential == "pending"
    eventually_promoted = wait_for(
        lambda: not csms.views.registry.get(station).password_pending,  # type: ignore[union-attr]
        what="the new password promoted",
    )
    assert eventually_promoted
    assert_refused(
        attempt(server, station, secure=True, context=context, password=PASSWORD),
        server,
        station,
        "wrong_password",
    )
    assert attempt(server, station, secure=True, context=context, password=new).status == 101
    # Each step is recorded; the passwords themselves only where the station had to get one.
    requested = [e for e in _events(server, CommandRequested) if e.station == station]
    assert [e.command for e in requested] == ["change_station_password"]
    assert "password" not in requested[0].payload
    assert verify_password(requested[0].payload["password_hash"], new)
    set_events = [e for e in _events(server, StationPasswordSet) if e.station == station]
    assert set_events and all(PASSWORD not in msgspec.json.encode(e).decode() for e in set_events)
    sent = [e.text for e in _events(server, FrameLogged) if e.station == station and new in e.text]
    assert len(sent) == 1, "the new key went out once, in the recorded ChangeConfiguration"


def test_profile_upgrade_raises_the_registered_profile_once_met(
    server: RunningServer, pki: Pki
) -> None:
    """SP1 -> SP2: ChangeConfiguration SecurityProfile=2 is recorded as pending; the station's
    next connection over TLS raises its registration to 2, after which plain ws is refused."""
    assert server.csms is not None
    csms = server.csms
    server.run(partial(csms.register_station, "CP-UP", profile=1))
    server.run(partial(csms.set_station_password, "CP-UP", PASSWORD))

    async def upgrade() -> dict[str, str]:
        ws = await websockets.connect(
            _url(server, "CP-UP", False),
            subprotocols=[websockets.Subprotocol("ocpp1.6")],
            additional_headers=_basic("CP-UP", PASSWORD),
        )
        cp = test_e2e_v16.Station("CP-UP", ws)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            result = await server.arun(partial(csms.set_security_profile, "CP-UP", 2))
            assert result.accepted, result
            return cp.configuration
        finally:
            task.cancel()
            await ws.close()

    assert asyncio.run(upgrade())["SecurityProfile"] == "2"
    registration = csms.views.registry.get("CP-UP")
    assert registration is not None and (registration.profile, registration.profile_pending) == (
        1,
        2,
    )
    # Still SP1 until it comes back meeting SP2.
    assert attempt(server, "CP-UP", password=PASSWORD).status == 101
    assert (
        attempt(server, "CP-UP", secure=True, context=pki.client(), password=PASSWORD).status == 101
    )
    wait_for(
        lambda: csms.views.registry.get("CP-UP").profile == 2,  # type: ignore[union-attr]
        what="the registered profile raised to 2",
    )
    assert_refused(attempt(server, "CP-UP", password=PASSWORD), server, "CP-UP", "tls_required")


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_registers_with_a_generated_password_shown_once(server: RunningServer) -> None:
    assert server.csms is not None
    api = f"http://127.0.0.1:{server.csms.api_port}"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargeledger.core.cli",
            "station",
            "register",
            "CP-CLI",
            "--profile",
            "1",
            "--generate-password",
            "--api",
            api,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    line = next(x for x in completed.stdout.splitlines() if x.startswith("password"))
    password = line.rsplit(" ", 1)[1]
    check_password(password)
    assert attempt(server, "CP-CLI", password=password).status == 101
    assert_refused(attempt(server, "CP-CLI", password=PASSWORD), server, "CP-CLI", "wrong_password")
    gone = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargeledger.core.cli",
            "station",
            "deregister",
            "CP-CLI",
            "--api",
            api,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gone.returncode == 0, gone.stderr
    assert_refused(
        attempt(server, "CP-CLI", password=password), server, "CP-CLI", "unknown_station"
    )


# -- settings and the pure decision ----------------------------------------------------------


def test_registration_policy_defaults_and_the_insecure_rule() -> None:
    assert Settings(host="127.0.0.1").registration == "open"
    assert Settings(host="0.0.0.0").registration == "registered_only"
    with pytest.raises(ValueError, match="allow_insecure"):
        Settings(host="0.0.0.0", registration="open")
    assert Settings(host="0.0.0.0", registration="open", allow_insecure=True).allow_insecure
    with pytest.raises(ValueError, match="allow_insecure"):
        load_settings(environ={}, host="0.0.0.0", registration="open")


def test_serve_refuses_an_open_non_loopback_gateway(tmp_path: Path) -> None:
    config = tmp_path / "open.toml"
    config.write_text('registration = "open"\n')
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargeledger.core.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--store",
            "memory://",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "allow_insecure = true / --allow-insecure" in completed.stderr


def test_passwords_are_hashed_slowly_and_checked_strictly() -> None:
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD) and not verify_password(hashed, PASSWORD + "x")
    assert not verify_password("not a hash", PASSWORD)
    for bad in ("short", "x" * 41, "has a space in it here"):
        with pytest.raises(ValueError):
            check_password(bad)
    generated = generate_password()
    assert len(generated) == 40 and int(generated, 16) >= 0


def test_a_wrong_password_is_never_ignored_even_on_profile_0() -> None:
    decide = partial(
        admit,
        "CP-0",
        registered=True,
        profile=0,
        enabled=True,
        open_registration=False,
        verify=lambda hashed, password: hashed == password,
    )
    wrong = Transport(username="CP-0", password="wrong")
    assert decide(wrong, credentials=Credentials(current="right")).cause == "wrong_password"  # type: ignore[union-attr]
    assert decide(wrong, credentials=Credentials()).auth == "none"  # type: ignore[union-attr]
    assert decide(Transport(), credentials=Credentials(current="right")).auth == "none"  # type: ignore[union-attr]


def test_forwarded_tls_facts_only_from_a_trusted_proxy(pki: Pki) -> None:
    cert = pki.ca.issue_cert("CP-3", common_name="CP-3")
    pem = cert.cert_chain_pems[0].bytes().decode()
    headers = [
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Client-Cert", quote(pem).encode()),
        *[(k.encode(), v.encode()) for k, v in _basic("CP-3", PASSWORD).items()],
    ]
    settings = Settings(trusted_proxies=["10.0.0.0/8"], client_cert_header="X-Client-Cert")
    trusted = transport_of(headers, "10.1.2.3", None, False, settings)
    assert trusted.tls and trusted.common_name == "CP-3"
    assert trusted.fingerprint == hashlib.sha256(trusted.certificate or b"").hexdigest()
    assert (trusted.username, trusted.password) == ("CP-3", PASSWORD)
    stranger = transport_of(headers, "192.0.2.7", None, False, settings)
    assert not stranger.tls and stranger.certificate is None
    assert not transport_of(headers, "10.1.2.3", None, False, Settings()).tls


def test_open_policy_and_a_trusted_proxy(pki: Pki) -> None:
    """On loopback (``open``) an unknown station connects unauthenticated, as before the
    registry; a registered one must still meet its profile. Behind a trusted proxy (here,
    loopback itself) the forwarded TLS facts and client certificate count for profile 3."""
    settings = Settings(
        port=0,
        store="memory://",
        trusted_proxies=["127.0.0.1/32"],
        client_cert_header="X-SSL-Client-Cert",
    )
    assert settings.registration == "open"
    pem = pki.ca.issue_cert("CP-P3", common_name="CP-P3").cert_chain_pems[0].bytes().decode()
    forwarded = {"X-Forwarded-Proto": "https", "X-SSL-Client-Cert": quote(pem)}

    async def connect(station: str, headers: dict[str, str]) -> int:
        try:
            ws = await websockets.connect(
                _url(server, station, False),
                subprotocols=[websockets.Subprotocol("ocpp1.6")],
                additional_headers=headers,
            )
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        await ws.close()
        return 101

    with running_server(settings) as server:
        assert server.csms is not None
        csms = server.csms
        server.run(partial(csms.register_station, "CP-P1", profile=1))
        server.run(partial(csms.set_station_password, "CP-P1", PASSWORD))
        server.run(partial(csms.register_station, "CP-P3", profile=3))
        assert asyncio.run(connect("CP-STRANGER", {})) == 101
        assert last_session(server, "CP-STRANGER").auth == "none"
        assert asyncio.run(connect("CP-P1", {})) == 401
        assert last_refusal(server, "CP-P1").cause == "no_credentials"
        assert asyncio.run(connect("CP-P1", _basic("CP-P1", PASSWORD))) == 101
        assert asyncio.run(connect("CP-P3", {})) == 401
        assert last_refusal(server, "CP-P3").cause == "tls_required"
        assert asyncio.run(connect("CP-P3", forwarded)) == 101
        opened = last_session(server, "CP-P3")
        assert (opened.auth, opened.profile) == ("client-certificate", 3)
        assert asyncio.run(connect("CP-P1", forwarded)) == 401  # CP-P3's certificate
        assert last_refusal(server, "CP-P1").cause == "cn_mismatch"
        registration = csms.views.registry.get("CP-P1")
        detail = msgspec.json.encode(registration).decode()
        assert "argon2" not in detail and PASSWORD not in detail


def test_a_password_is_set_only_through_its_use_case(server: RunningServer) -> None:
    """Message mode or a generic configuration use case that would set the password is
    refused before anything is recorded: it would record the password in clear and lock
    the station out at its next connection."""
    assert server.csms is not None
    csms = server.csms
    before = len(_events(server, CommandRequested))
    attempts = [
        partial(
            csms.call, "CP-1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": PASSWORD}
        ),
        partial(csms.change_configuration, "CP-1", "AuthorizationKey", PASSWORD),
        partial(csms.set_variables, "CP-1", {"SecurityCtrlr.BasicAuthPassword": PASSWORD}),
    ]
    for attempt_ in attempts:
        with pytest.raises(PermissionError, match="change_station_password"):
            server.run(attempt_)
    assert len(_events(server, CommandRequested)) == before


def test_registration_api_checks_profile_and_password(server: RunningServer) -> None:
    """Through the HTTP API: an impossible profile or a password of the wrong length is 400
    and recorded nothing; a password for a station that is not registered is 404; the
    registration shown never holds a hash."""
    assert server.csms is not None
    base = f"http://127.0.0.1:{server.csms.api_port}/api/stations"
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.put("/CP-API/registration", json={"profile": 4}).status_code == 400
        assert http.post("/CP-NONE/password", json={}).status_code == 404
        assert http.put("/CP-API/registration", json={"profile": 2}).status_code == 200
        assert http.post("/CP-API/password", json={"password": "short"}).status_code == 400
        generated = http.post("/CP-API/password", json={})
        assert generated.status_code == 200
        check_password(generated.json()["password"])
        shown = http.get("/CP-API").json()["registration"]
    assert (shown["profile"], shown["has_password"], shown["password_pending"]) == (2, True, False)
    assert "argon2" not in json.dumps(shown)
    assert len([e for e in _events(server, StationPasswordSet) if e.station == "CP-API"]) == 1


def test_rotation_for_an_offline_station_records_nothing(server: RunningServer) -> None:
    """The recorded hash would make the password valid at once: never for a station that
    cannot be sent it."""
    assert server.csms is not None
    csms = server.csms
    server.run(partial(csms.register_station, "CP-AWAY", profile=1))
    with pytest.raises(StationOffline):
        server.run(partial(csms.change_station_password, "CP-AWAY", OTHER_PASSWORD))
    assert not [e for e in _events(server, CommandRequested) if e.station == "CP-AWAY"]
    registration = csms.views.registry.get("CP-AWAY")
    assert registration is not None and not registration.password_pending


class RefusingStation(test_e2e_v16.Station):
    """A 1.6 station that refuses to change its AuthorizationKey."""

    @on(Action16.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> Any:
        return call_result16.ChangeConfiguration(status="Rejected")


def test_a_refused_rotation_drops_the_pending_password(server: RunningServer) -> None:
    """The station kept its password: the new one, recorded as pending before the CALL, stops
    being accepted once the refusal is committed; the old one goes on working."""
    assert server.csms is not None
    csms = server.csms
    server.run(partial(csms.register_station, "CP-NO", profile=1))
    server.run(partial(csms.set_station_password, "CP-NO", PASSWORD))

    async def rotate() -> tuple[bool, str]:
        ws = await websockets.connect(
            _url(server, "CP-NO", False),
            subprotocols=[websockets.Subprotocol("ocpp1.6")],
            additional_headers=_basic("CP-NO", PASSWORD),
        )
        cp = RefusingStation("CP-NO", ws)
        task = asyncio.create_task(cp.start())
        try:
            result = await server.arun(partial(csms.change_station_password, "CP-NO"))
            return result.accepted, str(result.values["password"])
        finally:
            task.cancel()
            await ws.close()

    accepted, new = asyncio.run(rotate())
    assert not accepted
    wait_for(
        lambda: not csms.views.registry.get("CP-NO").password_pending,  # type: ignore[union-attr]
        what="the pending password dropped",
    )
    assert_refused(attempt(server, "CP-NO", password=new), server, "CP-NO", "wrong_password")
    assert attempt(server, "CP-NO", password=PASSWORD).status == 101
