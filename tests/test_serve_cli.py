"""`chargeledger serve` as a user runs it: a real process, stopped by a signal."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import websockets

from tests.harness import chargeledger_cli
from tests.harness import serve_process as _start
from tests.polling import eventually


async def _station(port: int, answers: list[object]) -> None:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ocpp/SIG-1", subprotocols=["ocpp1.6"])
    await ws.send('[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
    answers.append(json.loads(await ws.recv()))
    for n in range(20):
        await ws.send(f'[2,"h{n}","Heartbeat",{{}}]')
        answers.append(json.loads(await ws.recv()))
    # Stay connected: the server is stopped under us.
    try:
        await asyncio.wait_for(ws.recv(), timeout=10)
    except websockets.ConnectionClosed as closed:
        answers.append(closed.rcvd.code if closed.rcvd else None)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_everything_committed(tmp_path: Path, sig: int) -> None:
    store = f"sqlite:///{tmp_path / 'sig.db'}"
    process, port = _start(store, env={"CHARGELEDGER_STORE": store})
    answers: list[object] = []

    async def scenario() -> None:
        task = asyncio.create_task(_station(port, answers))
        # Until the boot and 20 heartbeats are answered (or the station failed: awaited below).
        await eventually(lambda: len(answers) >= 21 or task.done(), what="21 answers")
        process.send_signal(sig)
        await task

    asyncio.run(scenario())
    assert process.wait(timeout=30) == 0
    assert process.stderr is not None
    assert "stopped; store closed" in process.stderr.read()
    # SIGINT stops at once: "going away"; SIGTERM drains: "service restart", reconnect.
    code = 1001 if sig == signal.SIGINT else 1012
    assert answers[-1] == code, "stations are told the server is going away or restarting"

    events = chargeledger_cli("events", store=store)
    sent = {
        json.loads(e["event"]["text"])[1] for e in events if e["event"].get("direction") == "out"
    }
    answered = {answer[1] for answer in answers[:-1]}  # type: ignore[index]
    assert answered <= sent, "every answer the station got is in the log"
    assert events[-1]["kind"] == "SessionClosed" and events[-1]["event"]["code"] == code


def test_sessions_left_open_by_a_killed_server_are_closed_at_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'kill.db'}"

    async def connect_and_boot(port: int) -> websockets.ClientConnection:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/KILLED", subprotocols=["ocpp1.6"]
        )
        await ws.send('[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        await ws.recv()
        return ws

    async def scenario() -> None:
        process, port = _start(store)
        ws = await connect_and_boot(port)
        process.kill()  # no chance to record anything more
        process.wait(timeout=30)
        await ws.close()

    asyncio.run(scenario())
    (station,) = chargeledger_cli("stations", store=store)
    assert station["connected"] is True, "the log still says connected: nobody recorded a close"

    process, _ = _start(store)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    (station,) = chargeledger_cli("stations", store=store)
    assert station["connected"] is False
    closed = [e for e in chargeledger_cli("events", store=store) if e["kind"] == "SessionClosed"]
    assert [(e["event"]["code"], e["event"]["by"]) for e in closed] == [(1006, "csms")]
