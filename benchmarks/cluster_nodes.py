"""One node against two on the same PostgreSQL (a benchmark, not a test; the table is in
docs/performance.md, "Several nodes: one against two").

    python benchmarks/cluster_nodes.py                    # 40 stations, 15 s per phase
    python benchmarks/cluster_nodes.py --stations 100 --duration 30

For one and then two nodes, each on a fresh schema: ``chargeledger serve`` processes (the
PostgreSQL store, ``--api-port``), started as ``benchmarks/run.py`` starts its server, and
one ``chargeledger simulate --scenario saturation --server-pid PID`` per node with the
stations split evenly over the nodes (each station keeps one MeterValues in flight, back to
back): calls/s and the server's CPU per call, per node and together. Meanwhile a probe
station on the first node sends a Heartbeat every 0.25 s, and an event stream
(``/api/stream``) on the last node receives its frames: the view lag is the time from the
probe having its answer (the first node committed and folded the frame) to the last node
streaming it (with one node, the same node: the stream's own delay, for reference). After
the load, the probe answers ``ClearCache``: asked ``--commands`` times through the first
node's HTTP API (local) and through the last node's (routed through the database), one
after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cluster_follow import SERVER, drop_postgres_schema
from benchmarks.run import _free_port, _listening, _report, machine


def start_node(store: str, name: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """``chargeledger serve`` on ``store`` as node ``name``: its process, WebSocket port and
    API port, once both listen."""
    port, api = _free_port(), _free_port()
    chargeledger = str(Path(sys.executable).with_name("chargeledger"))
    command = [chargeledger, "serve", "--port", str(port), "--api-port", str(api)]
    command += ["--store", store, "--node", name, "--log-level", "warning"]
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + 60
    while not (_listening(port) and _listening(api)):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"node {name} did not start; see {workdir / f'{name}.log'}")
        time.sleep(0.05)
    return process, port, api


async def simulate(port: int, pid: int, stations: int, duration: float, prefix: str) -> Any:
    command = [sys.executable, "-m", "chargeledger.core.cli", "simulate"]
    command += [f"ws://127.0.0.1:{port}/ocpp", "--scenario", "saturation"]
    command += ["--stations", str(stations), "--duration", str(duration), "--json"]
    command += ["--server-pid", str(pid), "--id-prefix", prefix, "--progress-every", "0"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    return _report(out.decode(), err.decode())


class Probe:
    """A bare 1.6 station answering every CALL of ours ``{"status": "Accepted"}``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.count = 0
        self.answers: dict[str, asyncio.Future[float]] = {}

    async def run(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame[0] == 2:
                await self.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
            elif frame[1] in self.answers:
                self.answers.pop(frame[1]).set_result(time.monotonic())

    async def call(self, action: str, payload: dict[str, Any]) -> float:
        """Send a CALL; the moment its answer arrived."""
        self.count += 1
        message_id = f"p{self.count}"
        answered = asyncio.get_running_loop().create_future()
        self.answers[message_id] = answered
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        return await asyncio.wait_for(answered, 30)


async def view_lag(probe: Probe, stream_api: str, until: float) -> list[float]:
    """Heartbeats of the probe every 0.25 s until ``until``; each one's lag from its answer
    to the stream of ``stream_api`` carrying it."""
    seen: dict[str, float] = {}
    lags: list[float] = []
    async with httpx.AsyncClient(base_url=stream_api, timeout=None) as http:
        params = {"station": "PROBE", "kind": "FrameLogged"}
        async with http.stream("GET", "/api/stream", params=params) as response:
            assert response.status_code == 200, response.status_code

            async def read() -> None:
                async for line in response.aiter_lines():
                    if line.startswith("data:") and "Heartbeat" in line:
                        text = _text(json.loads(line[5:]))
                        if text:
                            seen.setdefault(json.loads(text)[1], time.monotonic())

            reader = asyncio.create_task(read())
            try:
                while time.monotonic() < until:
                    answered = await probe.call("Heartbeat", {})
                    message_id = f"p{probe.count}"
                    deadline = time.monotonic() + 10
                    while message_id not in seen and time.monotonic() < deadline:
                        await asyncio.sleep(0.001)
                    if message_id in seen:
                        lags.append(max(0.0, seen[message_id] - answered))
                    await asyncio.sleep(0.25)
            finally:
                reader.cancel()
    return lags


def _text(data: Any) -> str | None:
    """The frame text in an event of the stream (wherever its JSON keeps it)."""
    if isinstance(data, dict):
        if isinstance(data.get("text"), str):
            return str(data["text"])
        for value in data.values():
            found = _text(value)
            if found:
                return found
    return None


async def commands(probe: Probe, apis: list[str], count: int) -> dict[str, list[float]]:
    """ClearCache asked through each API in turn, ``count`` times each: the latencies."""
    taken: dict[str, list[float]] = {api: [] for api in apis}
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(count):
            for api in apis:
                started = time.monotonic()
                answer = await http.post(f"{api}/api/stations/PROBE/calls/ClearCache", json={})
                assert answer.status_code == 200, answer.text
                taken[api].append(time.monotonic() - started)
    return taken


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def figures(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def one_run(nodes: int, stations: int, duration: float, count: int) -> dict[str, Any]:
    store = f"{SERVER}?schema=bench_nodes_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="cluster_nodes_"))
    started = [start_node(store, f"n{index}", workdir) for index in range(nodes)]
    try:
        first, last = started[0], started[-1]
        ws = await websockets.connect(
            f"ws://127.0.0.1:{first[1]}/ocpp/PROBE", subprotocols=["ocpp1.6"], ping_interval=None
        )
        probe = Probe(ws)
        task = asyncio.create_task(probe.run())
        boot = {"chargePointVendor": "V", "chargePointModel": "M"}
        await probe.call("BootNotification", boot)
        share = stations // nodes
        loads = [
            simulate(port, process.pid, share, duration, f"N{index}-")
            for index, (process, port, _) in enumerate(started)
        ]
        # The simulators connect and boot their stations first: probe the measured phase.
        lag = view_lag(probe, f"http://127.0.0.1:{last[2]}", time.monotonic() + duration + 5)
        *reports, lags = await asyncio.gather(*loads, lag)
        apis = [f"http://127.0.0.1:{first[2]}"]
        if nodes > 1:
            apis.append(f"http://127.0.0.1:{last[2]}")
        latencies = await commands(probe, apis, count)
        task.cancel()
        await ws.close()
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            process.wait(60)
        drop_postgres_schema(store)
    per_node = [
        {
            "ok": report.get("ok"),
            "calls_per_second": report.get("calls_per_second"),
            "cpu_us_per_call": (report.get("server") or {}).get("cpu_us_per_call"),
            "p50_ms": _round((report.get("latency") or {}).get("p50_ms")),
            "p99_ms": _round((report.get("latency") or {}).get("p99_ms")),
            "failures": report.get("failures"),
        }
        for report in reports
    ]
    return {
        "nodes": nodes,
        "stations": stations,
        "duration": duration,
        "per_node": per_node,
        "calls_per_second": round(sum(n["calls_per_second"] or 0 for n in per_node), 1),
        "view_lag": figures(lags),
        "command_local": figures(latencies[apis[0]]),
        "command_routed": figures(latencies[apis[1]]) if nodes > 1 else None,
    }


def markdown(runs: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:,}" if isinstance(value, (int, float)) else value

    lines = [
        "| nodes | calls/s, all nodes | per node: calls/s | server CPU µs/call | p50 / p99 ms "
        "| view lag p50 / p95 / max ms | command local p50 / p95 ms "
        "| command routed p50 / p95 ms |",
        "| --: | --: | --: | --: | --: | --: | --: | --: |",
    ]
    for run in runs:
        nodes = run["per_node"]
        lag, local, routed = run["view_lag"], run["command_local"], run["command_routed"] or {}
        latency = [f"{cell(n['p50_ms'])} / {cell(n['p99_ms'])}" for n in nodes]
        lines.append(
            f"| {run['nodes']} | {cell(run['calls_per_second'])} "
            f"| {' / '.join(cell(n['calls_per_second']) for n in nodes)} "
            f"| {' / '.join(cell(n['cpu_us_per_call']) for n in nodes)} "
            f"| {' ; '.join(latency)} "
            f"| {cell(lag['p50_ms'])} / {cell(lag['p95_ms'])} / {cell(lag['max_ms'])} "
            f"| {cell(local['p50_ms'])} / {cell(local['p95_ms'])} "
            f"| {cell(routed.get('p50_ms'))} / {cell(routed.get('p95_ms'))} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stations", type=int, default=40, help="stations over all nodes")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per run")
    parser.add_argument("--commands", type=int, default=50, help="commands asked per API")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    runs = [
        asyncio.run(one_run(nodes, args.stations, args.duration, args.commands)) for nodes in (1, 2)
    ]
    result = {"machine": machine(), "runs": runs}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(runs, indent=2), file=sys.stderr)
    print(markdown(runs))
    return 0 if all(n["ok"] for run in runs for n in run["per_node"]) else 1


if __name__ == "__main__":
    sys.exit(main())
