"""Simulated stations answer the CSMS as real ones do (core/simulator/responder.py), in both
versions, against a real ChargeLedger; the progress line; and docs/simulator.md's remote
start walkthrough, run line for line."""

from __future__ import annotations

import io
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from chargeledger.core.frames import Call, parse_frame, validate_request, validate_response
from chargeledger.core.settings import Settings
from chargeledger.core.simulator import OptionError, Options, Report, simulate
from chargeledger.core.simulator.frames import frames_for
from chargeledger.core.simulator.responder import Responder
from chargeledger.core.usecases import (
    ChangeConfigurationArgs,
    ClearCacheArgs,
    DataTransferArgs,
    ReadConfigurationArgs,
    RemoteStartArgs,
    RemoteStopArgs,
    ResetArgs,
    TriggerMessageArgs,
    UnlockConnectorArgs,
)
from chargeledger.projections import StationState, TransactionState
from chargeledger.schemas import OCPP16, OCPP201, actions, request_type
from tests.harness import RunningServer, running_server
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[1]

# -- the answers, without a CSMS ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_remote_start_frames_are_valid(protocol: str) -> None:
    frames = frames_for(protocol, "TAG-1", random.Random(1))
    started = frames.remote_start_transaction(b"m1", 'ta"g\\', "Central", 42)
    if protocol == OCPP16:
        assert frames.check_answer("remote_start_transaction", {"transactionId": 9}) is None
    sent = [started, frames.meter_values(b"m2")]
    for why in ("remote", "reset", "local"):
        sent.append(frames.stop_transaction(b"m3", why))
        if why != "local":
            sent.append(frames.start_transaction(b"m4"))
            if protocol == OCPP16:
                frames.check_answer("start_transaction", {"transactionId": 10})
    for action, text in sent:
        frame = parse_frame(text.decode(), protocol)
        assert isinstance(frame, Call) and frame.action == action
        validate_request(protocol, action, frame.payload)
    first = parse_frame(started[1].decode(), protocol)
    assert isinstance(first, Call)
    if protocol == OCPP16:
        assert first.payload["idTag"] == 'ta"g\\'
    else:
        assert first.payload["triggerReason"] == "RemoteStart"
        assert first.payload["transactionInfo"]["remoteStartId"] == 42
        assert first.payload["idToken"] == {"idToken": 'ta"g\\', "type": "Central"}


def _minimal(info: msgspec.inspect.Type) -> Any:
    """The smallest value of a type: required fields only, first choices, one list item."""
    inspect = msgspec.inspect
    if isinstance(info, inspect.StructType):
        return {f.encode_name: _minimal(f.type) for f in info.fields if f.required}
    if isinstance(info, inspect.UnionType):
        return _minimal(info.types[0])
    if isinstance(info, inspect.LiteralType):
        return info.values[0]
    if isinstance(info, inspect.ListType):
        return [_minimal(info.item_type)] if info.min_length else []
    if isinstance(info, inspect.StrType):
        return "x" * (info.min_length or 1)
    if isinstance(info, inspect.IntType):
        return max(1, info.ge or 0)
    if isinstance(info, inspect.FloatType):
        return 1.0
    if isinstance(info, inspect.BoolType):
        return False
    return {}


def _sample(protocol: str, action: str) -> dict[str, Any] | None:
    """A valid request of ``action`` made of its required fields (None when that is not
    valid, a pattern say)."""
    kind = request_type(protocol, action)
    assert kind is not None
    try:
        payload = _minimal(msgspec.inspect.type_info(kind))
        validate_request(protocol, action, payload)
    except Exception:
        return None
    return dict(payload)


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_every_answer_is_valid_and_no_known_action_is_not_implemented(protocol: str) -> None:
    """Whatever the CSMS sends, the answer is a CALLRESULT valid for the action, or a CALLERROR
    ``NotSupported``; ``NotImplemented`` only for what the version does not define."""
    answered = 0
    for action in sorted(actions(protocol)):
        responder = Responder(protocol, frames_for(protocol, "T", random.Random(1)))
        payload = _sample(protocol, action)
        if payload is None:
            continue
        text, _ = responder.answer("id", action, payload)
        frame = msgspec.json.decode(text)
        if frame[0] == 3:
            validate_response(protocol, action, frame[2])
            answered += 1
        else:
            assert frame[:3] == [4, "id", "NotSupported"], (action, frame)
    assert answered > 15
    responder = Responder(protocol, frames_for(protocol, "T", random.Random(1)))
    text, follow = responder.answer("x", "MakeCoffee", {})
    assert msgspec.json.decode(text)[:3] == [4, "x", "NotImplemented"] and follow == []


# -- against ChargeLedger ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    store = f"sqlite:///{tmp_path_factory.mktemp('remote') / 'events.db'}"
    with running_server(Settings(port=0, store=store, node="remote-test")) as running:
        yield running


def _station(server: RunningServer, station: str) -> StationState | None:
    assert server.csms is not None
    return server.csms.views.stations.get(station)


def _transactions(server: RunningServer, station: str) -> list[TransactionState]:
    assert server.csms is not None
    return [t for t in server.csms.views.transactions.all() if t.station == station]


def _run(server: RunningServer, station: str, args: Any) -> Any:
    assert server.csms is not None
    return server.run(server.csms.run, station, args)


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_stations_do_what_the_csms_asks(server: RunningServer, protocol: str) -> None:
    prefix = f"RC{protocol[-3:]}-"
    station = f"{prefix}00000"
    reports: list[Report] = []
    options = Options(url=server.url, stations=1, protocol=protocol, hold=25, id_prefix=prefix)
    runner = threading.Thread(target=lambda: reports.append(simulate(options)))
    runner.start()
    try:
        wait_for(
            lambda: (state := _station(server, station)) and state.boot and state.connected,
            what="the station booted",
        )
        # Configuration: read, change, read back; read-only and unknown keys refused.
        key = (
            "MeterValueSampleInterval"
            if protocol == OCPP16
            else "SampledDataCtrlr.TxUpdatedInterval"
        )
        read = _run(server, station, ReadConfigurationArgs(keys=[key]))
        assert read.accepted and read.values == {key: "10"}
        changed = _run(server, station, ChangeConfigurationArgs(key=key, value="1"))
        assert changed.accepted and changed.status == "Accepted"
        assert _run(server, station, ReadConfigurationArgs(keys=[key])).values == {key: "1"}
        assert _run(server, station, ChangeConfigurationArgs(key=key, value="soon")).status == (
            "Rejected"
        )
        unknown = _run(server, station, ReadConfigurationArgs(keys=[key, "Nope.Nothing"]))
        assert unknown.status == "PartiallyUnknown" and unknown.values == {key: "1"}
        if protocol == OCPP201:  # without keys: GetBaseReport, then NotifyReport
            everything = _run(server, station, ReadConfigurationArgs())
            assert everything.accepted and everything.values[key] == "1"

        # Remote start: a transaction for that token, with meter values every second now.
        started = _run(server, station, RemoteStartArgs(id_token="04A2B3C4"))
        assert started.accepted and started.status == "Accepted"
        (transaction,) = wait_for(
            lambda: [t for t in _transactions(server, station) if (t.energy_wh or 0) > 0],
            what="the remotely started transaction with meter values",
        )
        assert transaction.status == "active" and transaction.id_tag == "04A2B3C4"
        again = _run(server, station, RemoteStartArgs(id_token="04A2B3C4"))
        assert again.status == "Rejected", "one connector, already charging"

        # Trigger: a StatusNotification arrives (Charging / Occupied).
        trigger = _run(server, station, TriggerMessageArgs(message="StatusNotification"))
        assert trigger.accepted
        charging = "Charging" if protocol == OCPP16 else "Occupied"
        wait_for(
            lambda: any(
                c.status == charging
                for evse in (_station(server, station) or StationState(station="")).evses.values()
                for c in evse.values()
            ),
            what=f"the triggered StatusNotification {charging}",
        )

        # Others: refused as a station does, never NotImplemented.
        assert _run(server, station, ClearCacheArgs()).status == "Accepted"
        assert _run(server, station, DataTransferArgs(vendor_id="X")).status == "UnknownVendorId"
        if protocol == OCPP16:
            assert _run(server, station, UnlockConnectorArgs(connector_id=1)).status == (
                "NotSupported"
            )

        # Remote stop, then a reset: the station reconnects and boots again.
        stopped = _run(server, station, RemoteStopArgs(transaction_id=transaction.transaction_id))
        assert stopped.accepted
        wait_for(
            lambda: _transactions(server, station)[0].status == "ended", what="the remote stop"
        )
        session = (_station(server, station) or StationState(station="")).session
        assert _run(server, station, ResetArgs(kind="hard")).accepted
        wait_for(
            lambda: (
                (state := _station(server, station))
                and state.connected
                and state.session != session
                and state.boot is not None
            ),
            what="a new session after the reset",
        )
    finally:
        runner.join(60)
    (report,) = reports
    assert report.ok, report.failures
    assert report.counts["csms_calls"] >= 12
    assert report.counts["transactions"] == 1
    assert report.counts["connections"] == 2, "connected again after the reset"
    (ended,) = _transactions(server, station)
    assert ended.status == "ended" and ended.completeness == "complete"


# -- the progress line -------------------------------------------------------------------------

_SIMULATE = (sys.executable, "-m", "chargeledger.core.cli", "simulate")
_EVERY_HALF_SECOND = ("--progress-every", "0.5", "--id-prefix", "PROG-")


def test_progress_lines_when_not_a_terminal(server: RunningServer) -> None:
    done = subprocess.run(
        [*_SIMULATE, server.url, "-n", "3", "--hold", "2.5", *_EVERY_HALF_SECOND, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    pattern = re.compile(
        r"(setup|measure|hold|teardown) +[\d.]+ s: (\d)/3 stations connected, [\d,]+ calls/s, "
        r"(\d+) answered, 0 errors, \d+ CSMS calls"
    )
    matched = [pattern.fullmatch(line) for line in lines]
    assert len(lines) >= 4 and all(matched), lines
    assert any(m and m.group(1) == "hold" and m.group(2) == "3" for m in matched)
    assert "\r" not in done.stderr
    assert msgspec.json.decode(done.stdout)["ok"] is True, "stdout keeps the report alone"


def test_progress_line_rewritten_on_a_terminal(server: RunningServer) -> None:
    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            [*_SIMULATE, server.url, "-n", "2", "--hold", "3", "--id-prefix", "TTY-", "--json"],
            stderr=follower,
            stdout=subprocess.PIPE,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is closed once everything was read
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert done.returncode == 0
    text = output.decode().replace("\r\n", "\n")  # the terminal's own line ends
    updates = text.split("\r")[1:]
    assert len(updates) >= 2, text
    assert all("stations connected" in update for update in updates)
    assert text.endswith("\n") and text.count("\n") == 1, "one line, rewritten, then ended"


# -- docs/simulator.md -------------------------------------------------------------------------


def _walkthrough() -> str:
    text = (REPO / "docs" / "simulator.md").read_text()
    section = text.split("## Driving the simulated stations from the CSMS", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_documented_remote_start_succeeds(tmp_path: Path) -> None:
    """docs/simulator.md's lines in bash (``set -e``), ports made free ones; every command
    must succeed, and the log must show what the text says."""
    script = _walkthrough()
    assert "remote_start" in script and "remote_stop" in script
    ws, api = _free_port(), _free_port()
    script = script.replace("9000", str(ws)).replace("8080", str(api))
    bin_dir = str(Path(sys.executable).parent)
    process = subprocess.Popen(
        ["bash", "-e", "-c", "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + script],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=170)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"the walkthrough hung:\n{out}\n{err}") from None
    assert process.returncode == 0, f"{out}\n{err}"
    assert '"action": "RemoteStartTransaction"' in out and '"status": "Accepted"' in out
    assert '"MeterValueSampleInterval": "10"' in out
    assert re.search(r"^\d+ +SIM-00000 +active", out, re.MULTILINE)
    ended = re.search(r"^\d+ +SIM-00000 +ended +complete +energy_wh=([\d.]+)", out, re.MULTILINE)
    assert ended is not None and float(ended.group(1)) > 0, out
    assert out.count("SessionOpened") == 2 and "SessionClosed" in out


def test_progress_of_several_processes(server: RunningServer) -> None:
    """With ``--processes`` the line adds up every process's stations."""
    out = io.StringIO()
    options = Options(url=server.url, stations=4, processes=2, hold=1.5, id_prefix="MP-")
    report = simulate(options, progress=out, progress_every=0.3)
    assert report.ok, report.failures
    lines = out.getvalue().splitlines()
    assert any("4/4 stations connected" in line for line in lines), lines
    with pytest.raises(OptionError, match="--progress-every"):
        simulate(options, progress=out, progress_every=0)
