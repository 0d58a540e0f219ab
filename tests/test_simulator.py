"""The station simulator: its frames against the official schemas, its safety checks, every
scenario against a real ChargeLedger, and CSMSs that fail in each way it must report."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from chargeledger.core.cli import main
from chargeledger.core.frames import Call, parse_frame, validate_request
from chargeledger.core.settings import Settings
from chargeledger.core.simulator import OptionError, Options, Report, format_report, simulate
from chargeledger.core.simulator.frames import frames_for
from chargeledger.core.simulator.runner import check_target
from chargeledger.core.simulator.websocket import _accept_key, _client_frame, _mask
from chargeledger.schemas import OCPP16, OCPP201
from tests.harness import RunningServer, running_server

# -- frames ------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_every_frame_is_valid_for_its_protocol(protocol: str) -> None:
    frames = frames_for(protocol, "TAG-1", random.Random(1))
    sent = [frames.boot(b"m1"), frames.heartbeat(b"m2"), frames.authorize(b"m3")]
    sent.append(frames.status_notification(b"m4", "Available"))
    sent.append(frames.start_transaction(b"m5"))
    if protocol == OCPP16:  # the CSMS names 1.6 transactions
        assert (
            frames.check_answer("start_transaction", {"transactionId": 7, "idTagInfo": {}}) is None
        )
    sent += [frames.meter_values(b"m6"), frames.meter_values(b"m7"), frames.stop_transaction(b"m8")]
    for action, text in sent:
        frame = parse_frame(text.decode(), protocol)
        assert isinstance(frame, Call) and frame.action == action
        validate_request(protocol, action, frame.payload)
    assert frames.transaction is None


def test_meter_values_are_three_phase_and_the_register_only_grows() -> None:
    frames = frames_for(OCPP16, "TAG-1", random.Random(1))
    frames.transaction = b"1"
    readings = []
    for message_id in (b"1", b"2"):
        payload = json.loads(frames.meter_values(message_id)[1])[3]
        sampled = payload["meterValue"][0]["sampledValue"]
        assert {v.get("phase") for v in sampled if v["measurand"] == "Current.Import"} == {
            "L1",
            "L2",
            "L3",
        }
        readings.append(int(sampled[0]["value"]))
    assert readings[1] >= readings[0]


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ({"status": "Accepted", "currentTime": "x", "interval": 1}, None),
        ({"status": "Pending", "currentTime": "x", "interval": 1}, "boot Pending"),
    ],
)
def test_boot_answers_are_read(answer: dict[str, Any], refusal: str | None) -> None:
    assert frames_for(OCPP201, "T", random.Random(1)).check_answer("boot", answer) == refusal


def test_websocket_framing() -> None:
    # RFC 6455 section 1.3's example key and answer.
    assert _accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    payload = b"x" * 300
    frame = _client_frame(0x1, payload)
    assert frame[0] == 0x81 and frame[1] == 0xFE and frame[2:4] == (300).to_bytes(2, "big")
    assert _mask(frame[8:], frame[4:8]) == payload


# -- options and safety --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:9/ocpp", "ws://localhost:9/ocpp", "ws://[::1]:9/ocpp"]
)
def test_loopback_targets_are_allowed(url: str) -> None:
    assert check_target(url, None).port == 9


def test_remote_targets_need_to_be_named() -> None:
    with pytest.raises(OptionError, match=r"--allow-remote 192\.0\.2\.7"):
        check_target("ws://192.0.2.7:9000/ocpp", None)
    with pytest.raises(OptionError):
        check_target("ws://192.0.2.7:9000/ocpp", "192.0.2.8")
    target = check_target("ws://192.0.2.7:9000/ocpp", "192.0.2.7")
    assert (target.address, target.path) == ("192.0.2.7", "/ocpp")
    with pytest.raises(OptionError, match="wss://"):
        check_target("http://127.0.0.1:9000/ocpp", None)
    assert check_target("wss://127.0.0.1/ocpp", None).port == 443
    with pytest.raises(OptionError, match="--allow-remote"):
        check_target("wss://192.0.2.7:9443/ocpp", None)


@pytest.mark.parametrize(
    "args",
    [
        ["--stations", "50001"],
        ["--duration", "3601"],
        ["--calls", "0"],
        ["--processes", "3", "--stations", "2"],
        ["--scenario", "steady", "--interval", "0"],
    ],
)
def test_options_out_of_bounds_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "ws://127.0.0.1:9/ocpp", *args]) == 2
    assert "chargeledger simulate:" in capsys.readouterr().err


def test_a_remote_host_is_refused_by_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "ws://192.0.2.7:9000/ocpp"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


# -- against ChargeLedger ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    store = f"sqlite:///{tmp_path_factory.mktemp('sim') / 'events.db'}"
    with running_server(Settings(port=0, store=store, node="sim-test")) as running:
        yield running


def run(server: RunningServer, scenario: str, **options: Any) -> Report:
    prefix = f"{scenario}-{options.pop('tag', '')}-"
    return simulate(
        Options(url=server.url, scenario=scenario, id_prefix=prefix, call_timeout=10, **options)
    )


def test_connect_storm(server: RunningServer) -> None:
    report = run(server, "connect-storm", stations=20, hold=0.2, server_pid=os.getpid())
    assert report.ok, report.failures
    assert report.measured["connections"] == report.measured["answered"] == 20
    assert report.actions["BootNotification"].count == 20
    assert report.connections_at_idle == 20
    assert report.server is not None and report.server.cpu_us_per_call is not None


def test_saturation_stops_at_the_call_limit(server: RunningServer) -> None:
    report = run(server, "saturation", stations=4, calls=60, duration=20)
    assert report.ok, report.failures
    assert report.measured["sent"] == report.measured["answered"] == 60
    assert report.actions["MeterValues"].count == 60
    # setup: boot + StartTransaction per station; teardown: StopTransaction per station.
    assert report.counts["sent"] == 60 + 3 * 4
    assert report.counts["transactions"] == 4
    assert report.measured_seconds < 10


def test_steady_load_keeps_its_rate(server: RunningServer) -> None:
    report = run(server, "steady", stations=5, interval=0.25, duration=1.5)
    assert report.ok, report.failures
    assert 20 <= report.measured["answered"] <= 35  # 5 stations x 6 samples
    assert report.latency is not None and report.latency.p99_ms < 1000


def test_transaction_cycles(server: RunningServer) -> None:
    report = run(server, "transaction-cycles", stations=3, calls=45, meter_values=1)
    assert report.ok, report.failures
    assert report.measured["sent"] == 45
    started = report.actions["StartTransaction"].count
    stopped = report.actions["StopTransaction"].count
    assert started >= 9 and stopped >= started - 3  # 4 CALLs a cycle; the last may be open
    assert report.counts["transactions"] == started  # teardown stops what was left open


def test_reconnect_storm(server: RunningServer) -> None:
    report = run(server, "reconnect-storm", stations=10)
    assert report.ok, report.failures
    assert report.counts["connections"] == 20 and report.measured["connections"] == 10
    assert report.actions["StatusNotification"].count == 10


def test_several_processes_share_the_stations_and_the_calls(server: RunningServer) -> None:
    report = run(server, "saturation", stations=4, calls=40, processes=2, server_pid=os.getpid())
    assert report.ok, report.failures
    assert report.measured["sent"] == report.measured["answered"] == 40
    assert report.counts["connections"] == 4
    assert report.server is not None and report.simulator_cpu_seconds > 0


def test_transaction_cycles_201(server: RunningServer) -> None:
    report = run(server, "transaction-cycles", stations=3, calls=24, protocol=OCPP201)
    assert report.ok, report.failures
    assert report.actions["TransactionEvent"].count >= 12


def test_the_command_prints_a_table_or_json(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["simulate", server.url, "-n", "3", "--id-prefix", "cli-", "--call-timeout", "10"]
    assert main(base) == 0
    table = capsys.readouterr().out
    assert "BootNotification" in table and table.rstrip().endswith("OK")
    assert main([*base, "--json", "-s", "saturation", "--calls", "9"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["measured"]["answered"] == 9
    assert {"sent", "answered", "call_errors", "timeouts", "connection_failures"} <= set(
        report["counts"]
    )
    assert report["simulator_cpu_seconds"] > 0 and report["latency"]["p50_ms"] > 0


# -- CSMSs that fail -------------------------------------------------------------------------------

Behaviour = Callable[[Any, list[Any]], Awaitable[None]]


@contextmanager
def fake_csms(behaviour: Behaviour, *, accept: bool = True) -> Iterator[str]:
    """A CSMS on its own thread and trio loop; ``behaviour(ws, frame)`` handles each frame."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def handler(request: WebSocketRequest) -> None:
        if not accept:
            await request.reject(403)
            return
        ws = await request.accept(subprotocol="ocpp1.6")
        with suppress(ConnectionClosed):
            while True:
                await behaviour(ws, json.loads(await ws.get_message()))

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
            state.update(
                port=listening.port,
                scope=nursery.cancel_scope,
                token=trio.lowlevel.current_trio_token(),
            )
            ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"ws://127.0.0.1:{state['port']}/ocpp"
    finally:
        trio.from_thread.run_sync(state["scope"].cancel, trio_token=state["token"])
        thread.join(10)


async def answer_with_callerror(ws: Any, frame: list[Any]) -> None:
    await ws.send_message(json.dumps([4, frame[1], "InternalError", "broken on purpose", {}]))


async def close_after_boot(ws: Any, frame: list[Any]) -> None:
    if frame[2] != "BootNotification":
        await ws.aclose(1011, "going down")
        return
    await ws.send_message(json.dumps([3, frame[1], {"status": "Accepted", "interval": 1}]))


async def never_answer(ws: Any, frame: list[Any]) -> None:
    pass


async def reject_boot(ws: Any, frame: list[Any]) -> None:
    await ws.send_message(json.dumps([3, frame[1], {"status": "Rejected", "interval": 1}]))


def simulate_json(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the command with ``--json``; its exit code and report."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with redirect_stdout(out):
        code = main(["simulate", url, "--json", "--call-timeout", "2", *args])
    out.seek(0)
    return code, json.loads(out.read())


def test_callerrors_are_counted_and_fail_the_run() -> None:
    with fake_csms(answer_with_callerror) as url:
        code, report = simulate_json(url, "-n", "3")
    assert code == 1 and not report["ok"]
    assert report["counts"]["call_errors"] == 3
    assert report["failures"] == {"BootNotification: CALLERROR InternalError": 3}


def test_a_csms_closing_connections_is_reported() -> None:
    with fake_csms(close_after_boot) as url:
        code, report = simulate_json(url, "-n", "3", "-s", "saturation", "--duration", "2")
    assert code == 1
    assert report["counts"]["connection_failures"] == 3
    assert any("closed by server: 1011" in reason for reason in report["failures"])


def test_unanswered_calls_time_out() -> None:
    with fake_csms(never_answer) as url:
        code, report = simulate_json(url, "-n", "2", "--call-timeout", "0.4")
    assert code == 1
    assert report["counts"]["timeouts"] == 2 and report["counts"]["answered"] == 0


def test_refused_handshakes_and_rejected_boots_are_reported() -> None:
    with fake_csms(never_answer, accept=False) as url:
        code, report = simulate_json(url, "-n", "2")
    assert code == 1 and report["counts"]["connection_failures"] == 2
    assert any("HTTP 403" in reason for reason in report["failures"]), report["failures"]
    with fake_csms(reject_boot) as url:
        code, report = simulate_json(url, "-n", "2", "-s", "steady", "--duration", "1")
    assert code == 1 and report["counts"]["rejected"] == 2
    assert report["measured"]["sent"] == 0  # refused stations do not charge


def test_nothing_listening_is_a_connection_failure() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    report = simulate(Options(url=f"ws://127.0.0.1:{port}/ocpp", stations=2))
    assert not report.ok and report.counts["connection_failures"] == 2
    assert "FAILED" in format_report(report)
