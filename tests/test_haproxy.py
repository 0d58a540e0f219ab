"""A rolling restart behind a real HAProxy (Debian's package): two ``chargeledger serve``
nodes on one PostgreSQL schema, ``ocpp`` charge points connecting through HAProxy, one node
drained; the stations reconnect through HAProxy to the other node and every CALL answered is
in the log. The HAProxy configuration is the one docs/operations.md shows."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.v16 import ChargePoint, call

from tests.harness import chargeledger_cli
from tests.polling import eventually

__all__: list[str] = []

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
DOCS = Path(__file__).parent.parent / "docs" / "operations.md"
STATIONS = 4


@dataclass
class Node:
    process: subprocess.Popen[str]
    port: int
    api_port: int
    lines: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def ready(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.api}/health/ready", timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def _start_node(store: str, name: str, config: Path | None = None) -> Node:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chargeledger.core.cli",
            "serve",
            "--port",
            "0",
            "--api-port",
            "0",
            "--store",
            store,
            "--node",
            name,
            *(["--config", str(config)] if config is not None else []),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(ports) < 2 and time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        for key, pattern in (
            ("ws", r"listening on ws://[\d.]+:(\d+)/"),
            ("api", r"HTTP API on http://[\d.]+:(\d+)/"),
        ):
            found = re.search(pattern, line)
            if found:
                ports[key] = int(found.group(1))
    if len(ports) < 2:
        process.kill()
        raise AssertionError("node did not log its ports:\n" + "".join(lines))
    node = Node(process, ports["ws"], ports["api"], lines)
    # Keep reading stderr so that the node never blocks on a full pipe.
    threading.Thread(target=lambda: node.lines.extend(process.stderr), daemon=True).start()  # type: ignore[arg-type]
    return node


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def haproxy_config(front: int, nodes: list[Node]) -> str:
    """The configuration of docs/operations.md with this test's ports."""
    text = DOCS.read_text()
    example = text.split("```haproxy\n", 1)[1].split("```", 1)[0]
    example = example.replace("0.0.0.0:9000", f"127.0.0.1:{front}")
    example = example.replace("inter 2s", "inter 200ms")
    for number, node in enumerate(nodes, start=1):
        example = example.replace(
            f"10.0.0.{number}:9000 check port 8080",
            f"127.0.0.1:{node.port} check port {node.api_port}",
        )
    assert "10.0.0." not in example and "127.0.0.1" in example
    return example


@pytest.fixture
def haproxy_binary() -> str:
    if not Path(HAPROXY).exists():
        pytest.fail("haproxy is missing: `make haproxy` (apt-get install -y haproxy) installs it")
    return HAPROXY


@dataclass
class Fleet:
    answered: dict[str, list[str]] = field(default_factory=dict)
    closes: dict[str, list[int | None]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)


async def _station(url: str, name: str, fleet: Fleet) -> None:
    """A charge point of the ``ocpp`` package that reconnects whenever it is closed, boots
    on every connection and sends Heartbeats, noting each answered message id."""
    answered = fleet.answered.setdefault(name, [])
    closes = fleet.closes.setdefault(name, [])
    count = 0
    while not fleet.stop.is_set():
        try:
            async with websockets.connect(f"{url}/{name}", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
                station = ChargePoint(name, ws, response_timeout=5)
                reader = asyncio.create_task(station.start())
                boot = call.BootNotification(charge_point_vendor="V", charge_point_model="M")
                payload: Any = boot  # every connection boots: this node may not know it yet
                while not fleet.stop.is_set() and not reader.done():
                    count += 1
                    unique_id = f"{name}-{count}"
                    asking = asyncio.create_task(station.call(payload, unique_id=unique_id))
                    await asyncio.wait({asking, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if not asking.done() or asking.exception() is not None:
                        asking.cancel()
                        break
                    assert asking.result() is not None, f"{unique_id}: a CALLERROR"
                    answered.append(unique_id)
                    payload = call.Heartbeat()
                    await asyncio.sleep(0.05)  # pacing: a heartbeat every 50 ms
                reader.cancel()
                closes.append(ws.close_code)
        except (OSError, websockets.WebSocketException) as exc:
            fleet.errors.append(repr(exc))
            closes.append(getattr(getattr(exc, "rcvd", None), "code", None))
        await asyncio.sleep(0.1)  # a station's back-off before it reconnects


@pytest.mark.postgres
def test_a_drained_node_hands_its_stations_to_the_other_through_haproxy(
    postgres_url: str, tmp_path: Path, haproxy_binary: str
) -> None:
    started = time.monotonic()
    with ExitStack() as stack:
        nodes = [_start_node(postgres_url, "node-a"), _start_node(postgres_url, "node-b")]
        for node in nodes:
            stack.callback(_stop, node.process)
        a, b = nodes
        front = _free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(haproxy_config(front, nodes))
        check = subprocess.run(
            [haproxy_binary, "-c", "-f", str(config)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        proxy = subprocess.Popen(
            [haproxy_binary, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(_stop, proxy)
        fleet = Fleet()
        on_a = 0

        async def scenario() -> None:
            url = f"ws://127.0.0.1:{front}/ocpp"
            names = [f"HA-{n}" for n in range(STATIONS)]
            tasks = [asyncio.create_task(_station(url, name, fleet)) for name in names]
            try:
                await eventually(
                    lambda: all(len(fleet.answered.get(n, [])) >= 3 for n in names),
                    what="every station answered through haproxy",
                )
                spread = [node.ready()[1]["stations"] for node in nodes]
                assert sum(spread) == STATIONS and min(spread) > 0, spread
                nonlocal on_a
                on_a = spread[0]
                drained = await asyncio.to_thread(chargeledger_drain, a.api)
                assert drained["started"] is True and drained["code"] == 1012
                assert drained["stations"] == on_a
                await asyncio.to_thread(a.process.wait, 30)
                marks = {n: len(fleet.answered[n]) for n in names}
                await eventually(
                    lambda: (
                        b.ready()[1].get("stations") == STATIONS
                        and all(len(fleet.answered[n]) >= marks[n] + 3 for n in names)
                    ),
                    what="every station reconnected to node-b and is answered there",
                )
            finally:
                fleet.stop.set()
                await asyncio.gather(*tasks)

        asyncio.run(scenario())
        assert a.process.returncode == 0, "a drained node exits with status 0"
        (drained_line,) = [line for line in a.lines if "drained:" in line]
        found = re.search(r"(\d+) sessions closed when idle, 0 busy, in ([\d.]+) s", drained_line)
        assert found and int(found.group(1)) == on_a, drained_line
        assert float(found.group(2)) < 5, "idle stations are closed at once"
        b.process.send_signal(signal.SIGTERM)  # drains too
        assert b.process.wait(timeout=30) == 0

    events = chargeledger_cli("events", store=postgres_url)
    texts = [json.loads(e["event"]["text"]) for e in events if e["event"].get("text")]
    calls = {t[1] for t in texts if t[0] == 2}
    results = {t[1] for t in texts if t[0] == 3}
    answered = {unique_id for ids in fleet.answered.values() for unique_id in ids}
    assert answered <= calls and answered <= results, "every CALL answered is in the log"
    closed = [e["event"] for e in events if e["kind"] == "SessionClosed"]
    opened = {
        e["event"]["session"]: e["event"]["node"] for e in events if e["kind"] == "SessionOpened"
    }
    by_drain = [c for c in closed if opened[c["session"]] == "node-a"]
    assert len(by_drain) == on_a_count(events)
    assert all((c["code"], c["by"]) == (1012, "csms") for c in by_drain), by_drain
    assert all(c["reason"].startswith("node draining") for c in by_drain)
    moved = {c["station"] for c in by_drain}
    assert all(1012 in fleet.closes[s] for s in moved), fleet.closes
    assert time.monotonic() - started < 30


def on_a_count(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if e["kind"] == "SessionOpened" and e["event"]["node"] == "node-a")


def chargeledger_drain(api: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", "drain", "--api", api, "--json", "--wait"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
