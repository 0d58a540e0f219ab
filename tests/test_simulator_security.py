"""The simulator on every security profile against a real ChargeLedger with TLS on loopback
(certificates made here with ``trustme``): Basic passwords, ``wss://`` with a CA file, client
certificates, and the refusals it must count."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trustme

from chargeledger.core.cli import main
from chargeledger.core.events import HandshakeRejected
from chargeledger.core.settings import Settings, TlsSettings
from chargeledger.core.simulator import Options, Report, simulate
from tests.harness import RunningServer, running_server

PASSWORD = "simulated-station-pass-1"
REFUSED = "handshake refused: HTTP 401"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """The operator CA, the server's files, and client certificates for ``SP3-00000`` and
    ``SP3-00001`` in ``certs/`` (the ``--client-cert-dir`` layout); ``SP3-00002`` has none."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    (directory / "certs").mkdir()
    for station in ("SP3-00000", "SP3-00001"):
        cert = ca.issue_cert(station, common_name=station)
        cert.cert_chain_pems[0].write_to_path(str(directory / "certs" / f"{station}.pem"))
        cert.private_key_pem.write_to_path(str(directory / "certs" / f"{station}.key"))
    return ca, directory


@pytest.fixture(scope="module")
def server(
    pki: tuple[trustme.CA, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``ws://`` and ``wss://``, registered stations only: SP1-00000..2 on profile 1, SP2-00000..1
    on profile 2 (all with ``PASSWORD``), SP3-00000..2 on profile 3."""
    directory = pki[1]
    tls = TlsSettings(
        cert_file=str(directory / "server.pem"),
        key_file=str(directory / "server.key"),
        ca_file=str(directory / "ca.pem"),
        port=0,
    )
    store = f"sqlite:///{tmp_path_factory.mktemp('simsec') / 'events.db'}"
    settings = Settings(port=0, store=store, tls=tls, registration="registered_only")
    with running_server(settings) as running:
        csms = running.csms
        assert csms is not None
        for prefix, profile, count in (("SP1-", 1, 3), ("SP2-", 2, 2), ("SP3-", 3, 3)):
            for index in range(count):
                station = f"{prefix}{index:05d}"
                running.run(partial(csms.register_station, station, profile=profile))
                if profile < 3:
                    running.run(partial(csms.set_station_password, station, PASSWORD))
        yield running


def wss_url(server: RunningServer) -> str:
    assert server.csms is not None
    return f"wss://127.0.0.1:{server.csms.gateway.tls_port}/ocpp"


def run(url: str, prefix: str, **options: Any) -> Report:
    options = {"call_timeout": 10, "duration": 20, "stations": 2, **options}
    return simulate(Options(url=url, id_prefix=prefix, **options))


def refusals(server: RunningServer, prefix: str) -> list[str]:
    assert server.csms is not None
    return [
        record.event.cause
        for record in server.csms.store.iter_all()
        if isinstance(record.event, HandshakeRejected) and record.event.station.startswith(prefix)
    ]


def test_profile_1_right_password_boots(server: RunningServer) -> None:
    report = run(server.url, "SP1-", password=PASSWORD, hold=0.1)
    assert report.ok, report.failures
    assert report.measured["connections"] == report.actions["BootNotification"].count == 2
    assert report.connections_at_idle == 2


def test_profile_1_wrong_password_is_refused_and_counted(server: RunningServer) -> None:
    before = len(refusals(server, "SP1-"))
    report = run(server.url, "SP1-", password="not-the-password-at-all")
    assert not report.ok
    assert report.counts["connection_failures"] == 2 and report.counts["connections"] == 0
    assert report.failures == {REFUSED: 2}
    assert refusals(server, "SP1-")[before:] == ["wrong_password"] * 2


def test_per_station_passwords_from_a_file(server: RunningServer, tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text(
        f"# station password\nSP1-00001 {PASSWORD}\nSP1-00002 wrong-password-1234\n"
    )
    report = run(server.url, "SP1-", stations=3, passwords_file=str(passwords))
    # SP1-00000 is not in the file: it sends no credentials.
    assert report.counts["connections"] == 1 and report.counts["connection_failures"] == 2
    assert report.failures == {REFUSED: 2}
    assert sorted(refusals(server, "SP1-")[-2:]) == ["no_credentials", "wrong_password"]


def test_profile_2_over_wss_with_the_ca(server: RunningServer, pki: tuple[Any, Path]) -> None:
    ca_file = str(pki[1] / "ca.pem")
    report = run(
        wss_url(server), "SP2-", password=PASSWORD, ca_file=ca_file, scenario="saturation", calls=20
    )
    assert report.ok, report.failures
    assert report.measured["answered"] == 20 and report.counts["connections"] == 2
    # Without the CA the server's certificate is not trusted: the TLS handshake fails.
    untrusted = run(wss_url(server), "SP2-", password=PASSWORD)
    assert untrusted.counts["connection_failures"] == 2
    assert all("TLS: CERTIFICATE_VERIFY_FAILED" in reason for reason in untrusted.failures)
    # The right name is checked too: the certificate is for 127.0.0.1 and localhost.
    misnamed = run(
        wss_url(server), "SP2-", password=PASSWORD, ca_file=ca_file, server_name="csms.example"
    )
    assert misnamed.counts["connection_failures"] == 2
    # Over ws:// the right password is not enough for profile 2.
    plain = run(server.url, "SP2-", password=PASSWORD)
    assert plain.failures == {REFUSED: 2}
    assert refusals(server, "SP2-")[-2:] == ["tls_required"] * 2


def test_profile_3_with_client_certificates(
    server: RunningServer, pki: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = pki[1]
    base = ["simulate", wss_url(server), "--id-prefix", "SP3-", "--call-timeout", "10"]
    base += ["--ca-file", str(directory / "ca.pem"), "--client-cert-dir", str(directory / "certs")]
    assert main([*base, "-n", "2", "-s", "saturation", "--calls", "10"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")
    # SP3-00002 has no certificate in the directory: refused, counted, recorded.
    assert main([*base, "-n", "3"]) == 1
    assert REFUSED in capsys.readouterr().out
    assert refusals(server, "SP3-")[-1] == "no_client_certificate"
    # One station's certificate for every station: only that station gets in.
    report = run(
        wss_url(server),
        "SP3-",
        ca_file=str(directory / "ca.pem"),
        client_cert=str(directory / "certs" / "SP3-00000.pem"),
        client_key=str(directory / "certs" / "SP3-00000.key"),
    )
    assert report.counts["connections"] == 1 and report.failures == {REFUSED: 1}
    assert refusals(server, "SP3-")[-1] == "cn_mismatch"


@pytest.mark.parametrize(
    ("url", "args", "message"),
    [
        ("ws://127.0.0.1:9/ocpp", ["--ca-file", "ca.pem"], "only for wss://"),
        ("ws://127.0.0.1:9/ocpp", ["--passwords", "/nonexistent/passwords"], "--passwords"),
        ("wss://127.0.0.1:9/ocpp", ["--ca-file", "/nonexistent/ca.pem"], "TLS files"),
        ("wss://127.0.0.1:9/ocpp", ["--client-key", "k.pem"], "--client-key needs"),
        ("wss://192.0.2.7:9/ocpp", [], "--allow-remote"),
    ],
)
def test_bad_security_options_exit_2(
    url: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", url, *args]) == 2
    assert message in capsys.readouterr().err
