"""The benchmark suite: ChargeLedger and two peers (the Python ``ocpp`` package's central system,
the Node ``ocpp-rpc`` package's RPCServer in strict mode) under the same simulated load,
measured from outside, written as JSON and Markdown.

    python benchmarks/run.py              # the full suite (make bench); about 20 minutes
    python benchmarks/run.py --quick      # small N, short runs; about 3 minutes
    python benchmarks/run.py --profile    # also a py-spy profile of ChargeLedger at saturation
    python benchmarks/run.py --security   # the cost of each security profile (TLS, passwords)
    python benchmarks/run.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
                                          # also ChargeLedger on PostgreSQL (a fresh schema
                                          # per case), beside SQLite, in the loaded scenarios

Every case starts the server under test fresh, as its own process (``chargeledger serve`` on a
new SQLite file or PostgreSQL schema, ``benchmarks/peer_ocpp.py``, or ``node
benchmarks/peer_ocpp_rpc/server.js``, whose ``ocpp-rpc`` is installed there with ``npm ci``
from the committed lock file when missing), runs ``chargeledger simulate --json
--server-pid PID`` against it, and stops it. The simulator reads the server's CPU time and
resident memory from /proc at the phase boundaries, so CPU per call counts only the server's
own CPU even though the generator shares the machine. Results go to
``benchmarks/results/latest.json`` and ``latest.md``; ``--write-docs`` also puts the tables
into docs/performance.md. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from chargeledger.core.simulator import machine_busy_seconds, raise_fd_limit
from chargeledger.tests.postgres import drop_postgres_schema

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOCS = ROOT / "docs" / "performance.md"
DOCS_BEGIN = "<!-- benchmark results: written by benchmarks/run.py --write-docs -->"
DOCS_END = "<!-- end of benchmark results -->"
SYSTEMS = ("chargeledger", "peer", "ocpp-rpc")
"""What runs by default: ChargeLedger on SQLite and the two peers."""
PEERS = ("peer", "ocpp-rpc")
POSTGRES = "chargeledger-pg"
"""ChargeLedger on PostgreSQL: added to the systems by ``--postgres URL``."""
POSTGRES_SCENARIOS = ("saturation", "transaction-cycles")
"""The loaded scenarios, where the store is the bottleneck: the ones run on PostgreSQL too."""
LABELS = {
    "chargeledger": "ChargeLedger",
    POSTGRES: "ChargeLedger PG",
    "peer": "ocpp peer",
    "ocpp-rpc": "ocpp-rpc peer",
}
SHORT = {"peer": "ocpp", "ocpp-rpc": "ocpp-rpc"}
"""The peers' column heads."""
NODE_PEER = HERE / "peer_ocpp_rpc"
STEADY_RATE = 500
"""CALLs per second of the steady scenario, whatever the number of stations."""


@dataclass(frozen=True)
class Case:
    """One scenario at one N; the same case runs against every system."""

    scenario: str
    stations: int
    duration: float
    interval: float | None = None
    hold: float = 0.0
    call_timeout: float = 30.0

    @property
    def label(self) -> str:
        return f"{self.scenario} N={self.stations:,}"


def cases(quick: bool) -> list[Case]:
    """The matrix. 10,000 stations only where N is the point (connecting, idling, booting,
    reconnecting, a steady fleet): saturating with 10,000 in-flight CALLs measures the same
    server loop as with 1,000, and would not fit the suite in 25 minutes."""
    if quick:
        return [
            Case("connect-storm", 100, 60, hold=2),
            Case("connect-storm", 1000, 60, hold=2),
            Case("steady", 100, 8, interval=100 / STEADY_RATE),
            Case("saturation", 100, 8),
            Case("transaction-cycles", 100, 8),
            Case("reconnect-storm", 1000, 60),
        ]
    storms = [
        case
        for n in (100, 1000, 10000)
        for case in (
            Case("connect-storm", n, 120, hold=5),
            Case("reconnect-storm", n, 120),
        )
    ]
    steady = [Case("steady", n, 30, interval=n / STEADY_RATE) for n in (100, 1000, 10000)]
    loaded = [
        Case(scenario, n, 20, call_timeout=60)
        for scenario in ("saturation", "transaction-cycles")
        for n in (100, 1000)
    ]
    return storms + steady + loaded


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_kib = int(meminfo.readline().split()[1])
    packages = ("chargeledger", "trio", "trio-websocket", "msgspec", "eventsourcing", "ocpp")
    versions = {package: metadata.version(package) for package in (*packages, "websockets")}
    installed = NODE_PEER / "node_modules" / "ocpp-rpc" / "package.json"
    if installed.exists():
        versions["ocpp-rpc"] = json.loads(installed.read_text())["version"]
        node = subprocess.run(["node", "--version"], capture_output=True, text=True)
        versions["node"] = node.stdout.strip().lstrip("v")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }


def tree() -> dict[str, Any]:
    """The commit measured and the files that differed from it (others edit the tree too)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "modified": [line[3:] for line in git("status", "--porcelain").splitlines()],
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    """Whether something listens on ``port``, read from /proc/net/tcp: probing with a
    connection would show up in the server under test (and in ChargeLedger's log)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def install_node_peer() -> None:
    """Install the ``ocpp-rpc`` peer's packages into ``benchmarks/peer_ocpp_rpc/node_modules``
    with ``npm ci`` (exactly the committed ``package-lock.json``) unless that install is
    already there and newer than the lock file. Raises SystemExit, saying what to do, when
    Node.js or npm is missing or the install fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit(
            "the ocpp-rpc peer needs Node.js >= 17.3 and npm (Debian: apt-get install nodejs "
            "npm); or leave it out: --systems chargeledger,peer"
        )
    lock, installed = (
        NODE_PEER / "package-lock.json",
        NODE_PEER / "node_modules" / ".package-lock.json",
    )
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    print(f"installing the ocpp-rpc peer: npm ci in {NODE_PEER}", flush=True)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel", "error"], cwd=NODE_PEER
    )
    if done.returncode != 0:
        raise SystemExit(f"npm ci in {NODE_PEER} failed (exit status {done.returncode})")


def fresh_schema(base: str) -> str:
    """A store URL on a new PostgreSQL schema of the database ``base`` names (ChargeLedger
    creates it on start; :func:`drop_postgres_schema` drops it after the case)."""
    return f"{base}{'&' if '?' in base else '?'}schema=bench_{uuid.uuid4().hex[:12]}"


class DatabaseCpu:
    """The CPU of the PostgreSQL backends serving one ChargeLedger process, which ``/proc``
    of the server does not count: the backends are found by the ``application_name`` the
    server connects with (``PGAPPNAME``, which libpq reads), their ``utime + stime`` read from
    ``/proc`` (the database runs on this machine) when :meth:`start` and :meth:`stop` are
    called. Backends that connect later count from zero; one that exits before ``stop`` is
    lost (the server keeps its pool open)."""

    def __init__(self, base: str, application: str) -> None:
        self.base, self.application = base, application
        self.started: dict[int, float] = {}

    def _read(self) -> dict[int, float]:
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        plain = urlsplit(self.base)._replace(query="").geturl()
        with psycopg.connect(plain, user=urlsplit(self.base).username or "postgres") as conn:
            pids = [row[0] for row in conn.execute(query, (self.application,))]
        tick = os.sysconf("SC_CLK_TCK")
        seconds = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # not on this machine, or gone
                continue
            seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
        return seconds

    def start(self) -> None:
        self.started = self._read()

    def stop(self) -> float:
        """CPU seconds of the backends since :meth:`start`."""
        ended = self._read()
        return sum(cpu - self.started.get(pid, 0.0) for pid, cpu in ended.items())


@contextmanager
def server(
    system: str,
    workdir: Path,
    gc_stats: Path | None = None,
    config: str = "",
    ports: tuple[int, ...] = (),
    store: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[int, str]]:
    """Start ``system`` fresh; yield its pid and URL; stop it with SIGTERM (SIGKILL after
    60 s). ``gc_stats``: run ChargeLedger through ``serve_with_gc_stats.py``, writing there.
    ``config``: ChargeLedger's TOML settings (``serve --config``), which may open ``ports``
    besides its own (the ``wss://`` port, the API's): they are waited for too. ``store``:
    ChargeLedger's store URL (default: a new SQLite file in ``workdir``); ``env``: added to
    the server's environment. Raises RuntimeError when the server does not listen within
    60 s."""
    port = _free_port()
    if system in ("chargeledger", POSTGRES):
        store = store or f"sqlite:///{workdir / 'bench.db'}"
        if gc_stats is None:
            launcher = [str(Path(sys.executable).with_name("chargeledger"))]
        else:
            launcher = [sys.executable, str(HERE / "serve_with_gc_stats.py"), str(gc_stats)]
        command = [
            *launcher,
            "serve",
            "--port",
            str(port),
            "--store",
            store,
            "--log-level",
            "warning",
        ]
        if config:
            (workdir / "chargeledger.toml").write_text(config)
            command += ["--config", str(workdir / "chargeledger.toml")]
    elif system == "ocpp-rpc":
        command = ["node", str(NODE_PEER / "server.js"), "--port", str(port)]
    else:
        command = [sys.executable, str(HERE / "peer_ocpp.py"), "--port", str(port)]
    log = open(workdir / f"{system}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 60
        while not all(_listening(each) for each in (port, *ports)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{system} did not start; see {workdir / f'{system}.log'}")
            time.sleep(0.05)
        yield process.pid, f"ws://127.0.0.1:{port}/ocpp"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _simulate_command(case: Case, url: str, pid: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "chargeledger.core.cli",
        "simulate",
        url,
        "--scenario",
        case.scenario,
        "--stations",
        str(case.stations),
        "--duration",
        str(case.duration),
        "--hold",
        str(case.hold),
        "--call-timeout",
        str(case.call_timeout),
        "--connect-concurrency",
        "1000",
        "--server-pid",
        str(pid),
        "--json",
        *(["--interval", str(case.interval)] if case.interval is not None else []),
    ]


def _report(stdout: str, stderr: str) -> dict[str, Any]:
    """The simulator's JSON report (``ok`` false when the run failed), or ``error`` with the
    end of its output when it produced none."""
    try:
        report: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        return {"ok": False, "error": (stderr or stdout)[-2000:]}
    return report


def simulate(case: Case, url: str, pid: int, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``chargeledger simulate`` for ``case`` against the server ``pid`` at ``url``, with
    the ``extra`` options (credentials)."""
    limit = 300 + case.duration + case.hold + 2 * case.call_timeout + 120
    completed = subprocess.run(
        [*_simulate_command(case, url, pid), *extra], capture_output=True, text=True, timeout=limit
    )
    return _report(completed.stdout, completed.stderr)


QUIET_CORES = 0.3
"""Other processes may keep this much CPU busy before a case starts anyway."""


def wait_until_quiet(budget: list[float], most: float = 60.0) -> float:
    """Wait (at most ``most`` s, and at most what is left of ``budget[0]``) until other
    processes keep less than ``QUIET_CORES`` busy: the machine may be shared, and figures
    taken beside someone's test run are figures of both. The busy cores last seen."""
    waited = 0.0
    while True:
        before = machine_busy_seconds()
        time.sleep(2)
        after = machine_busy_seconds()
        busy = (after - before) / 2 if before is not None and after is not None else 0.0
        if busy < QUIET_CORES or waited >= most or budget[0] <= 0:
            return round(busy, 2)
        time.sleep(3)
        waited += 5
        budget[0] -= 5


def run_case(
    system: str, case: Case, quiet_budget: list[float], postgres: str | None = None
) -> dict[str, Any]:
    """One case against a fresh ``system``, once the machine is quiet (see
    ``wait_until_quiet``); the cores others kept busy just before are kept with it.
    ``postgres``: the base URL ChargeLedger PG gets a fresh schema in; its backends' CPU
    over the whole simulator run (every phase: its pid list is read before and after) goes
    into the report as ``database``: seconds, and microseconds per CALL answered in every
    phase."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{system}-"))
    others = wait_until_quiet(quiet_budget)
    store = fresh_schema(postgres) if system == POSTGRES and postgres else None
    application = f"chargeledger-bench-{uuid.uuid4().hex[:8]}"
    database = DatabaseCpu(postgres, application) if store and postgres else None
    run: dict[str, Any] = {"system": system, "case": asdict(case), "others_before": others}
    try:
        with server(system, workdir, store=store, env={"PGAPPNAME": application}) as (pid, url):
            if database is not None:
                database.start()
            run["report"] = report = simulate(case, url, pid)
            if database is not None:
                seconds = database.stop()
                answered = _get(report, "counts", "answered")
                report["database"] = {
                    "cpu_seconds": round(seconds, 3),
                    "cpu_us_per_call": round(seconds / answered * 1e6, 1) if answered else None,
                }
        return run
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if store is not None:
            drop_postgres_schema(store)


PROFILES = {"saturation": (8.0, 20.0, 32.0), "connect-storm": (0.5, 10.0, 120.0)}
"""Scenario -> (seconds before sampling starts, seconds sampled, --duration): a saturation run
is sampled once its stations are charging, a connect storm from its start."""


def profile(scenario: str, stations: int, out: Path) -> dict[str, Any]:
    """Profile ChargeLedger under ``scenario`` with ``stations`` stations: py-spy samples
    (see ``PROFILES``), and the garbage collector's time, which sampling cannot attribute.
    Writes the summary to ``out`` and the collapsed stacks beside it; returns the summary."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    delay, seconds, duration = PROFILES[scenario]
    case = Case(scenario, stations, duration, call_timeout=60)
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    raw, gc_stats = workdir / "profile.txt", workdir / "gc.json"
    sample = [py_spy, "record", "-d", str(int(seconds)), "-r", "250", "--threads"]
    sample += ["--nonblocking", "-f", "raw", "-o", str(raw), "-p"]
    try:
        with server("chargeledger", workdir, gc_stats) as (pid, url):
            simulator = subprocess.Popen(
                _simulate_command(case, url, pid),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(delay)
            subprocess.run([*sample, str(pid)], capture_output=True, check=True)
            stdout, stderr = simulator.communicate(timeout=case.duration + 300)
        report = _report(stdout, stderr)
        summary = {
            "scenario": scenario,
            "stations": stations,
            "run": {
                key: report.get(key) for key in ("ok", "calls_per_second", "latency", "server")
            },
            "garbage_collector": json.loads(gc_stats.read_text()),
            **summarize_profile(raw.read_text()),
        }
        out.write_text(json.dumps(summary, indent=1) + "\n")
        shutil.copy(raw, out.with_suffix(".collapsed.txt"))
        return summary
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summarize_profile(collapsed: str, top: int = 30) -> dict[str, Any]:
    """Sample shares from py-spy's collapsed stacks (``thread;frame;... count``): per thread,
    per package of the innermost frame, per function own and cumulative. py-spy skips idle
    threads, so a share of samples is a share of the process's CPU."""
    counters: dict[str, collections.Counter[str]] = {
        name: collections.Counter() for name in ("threads", "own_package", "own", "cumulative")
    }
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        total += count
        counters["threads"][thread] += count
        if frames:
            counters["own"][_function(frames[-1])] += count
            counters["own_package"][_package(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            counters["cumulative"][function] += count
    return {
        "samples": total,
        **{
            f"{name}_percent": [
                (key, round(100 * n / total, 1)) for key, n in counter.most_common(top)
            ]
            for name, counter in counters.items()
        },
    }


def _function(frame: str) -> str:
    """``name (package/module.py)`` of a py-spy frame ``name (path/package/module.py:line)``."""
    name, _, location = frame.rpartition(" (")
    return f"{name} ({'/'.join(location.rsplit(':', 1)[0].split('/')[-2:])})"


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) of a py-spy frame."""
    path = frame.rpartition(" (")[2].rsplit(":", 1)[0]
    head = path.lstrip("/").split("/", 1)[0] if "/" in path else path
    return {
        "core": "chargeledger.core",
        "projections": "chargeledger.projections",
        "plugins": "chargeledger.plugins",
    }.get(head, head)


# -- the tables ------------------------------------------------------------------------------

ORDER = ("connect-storm", "reconnect-storm", "steady", "saturation", "transaction-cycles")
Index = dict[tuple[str, str, int], dict[str, Any]]


def _index(results: dict[str, Any]) -> Index:
    return {
        (run["system"], run["case"]["scenario"], run["case"]["stations"]): run["report"]
        for run in results["runs"]
    }


def _get(report: dict[str, Any] | None, *path: str) -> Any:
    value: Any = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _fmt(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _cell(report: dict[str, Any] | None, path: tuple[str, ...], digits: int = 0) -> str:
    """A figure of ``report``, flagged when the run had failures."""
    if report is None:
        return "not run"
    flag = "" if report.get("ok") else " (!)"
    return _fmt(_get(report, *path), digits) + flag


def _ratio(ours: Any, theirs: Any, higher_is_better: bool) -> str:
    """``ours`` against ``theirs`` as ``N.Nx``, above 1 when ours is better; ``-`` unless
    both are positive (an idle connection's RSS can come out negative when the garbage
    collector of the server under test returned memory meanwhile)."""
    if not ours or not theirs or ours < 0 or theirs < 0:
        return "-"
    return f"{ours / theirs if higher_is_better else theirs / ours:.1f}x"


def _against(ours: Any, peers: list[Any], path: tuple[str, ...], digits: int, higher: bool) -> str:
    """``ours | peer 1 | ratio | peer 2 | ratio ...`` cells of one figure."""
    cells = [_cell(ours, path, digits)]
    for theirs in peers:
        cells += [
            _cell(theirs, path, digits),
            _ratio(_get(ours, *path), _get(theirs, *path), higher),
        ]
    return " | ".join(cells)


def _simulator(report: dict[str, Any] | None) -> str:
    """Cores the simulator used in the measured phase, and its event loop's p99 lag."""
    seconds = _get(report, "measured_seconds")
    cpu = _get(report, "simulator_cpu_measured_seconds")
    lag = _get(report, "simulator_loop_lag", "p99_ms")
    cores = f"{cpu / seconds:.2f}" if seconds and cpu is not None else "-"
    return f"{cores}, {_fmt(lag)} ms"


def render_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: the machine, a table per question, targets, failures."""
    index = _index(results)
    m = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    ran = {run["system"] for run in results["runs"]}
    peers = [peer for peer in PEERS if peer in ran]
    lines = [
        f"Taken {results['finished_at']} by `{results['command']}` in "
        f"{results['elapsed_minutes']:.1f} min on {m['nproc']} x {m['cpu_model']}, "
        f"{m['memory_gib']} GiB, Python {m['python']}, Linux {m['kernel']}, open-files limit "
        f"{m['open_files_limit']:,}; {versions}. Tree: commit {results['tree']['commit'][:10]} "
        f"with {len(results['tree']['modified'])} files changed or added (see latest.json).",
        "",
        "CL is ChargeLedger (SQLite, every frame committed before its reply); ocpp the `ocpp` "
        "package's central system (Python, persists nothing); ocpp-rpc the `ocpp-rpc` "
        "package's RPCServer in strict mode (Node, schema validation both ways, persists "
        "nothing). A ratio is ChargeLedger's advantage over the peer left of it: above 1 is "
        "better for ChargeLedger. (!) marks a run with failures, listed below. Other load: "
        "cores kept busy in the measured phase by processes other than the server and the "
        "simulator (the machine is shared); figures beside a high one are noisy.",
        "",
    ]
    keys = sorted(
        {
            (run["case"]["scenario"], run["case"]["stations"])
            for run in results["runs"]
            if run["system"] != POSTGRES
        },
        key=lambda key: (ORDER.index(key[0]), key[1]),
    )
    names = [SHORT[peer] for peer in peers]
    against = "".join(f" | {name} | ratio" for name in names)
    each = "".join(f" | {name}" for name in names)
    width = 2 + 2 * (1 + 2 * len(peers)) + 2 * (1 + len(peers)) + 2
    lines += [
        "### Throughput, server CPU per call, latency",
        "",
        f"| scenario | N | calls/s CL{against} | server CPU us/call CL{against} "
        f"| p50 ms CL{each} | p99 ms CL{each} "
        f"| simulator: cores, loop lag p99, CL / {' / '.join(names)} "
        f"| other load, cores, CL / {' / '.join(names)} |",
        "|---|" + "--:|" * (width - 1),
    ]
    for scenario, n in keys:
        ours = index.get(("chargeledger", scenario, n))
        theirs = [index.get((peer, scenario, n)) for peer in peers]
        everyone = [ours, *theirs]
        lines.append(
            f"| {scenario} | {n:,} "
            f"| {_against(ours, theirs, ('calls_per_second',), 0, True)} "
            f"| {_against(ours, theirs, ('server', 'cpu_us_per_call'), 0, False)} "
            f"| {' | '.join(_cell(r, ('latency', 'p50_ms'), 1) for r in everyone)} "
            f"| {' | '.join(_cell(r, ('latency', 'p99_ms'), 1) for r in everyone)} "
            f"| {' / '.join(_simulator(r) for r in everyone)} "
            f"| {' / '.join(_fmt(_get(r, 'other_cores'), 2) for r in everyone)} |"
        )
    storms = sorted({n for scenario, n in keys if scenario == "connect-storm"})
    lines += [
        "",
        "In the storms, calls/s counts boots (connect storm) or reconnections (reconnect storm) "
        "per second, and CPU per call includes the WebSocket handshake (and, reconnecting, "
        "noticing the dropped connection).",
    ]
    reconnects = any(scenario == "reconnect-storm" for scenario, _ in keys)
    if storms:
        again_head = f" | reconnect all, s, CL{against}" if reconnects else ""
        lines += [
            "",
            "### Connecting: time to boot N stations, memory per idle connection",
            "",
            f"| N | boot all, s, CL{against}{again_head} "
            f"| RSS KiB per idle connection CL{against} |",
            "|--:|" + "--:|" * ((3 if reconnects else 2) * (1 + 2 * len(peers))),
        ]
    for n in storms:
        boot = [index.get((system, "connect-storm", n)) for system in ("chargeledger", *peers)]
        again = [index.get((system, "reconnect-storm", n)) for system in ("chargeledger", *peers)]
        again_cells = (
            f" | {_against(again[0], again[1:], ('measured_seconds',), 2, False)}"
            if reconnects
            else ""
        )
        lines.append(
            f"| {n:,} | {_against(boot[0], boot[1:], ('measured_seconds',), 2, False)}"
            f"{again_cells} "
            f"| {_against(boot[0], boot[1:], ('server', 'rss_per_connection_kib'), 1, False)} |"
        )
    lines += render_postgres(index)
    lines += [
        "",
        "### Targets (ChargeLedger)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [
        f"| {target} | {measured} | {'yes' if met else '**no**'} |"
        for target, measured, met in targets(index)
    ]
    for summary in results.get("profiles", []):
        lines += ["", *render_profile(summary)]
    failed = [run for run in results["runs"] if not run["report"].get("ok", False)]
    if failed:
        lines += ["", "### Runs with failures", ""]
    for run in failed:
        report = run["report"]
        reasons = report.get("failures") or {}
        detail = "; ".join(f"{count} x {reason}" for reason, count in reasons.items())
        if "error" in report:
            detail += f" simulator error: {report['error'][-300:]!r}"
        case = run["case"]
        lines.append(
            f"- {LABELS[run['system']]}, {case['scenario']} N={case['stations']:,}: {detail}"
        )
    return "\n".join(lines) + "\n"


def render_postgres(index: Index) -> list[str]:
    """ChargeLedger on PostgreSQL beside SQLite, where both ran: calls/s, the server's CPU per
    call, the PostgreSQL backends' CPU per call (which the server's /proc does not count),
    latency; nothing when ``--postgres`` was not given."""
    keys = sorted((scenario, n) for system, scenario, n in index if system == POSTGRES)
    if not keys:
        return []
    lines = [
        "",
        "### ChargeLedger on PostgreSQL beside SQLite",
        "",
        "The same cases against `chargeledger serve --store postgresql://...` (a fresh schema "
        "per case, PostgreSQL on the same machine). The server's CPU per call leaves out the "
        "database's own processes; the PostgreSQL backends' CPU is read apart (every phase of "
        "the run, per CALL answered in every phase) and the sum is the figure to compare with "
        "SQLite, whose work is inside the server process.",
        "",
        "| scenario | N | calls/s SQLite | PG | ratio | server CPU us/call SQLite | PG "
        "| + PG backends us/call | = PG total | p50 ms SQLite | PG | p99 ms SQLite | PG "
        "| other load, cores, SQLite / PG |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for scenario, n in keys:
        lite, pg = index.get(("chargeledger", scenario, n)), index.get((POSTGRES, scenario, n))
        server = _get(pg, "server", "cpu_us_per_call")
        backends = _get(pg, "database", "cpu_us_per_call")
        total = server + backends if server is not None and backends is not None else None
        lines.append(
            f"| {scenario} | {n:,} | {_cell(lite, ('calls_per_second',))} "
            f"| {_cell(pg, ('calls_per_second',))} "
            f"| {_ratio(_get(pg, 'calls_per_second'), _get(lite, 'calls_per_second'), True)} "
            f"| {_cell(lite, ('server', 'cpu_us_per_call'))} "
            f"| {_cell(pg, ('server', 'cpu_us_per_call'))} | {_fmt(backends)} | {_fmt(total)} "
            f"| {_cell(lite, ('latency', 'p50_ms'), 1)} | {_cell(pg, ('latency', 'p50_ms'), 1)} "
            f"| {_cell(lite, ('latency', 'p99_ms'), 1)} | {_cell(pg, ('latency', 'p99_ms'), 1)} "
            f"| {_fmt(_get(lite, 'other_cores'), 2)} / {_fmt(_get(pg, 'other_cores'), 2)} |"
        )
    lines += [
        "",
        "The calls/s ratio here is PostgreSQL's over SQLite's (above 1: PostgreSQL faster).",
    ]
    return lines


def render_profile(summary: dict[str, Any], top: int = 15) -> list[str]:
    """A profile summary as Markdown: the run, the collector's share, the hottest code."""
    run, collector = summary["run"], summary["garbage_collector"]
    old = collector["generations"]["2"]
    threads = ", ".join(
        f"{name.split(': ', 1)[-1]} {share}%" for name, share in summary["threads_percent"]
    )
    lines = [
        f"### Profile: ChargeLedger, {summary['scenario']} N={summary['stations']:,}",
        "",
        f"{_fmt(run.get('calls_per_second'))} calls/s, "
        f"{_fmt(_get(run, 'server', 'cpu_us_per_call'))} us server CPU per call. "
        f"Garbage collector: **{collector['gc_percent_of_cpu']}% of the server's CPU** "
        f"({collector['gc_seconds']} of {collector['process_cpu_seconds']} s; "
        f"{old['collections']} full collections took {old['seconds']:.1f} s; thresholds "
        f"{tuple(collector['thresholds'])}). py-spy, {summary['samples']:,} samples, by "
        f"thread: {threads}. By package (innermost frame): "
        + ", ".join(f"{name} {share}%" for name, share in summary["own_package_percent"][:8])
        + ".",
        "",
        "| own % | function | | cumulative % | function |",
        "|--:|---|---|--:|---|",
    ]
    own = summary["own_percent"][:top]
    ours = [
        row
        for row in summary["cumulative_percent"]
        if any(part in row[0] for part in _OURS) and "(core/cli.py)" not in row[0]
    ][:top]
    for index in range(max(len(own), len(ours))):
        cells = [
            f"{rows[index][1]} | `{rows[index][0]}`" if index < len(rows) else " | "
            for rows in (own, ours)
        ]
        lines.append(f"| {cells[0]} | | {cells[1]} |")
    return lines


_OURS = ("(core/", "(projections/", "(plugins/")
"""How ChargeLedger's functions end (see ``_function``), for a profile's cumulative column
(the command line's frames, on every stack, are left out)."""


def targets(index: Index) -> list[tuple[str, str, bool]]:
    """The issue's targets against ChargeLedger's figures: (target, measured, met)."""
    ours = {
        (scenario, n): r for (system, scenario, n), r in index.items() if system == "chargeledger"
    }
    rows: list[tuple[str, str, bool]] = []
    saturation = [r for (scenario, _), r in ours.items() if scenario == "saturation"]
    if saturation:
        best = max(saturation, key=lambda report: report.get("calls_per_second", 0))
        cpu = _get(best, "server", "cpu_us_per_call")
        rate = best.get("calls_per_second", 0)
        rows.append(
            (
                "saturation: <= 150 us server CPU per call",
                f"{_fmt(cpu)} us",
                cpu is not None and cpu <= 150,
            )
        )
        rows.append(("saturation: >= 6,000 calls/s", f"{_fmt(rate)} calls/s", rate >= 6000))
    for (scenario, n), report in sorted(ours.items()):
        if scenario == "steady":
            p99 = _get(report, "latency", "p99_ms")
            rate = report.get("calls_per_second", 0)
            met = (
                bool(report.get("ok"))
                and p99 is not None
                and p99 <= 15
                and rate >= 0.95 * STEADY_RATE
            )
            measured = f"{_fmt(rate)} calls/s, p99 {_fmt(p99, 1)} ms"
            rows.append((f"steady: 500 calls/s at p99 <= 15 ms (N={n:,})", measured, met))
    storms = {n: report for (scenario, n), report in ours.items() if scenario == "connect-storm"}
    if storms:
        n = max(storms)
        report = storms[n]
        rss = _get(report, "server", "rss_per_connection_kib")
        connected = report.get("connections_at_idle", 0)
        seconds = report.get("measured_seconds")
        booted_in_time = bool(report.get("ok")) and seconds is not None and seconds <= 5
        rows += [
            (
                f"<= 20 KiB per idle connection (N={n:,})",
                f"{_fmt(rss, 1)} KiB",
                rss is not None and rss <= 20,
            ),
            (
                "10,000 stations connected to one process",
                f"{connected:,} connected",
                connected >= 10000,
            ),
            (
                "10,000 stations booted in <= 5 s",
                f"{n:,} in {_fmt(seconds, 2)} s",
                booted_in_time and n >= 10000,
            ),
        ]
    return rows


def write_docs(markdown: str, first: str = DOCS_BEGIN, last: str = DOCS_END) -> None:
    """Replace the block of docs/performance.md between the lines ``first`` and ``last``
    (by default the results block) with ``markdown``."""
    text = DOCS.read_text()
    head, begin, rest = text.partition(first)
    _, end, tail = rest.partition(last)
    if not begin or not end:
        raise SystemExit(f"{DOCS} has no results block ({first} ... {last})")
    DOCS.write_text(f"{head}{first}\n{markdown}{last}{tail}")


def render_files(paths: list[Path], out: Path, docs: bool) -> int:
    """The tables of several results files: the first one's machine and tree, everyone's
    runs and profiles, the commands joined; written to ``out`` (and docs/performance.md)."""
    loaded = [json.loads(path.read_text()) for path in paths]
    results = {
        **loaded[0],
        "command": "`; `".join(each["command"] for each in loaded),
        "finished_at": loaded[-1]["finished_at"],
        "elapsed_minutes": sum(each["elapsed_minutes"] for each in loaded),
        "runs": [run for each in loaded for run in each["runs"]],
        "profiles": [summary for each in loaded for summary in each.get("profiles", [])],
    }
    markdown = render_markdown(results)
    out.write_text(markdown)
    if docs:
        write_docs(markdown)
    print(markdown)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and short runs")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, of {','.join(LABELS)} (default: {','.join(SYSTEMS)})",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run ChargeLedger on PostgreSQL (system chargeledger-pg) in the loaded "
        "scenarios, each case on a fresh schema of this database, dropped after it; e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument(
        "--only",
        choices=[*ORDER, "none"],
        action="append",
        help="run only this scenario (repeatable; none: no scenario, e.g. with --profile)",
    )
    parser.add_argument(
        "--render",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="instead: the tables of these results files (their runs together, e.g. two "
        "shorter runs of different scenarios), printed, and written to --out's .md",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="SCENARIO:N",
        help="also profile ChargeLedger under this load: saturation:N or connect-storm:N "
        "(repeatable)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="put the tables into docs/performance.md"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long the whole suite may wait for a quiet machine before cases (300; 0: "
        "never wait, when the machine is known to stay busy: the other-load column says how "
        "busy it was)",
    )
    parser.add_argument(
        "--security",
        action="store_true",
        help="instead: the cost of each station security profile (security_profiles.py)",
    )
    parser.add_argument(
        "--security-profiles",
        default="0,0+TLS,1,2,3",
        metavar="LIST",
        help="with --security: these only (comma-separated, of 0,0+TLS,1,2,3)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="with --security: run every case this many times, report the median",
    )
    args = parser.parse_args()
    if args.render:
        return render_files(args.render, args.out.with_suffix(".md"), args.write_docs)
    if args.security:
        import security_profiles  # imports this module: not at the top

        variants = tuple(v for v in args.security_profiles.split(",") if v)
        return security_profiles.main(args.quick, args.write_docs, max(1, args.repeat), variants)
    profiles = []
    for spec in args.profile:
        scenario, _, stations = spec.partition(":")
        if scenario not in PROFILES or not stations.isdigit():
            parser.error(f"--profile {spec}: expected one of {list(PROFILES)}, then :N")
        profiles.append((scenario, int(stations)))

    systems = [s for s in args.systems.split(",") if s]
    unknown = [system for system in systems if system not in LABELS]
    if unknown:
        parser.error(f"--systems: unknown {unknown}; choose from {list(LABELS)}")
    if args.postgres and POSTGRES not in systems:
        systems.insert(1, POSTGRES)
    if POSTGRES in systems and not args.postgres:
        parser.error(f"{POSTGRES} needs --postgres URL")
    if "ocpp-rpc" in systems:
        install_node_peer()
    # Children inherit it: 10,000 stations are 10,000 descriptors in the server under test.
    raise_fd_limit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    measured_tree = tree()
    quiet_budget = [args.quiet_budget]  # seconds the whole suite may wait for a quiet machine
    runs = []
    for case in cases(args.quick):
        if args.only and case.scenario not in args.only:
            continue
        for system in systems:
            if system == POSTGRES and case.scenario not in POSTGRES_SCENARIOS:
                continue
            print(f"{LABELS[system]:<15} {case.label:<28}", end=" ", flush=True)
            run = run_case(system, case, quiet_budget, args.postgres)
            report = run["report"]
            print(
                f"{'ok' if report.get('ok') else 'FAILED':<6} "
                f"{_fmt(report.get('calls_per_second'))} calls/s, "
                f"{_fmt(_get(report, 'server', 'cpu_us_per_call'))} µs/call, "
                f"p99 {_fmt(_get(report, 'latency', 'p99_ms'), 1)} ms, "
                f"{_fmt(report.get('measured_seconds'), 2)} s",
                flush=True,
            )
            runs.append(run)
    results: dict[str, Any] = {
        "command": " ".join(["python benchmarks/run.py", *sys.argv[1:]]),
        "machine": machine(),
        "tree": measured_tree,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_minutes": round((time.time() - started) / 60, 2),
        "runs": runs,
    }
    for scenario, stations in profiles:
        print(f"profiling ChargeLedger, {scenario} N={stations:,} ...", flush=True)
        out = args.out.with_name(f"profile-{scenario}-{stations}.json")
        results.setdefault("profiles", []).append(profile(scenario, stations, out))
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    markdown = render_markdown(results)
    args.out.with_suffix(".md").write_text(markdown)
    if args.write_docs:
        write_docs(markdown)
    print(markdown)
    return 0 if all(run["report"].get("ok") for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
