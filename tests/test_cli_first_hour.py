"""What a new operator meets in the read commands: ``events`` says what a command asked and
who asked, and ``--kind`` refuses a kind it does not know, listing the ones it does (the
same kinds the API accepts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chargeledger.core.audit.findings import FINDING_KINDS
from chargeledger.core.cli import main
from chargeledger.core.events import (
    EVENT_TYPES,
    CommandRequested,
    SessionOpened,
    command_stream,
    session_stream,
)
from chargeledger.core.store import open_store

REMOTE_START = {"use_case": "remote_start", "id_token": "TAG-1", "connector_id": 1}
DATA_TRANSFER = {"vendorId": "V", "data": "x" * 500}


def _command(
    request_id: str, key: str, role: str, mode: Any, command: str, payload: dict[str, Any]
) -> tuple[str, int, CommandRequested]:
    """A ``CommandRequested`` of station CP-1, a second after the session opened per id."""
    at = 1_700_000_000.0 + int(request_id[1:])
    return (
        command_stream(request_id),
        1,
        CommandRequested(
            request_id=request_id,
            station="CP-1",
            at=at,
            key=key,
            role=role,
            mode=mode,
            command=command,
            payload=payload,
        ),
    )


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cl.db'}"
    store = open_store(url)
    try:
        store.append(
            [
                (
                    session_stream("s1"),
                    1,
                    SessionOpened(
                        station="CP-1",
                        session="s1",
                        at=1_700_000_000.0,
                        protocol="ocpp1.6",
                        node="n",
                        remote="127.0.0.1",
                    ),
                ),
                _command("r1", "ops-desk", "operator", "use_case", "remote_start", REMOTE_START),
                _command("r2", "night-shift", "admin", "message", "DataTransfer", DATA_TRANSFER),
            ]
        )
    finally:
        store.close()
    return url


def test_events_say_what_a_command_asked_and_who(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store(tmp_path)
    assert main(["events", "--store", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "SessionOpened" in lines[0]
    assert lines[1].endswith(
        'CommandRequested      remote_start id_token="TAG-1" connector_id=1 by ops-desk (operator)'
    )
    assert "CP-1" in lines[1] and "2023-11-14T22:13:21.000000Z" in lines[1]
    message = lines[2].split("CommandRequested", 1)[1].strip()
    assert message.startswith('message DataTransfer vendorId="V" data="xxx')
    assert message.endswith("… by night-shift (admin)")
    assert len(message) < 200, "long arguments are cut; --json has them all"

    assert main(["events", "--store", url, "--kind", "CommandRequested", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "x" * 500 in out


@pytest.mark.parametrize(
    ("command", "known"),
    [(["events"], sorted(EVENT_TYPES)), (["audit"], list(FINDING_KINDS))],
)
def test_unknown_kinds_are_refused_with_the_list(
    tmp_path: Path, command: list[str], known: list[str]
) -> None:
    url = _store(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *command, "--store", url, "--kind", "Nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    error = done.stderr.splitlines()[-1]
    assert "argument --kind: invalid choice: 'Nope'" in error
    assert all(repr(kind) in error for kind in known)
    assert "Traceback" not in done.stderr
