"""`chargeledger serve`'s start-up mistakes, as a user makes them: a real process, one line
naming the thing, exit status 2, no traceback, and nothing created (docs/operations.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.startup import failure_lines


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGELEDGER_")}
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", "serve", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _refused(tmp_path: Path, *args: str) -> str:
    """Run ``serve`` in ``tmp_path``; assert it refused cleanly and created nothing; its one
    line of error output."""
    before = sorted(tmp_path.rglob("*"))
    done = _serve(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("chargeledger serve: ")
    assert done.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before, "nothing is created by a refused start"
    return lines[0]


def test_port_in_use(tmp_path: Path, taken_port: int) -> None:
    line = _refused(tmp_path, "--port", str(taken_port), "--store", "sqlite:///cl.db")
    assert line.endswith(f"port {taken_port} on 127.0.0.1: address already in use")


def test_api_port_in_use(tmp_path: Path, taken_port: int) -> None:
    line = _refused(
        tmp_path, "--port", "0", "--api-port", str(taken_port), "--store", "sqlite:///cl.db"
    )
    assert line.endswith(f"api_port {taken_port} on 127.0.0.1: address already in use")


def test_address_not_of_this_machine(tmp_path: Path) -> None:
    line = _refused(
        tmp_path, "--host", "192.0.2.1", "--allow-insecure", "--port", "0", "--store", "memory://"
    )
    assert line.endswith("port 0 on 192.0.2.1: cannot assign requested address")


def test_same_port_twice(tmp_path: Path) -> None:
    line = _refused(tmp_path, "--port", "9999", "--api-port", "9999", "--store", "memory://")
    assert line.endswith("api_port 9999: already given as port")


@pytest.mark.parametrize(
    ("store", "said"),
    [
        ("foo://bar", "store: unsupported store URL 'foo://bar': expected memory://"),
        ("sqlite:///", "store: store URL 'sqlite:///' names no file"),
        ("postgresql://u@127.0.0.1/db?colour=red", "unknown store URL parameter(s) ['colour']"),
        ("sqlite:///missing/cl.db", "store sqlite:///missing/cl.db: the directory missing does"),
        ("sqlite:///sub", "store sqlite:///sub: sub is a directory, not a store file"),
        ("sqlite:///notes.txt", "store sqlite:///notes.txt: notes.txt is not an SQLite database"),
    ],
)
def test_store_malformed_or_unusable(tmp_path: Path, store: str, said: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("not a database\n")
    assert said in _refused(tmp_path, "--port", "0", "--store", store)


@pytest.mark.postgres
def test_postgresql_unreachable(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    line = _refused(tmp_path, "--port", "0", "--store", f"postgresql://postgres@127.0.0.1:{port}/x")
    assert f"store postgresql://postgres@127.0.0.1:{port}/x: cannot use the database" in line
    assert "Connection refused" in line


@pytest.mark.postgres
def test_postgresql_database_missing_password_hidden(tmp_path: Path) -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:5432/chargeledger_no_such_db"
    line = _refused(tmp_path, "--port", "0", "--store", url)
    assert 'database "chargeledger_no_such_db" does not exist' in line
    assert "hunter2" not in line and "postgres:***@" in line


def _tls_config(tmp_path: Path, cert: str, key: str) -> str:
    config = tmp_path / "tls.toml"
    config.write_text(f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n')
    return str(config)


def test_tls_file_missing(tmp_path: Path) -> None:
    authority = trustme.CA()
    authority.issue_cert("localhost").private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    config = _tls_config(tmp_path, "missing.pem", "key.pem")
    line = _refused(tmp_path, "--config", config, "--port", "0", "--store", "sqlite:///cl.db")
    assert line == "chargeledger serve: tls.cert_file missing.pem: No such file or directory"


def test_tls_file_not_a_certificate(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("hello\n")
    (tmp_path / "key.pem").write_text("hello\n")
    config = _tls_config(tmp_path, "cert.pem", "key.pem")
    line = _refused(tmp_path, "--config", config, "--port", "0", "--store", "sqlite:///cl.db")
    assert "tls: cert.pem / key.pem: not a PEM certificate chain and its private key" in line


def test_settings_file_missing(tmp_path: Path) -> None:
    line = _refused(tmp_path, "--config", "nope.toml", "--port", "0")
    assert line == "chargeledger serve: nope.toml: No such file or directory"


def test_several_mistakes_one_line_each(tmp_path: Path, taken_port: int) -> None:
    done = _serve(tmp_path, "--port", str(taken_port), "--store", "sqlite:///missing/cl.db")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"chargeledger serve: port {taken_port} on 127.0.0.1: address already in use",
        "chargeledger serve: store sqlite:///missing/cl.db: the directory missing does not exist",
    ]


def test_a_good_start_still_starts(tmp_path: Path) -> None:
    """The checks refuse nothing that works: the server starts and creates its store."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chargeledger.core.cli", "serve", "--port", "0"],
        cwd=tmp_path,
        env={**os.environ, "CHARGELEDGER_STORE": "sqlite:///cl.db"},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if "listening on ws://" in line:
                break
        assert (tmp_path / "cl.db").exists()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


Raise = Callable[[], BaseException]


@pytest.mark.parametrize(
    ("failure", "lines"),
    [
        (
            lambda: BaseExceptionGroup(
                "nursery", [ExceptionGroup("inner", [OSError(98, "Address already in use")])]
            ),
            ["Address already in use"],
        ),
        (
            lambda: StoreUnavailable("read on sqlite:///x failed:\n disk I/O error"),
            ["read on sqlite:///x failed: disk I/O error"],
        ),
        (lambda: ExceptionGroup("x", [ValueError("bad"), KeyError("bug")]), None),
        (lambda: RuntimeError("bug"), None),
    ],
)
def test_failures_after_the_checks(failure: Raise, lines: list[str] | None) -> None:
    """A failure raised by the start itself (after the checks) reads as lines too, unless
    any part of it is a bug, which keeps its traceback."""
    assert failure_lines(failure()) == lines


def test_version_and_help_without_markup() -> None:
    """``--version`` prints the installed version; help shows docstrings as plain text."""
    from importlib.metadata import version

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chargeledger.core.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    assert run("--version") == f"chargeledger {version('chargeledger')}\n"
    for command in ([], ["command"], ["tokens"], ["station"], ["lists"], ["audit"], ["serve"]):
        text = run(*command, "--help")
        assert "usage: chargeledger" in text
        assert "``" not in text and ":data:`" not in text, text
    assert "The chargeledger command: serve the CSMS" in run("--help")
