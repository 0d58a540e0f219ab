"""Running a simulation: options and their hard caps, the target check, one worker in this
process or several in their own, the readings taken at phase boundaries, and the report.

Safety, in one place: a run is bounded in stations, CALLs and time (the ``MAX_*`` caps and
the phase limits of :mod:`~chargeledger.core.simulator.scenarios`), always ends by itself,
and connects only to loopback addresses unless ``allow_remote`` names the host exactly, with
or without TLS. Credentials (passwords, CA and certificate files) are read and checked
before anything connects.
"""

from __future__ import annotations

import ipaddress
import math
import multiprocessing
import os
import queue
import resource
import socket
import ssl
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any, TextIO
from urllib.parse import urlsplit

import msgspec
import trio

from chargeledger.core.simulator.credentials import Credentials, StationKeys, read_passwords
from chargeledger.core.simulator.progress import ProgressLine, Snapshot
from chargeledger.core.simulator.scenarios import (
    MARKS,
    PHASES,
    SCENARIOS,
    SETUP_LIMIT,
    TEARDOWN_LIMIT,
    Plan,
    WorkerReport,
    run_worker,
)
from chargeledger.core.simulator.station import (
    CONNECT_TIMEOUT,
    COUNTS,
    FAILURES,
    Tally,
    Target,
)
from chargeledger.schemas import OCPP16, PROTOCOLS

__all__ = [
    "MAX_CALLS",
    "MAX_DURATION",
    "MAX_HOLD",
    "MAX_PROCESSES",
    "MAX_STATIONS",
    "Latency",
    "OptionError",
    "Options",
    "Report",
    "ServerFigures",
    "ServerProbe",
    "check_target",
    "machine_busy_seconds",
    "raise_fd_limit",
    "simulate",
]

MAX_STATIONS = 50_000
MAX_DURATION = 3600.0
MAX_CALLS = 10_000_000
MAX_HOLD = 600.0
MAX_PROCESSES = 32
MAX_CALL_TIMEOUT = 120.0
DEFAULT_INTERVALS = {"steady": 10.0, "transaction-cycles": 0.0}
"""``--interval`` when not given: seconds between MeterValues (steady), pause between CALLs
(transaction cycles)."""

_FDS_PER_PROCESS = 64
"""File descriptors a worker needs besides one per station."""


class OptionError(ValueError):
    """The options are out of bounds, or the target is not allowed."""


class Options(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a simulation is told; defaults are the command's defaults."""

    url: str
    scenario: str = "connect-storm"
    stations: int = 10
    protocol: str = OCPP16
    duration: float = 30.0
    calls: int | None = None
    interval: float | None = None
    meter_values: int = 3
    connect_concurrency: int = 500
    processes: int = 1
    hold: float = 0.0
    call_timeout: float = 30.0
    id_prefix: str = "SIM-"
    id_tag: str = "SIMTAG"
    seed: int = 1
    allow_remote: str | None = None
    server_pid: int | None = None
    password: str | None = None
    """Every station's HTTP Basic password (``{station}``: its identity)."""
    passwords_file: str | None = None
    """``STATION PASSWORD`` lines: per-station passwords (before ``password``)."""
    ca_file: str | None = None
    """``wss://``: the CA file the server's certificate must chain to (default: system CAs)."""
    server_name: str | None = None
    """``wss://``: the name the server's certificate must carry (default: the URL's host)."""
    client_cert_dir: str | None = None
    """``wss://``: ``<station>.pem`` and ``<station>.key`` per station (profile 3)."""
    client_cert: str | None = None
    client_key: str | None = None
    """``wss://``: one certificate and key for every station."""


class Latency(msgspec.Struct, frozen=True):
    """Percentiles in milliseconds (nearest rank) of ``count`` samples."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


class ServerFigures(msgspec.Struct, frozen=True):
    """The server process as read from /proc during the run."""

    pid: int
    cpu_seconds: float
    """CPU (user + system) in the measured phase."""
    cpu_us_per_call: float | None
    """``cpu_seconds`` per CALL answered in the measured phase."""
    rss_start_kib: int
    rss_idle_kib: int
    """At the end of the hold, all stations connected and idle."""
    rss_per_connection_kib: float | None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a run; ``ok`` is false when any failure was counted."""

    ok: bool
    scenario: str
    protocol: str
    url: str
    stations: int
    processes: int
    phase_seconds: dict[str, float]
    """setup, measure, hold, teardown."""
    measured_seconds: float
    calls_per_second: float
    """CALLs answered in the measured phase per second of it."""
    counts: dict[str, int]
    """Every phase together."""
    measured: dict[str, int]
    """The measured phase only."""
    latency: Latency | None
    """Every CALL answered in the measured phase."""
    actions: dict[str, Latency]
    connections_at_idle: int
    failures: dict[str, int]
    """The reasons of failures, most frequent first."""
    simulator_cpu_seconds: float
    simulator_cpu_measured_seconds: float
    simulator_loop_lag: Latency | None
    """How late the simulator's event loop ran in the measured phase, sampled every
    ``LAG_PROBE`` seconds: a generator that falls behind shows here."""
    other_cores: float | None
    """Cores busy in the measured phase with anything but the simulator (and the server, with
    ``server_pid``): on a shared machine, the noise in the figures."""
    server: ServerFigures | None


class ServerProbe:
    """Reads a local process's CPU seconds and resident memory from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ticks = os.sysconf("SC_CLK_TCK")
        self.cpu_seconds()  # fail now, with a clear error, if there is no such process

    def cpu_seconds(self) -> float:
        """utime + stime of every thread of the process."""
        with open(f"/proc/{self.pid}/stat") as stat:
            # Fields after the command name, which may contain spaces and parentheses.
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise OSError(f"no VmRSS for process {self.pid}")


class _Reading(msgspec.Struct, frozen=True):
    at: float
    machine_busy: float | None
    server_cpu: float | None
    server_rss_kib: int | None


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of the machine has been busy since boot (/proc/stat), or None
    where there is no /proc."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(field) for field in stat.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it); the
    limit now in force. 10,000 stations need 10,000 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # some sandboxes refuse; the check against the limit says what follows
    return soft


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_target(url: str, allow_remote: str | None) -> Target:
    """Where ``url`` (``ws://`` or ``wss://HOST[:PORT]/PATH``) points, if the simulator may go
    there.

    The host must resolve only to loopback addresses, unless it is exactly ``allow_remote``.
    Stations connect to the address resolved here, so a name cannot resolve elsewhere later.
    Raises :class:`OptionError` otherwise, and for a URL that is neither ``ws://`` nor
    ``wss://``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise OptionError(f"{url!r}: only ws:// and wss:// URLs are supported")
    host = parts.hostname
    if not host:
        raise OptionError(f"{url!r}: no host")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError as exc:
        raise OptionError(f"{url!r}: {exc}") from None
    try:
        addresses = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    except OSError as exc:
        raise OptionError(f"{host!r} does not resolve: {exc}") from None
    if host != allow_remote and not all(_is_loopback(str(a)) for a in addresses):
        raise OptionError(
            f"{host!r} is not a loopback address; the simulator loads a CSMS hard, so it "
            f"targets another machine only when told by name: --allow-remote {host}"
        )
    header = f"[{host}]" if ":" in host else host
    # localhost often resolves to ::1 first, while servers commonly listen on 127.0.0.1 only.
    address = next((a for a in addresses if ":" not in str(a)), addresses[0])
    return Target(host=header, address=str(address), port=port, path=parts.path.rstrip("/"))


def _checked(options: Options) -> tuple[Options, Target]:
    """``options`` with scenario defaults filled in, and the target; raises OptionError."""

    def bounded(name: str, value: float, low: float, high: float) -> None:
        if not low <= value <= high:
            raise OptionError(f"{name} must be between {low:g} and {high:g}, not {value:g}")

    if options.scenario not in SCENARIOS:
        raise OptionError(f"unknown scenario {options.scenario!r}; one of {list(SCENARIOS)}")
    if options.protocol not in PROTOCOLS:
        raise OptionError(f"unknown protocol {options.protocol!r}; one of {list(PROTOCOLS)}")
    bounded("--stations", options.stations, 1, MAX_STATIONS)
    bounded("--duration", options.duration, 0.1, MAX_DURATION)
    bounded("--calls", options.calls if options.calls is not None else 1, 1, MAX_CALLS)
    bounded("--hold", options.hold, 0, MAX_HOLD)
    bounded("--call-timeout", options.call_timeout, 0.1, MAX_CALL_TIMEOUT)
    bounded("--processes", options.processes, 1, min(MAX_PROCESSES, options.stations))
    bounded("--connect-concurrency", options.connect_concurrency, 1, MAX_STATIONS)
    bounded("--meter-values", options.meter_values, 0, 1000)
    interval = options.interval
    if interval is None:
        interval = DEFAULT_INTERVALS.get(options.scenario, 0.0)
    bounded("--interval", interval, 0.0 if options.scenario != "steady" else 0.001, 3600)
    limit = raise_fd_limit()
    per_process = math.ceil(options.stations / options.processes)
    if per_process + _FDS_PER_PROCESS > limit:
        raise OptionError(
            f"{per_process} stations per process need more open files than the limit "
            f"({limit}, see ulimit -Hn): use --processes"
        )
    if options.server_pid is not None:
        try:
            ServerProbe(options.server_pid)
        except OSError as exc:
            raise OptionError(f"--server-pid {options.server_pid}: {exc}") from None
    target = check_target(options.url, options.allow_remote)
    return msgspec.structs.replace(options, interval=interval), target


def _credentials(options: Options, first_station: str) -> Credentials:
    """The stations' credentials from ``options``, their files read and checked (one
    station's TLS context is built, as ``first_station``); raises :class:`OptionError`."""
    tls = options.url.startswith("wss://")
    tls_options = {
        "--ca-file": options.ca_file,
        "--server-name": options.server_name,
        "--client-cert-dir": options.client_cert_dir,
        "--client-cert": options.client_cert,
        "--client-key": options.client_key,
    }
    given = [name for name, value in tls_options.items() if value is not None]
    if given and not tls:
        raise OptionError(f"{', '.join(given)}: only for wss:// URLs")
    if options.client_cert_dir is not None and options.client_cert is not None:
        raise OptionError("--client-cert-dir or --client-cert, not both")
    if options.client_key is not None and options.client_cert is None:
        raise OptionError("--client-key needs --client-cert")
    if options.client_cert_dir is not None and not os.path.isdir(options.client_cert_dir):
        raise OptionError(f"--client-cert-dir {options.client_cert_dir}: not a directory")
    passwords = None
    if options.passwords_file is not None:
        try:
            passwords = read_passwords(options.passwords_file)
        except (OSError, ValueError) as exc:
            raise OptionError(f"--passwords {options.passwords_file}: {exc}") from None
    credentials = Credentials(
        password=options.password,
        passwords=passwords,
        tls=tls,
        ca_file=options.ca_file,
        server_name=options.server_name,
        client_cert_dir=options.client_cert_dir,
        client_cert=options.client_cert,
        client_key=options.client_key,
    )
    try:
        StationKeys(credentials).check(first_station)
    except (OSError, ssl.SSLError) as exc:
        raise OptionError(f"TLS files: {exc}") from None
    return credentials


def _id_width(options: Options) -> int:
    return max(5, len(str(options.stations - 1)))


def _plans(options: Options, target: Target, credentials: Credentials) -> list[Plan]:
    """One plan per process: stations and CALLs shared out as evenly as they divide."""
    plans = []
    first = 0
    for index in range(options.processes):
        stations = options.stations // options.processes + (
            index < options.stations % options.processes
        )
        calls = None
        if options.calls is not None:
            calls = options.calls // options.processes + (index < options.calls % options.processes)
        assert options.interval is not None
        plans.append(
            Plan(
                scenario=options.scenario,
                protocol=options.protocol,
                target=target,
                first_station=first,
                stations=stations,
                id_width=_id_width(options),
                calls=calls,
                duration=options.duration,
                interval=options.interval,
                meter_values=options.meter_values,
                connect_concurrency=max(1, options.connect_concurrency // options.processes),
                hold=options.hold,
                call_timeout=options.call_timeout,
                id_prefix=options.id_prefix,
                id_tag=options.id_tag,
                seed=options.seed,
                credentials=credentials,
            )
        )
        first += stations
    return plans


def _hard_limit(options: Options) -> float:
    """Seconds after which a run is over whatever happens."""
    assert options.interval is not None
    return (
        SETUP_LIMIT
        + options.duration
        + options.call_timeout
        + CONNECT_TIMEOUT
        + options.interval
        + options.hold
        + TEARDOWN_LIMIT
        + 30.0
    )


def _worker_process(
    plan: Plan, barrier: Barrier, results: Any, progress: Any, progress_every: float
) -> None:
    """The body of a worker process: run its plan, put its report (or its error) in
    ``results``, and (with a ``progress`` queue) its snapshots there. A broken barrier means
    the parent gave up on the run."""

    async def sync(mark: str) -> None:
        await trio.to_thread.run_sync(barrier.wait)  # every process is here
        await trio.to_thread.run_sync(barrier.wait)  # the parent has taken its readings

    def report_progress(snapshot: Snapshot) -> None:
        progress.put((plan.first_station, snapshot))

    callback = report_progress if progress is not None else None
    try:
        report = trio.run(run_worker, plan, sync, time.process_time, callback, progress_every)
    except BaseException as exc:
        results.put((plan.first_station, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    results.put((plan.first_station, report))


def _run_processes(
    plans: list[Plan],
    hard_limit: float,
    read: Callable[[str], None],
    line: ProgressLine | None,
    progress_every: float,
) -> tuple[list[WorkerReport], list[str]]:
    """Run one worker process per plan; their reports and the errors of those that failed.

    The parent meets the workers at every mark (a barrier), takes its readings, and lets
    them go on. A watchdog breaks the barrier when a worker dies or the hard limit passes,
    so a failing worker ends the run instead of hanging it."""
    context = multiprocessing.get_context("spawn")  # no fork: the caller may run threads
    barrier = context.Barrier(len(plans) + 1)
    results = context.Queue()
    snapshots = context.Queue() if line is not None else None
    processes = [
        context.Process(
            target=_worker_process,
            args=(plan, barrier, results, snapshots, progress_every),
            daemon=True,
        )
        for plan in plans
    ]
    for process in processes:
        process.start()
    finished = threading.Event()
    deadline = time.monotonic() + hard_limit

    def watchdog() -> None:
        while not finished.wait(0.2):
            died = any(p.exitcode not in (None, 0) for p in processes)
            if died or time.monotonic() > deadline:
                barrier.abort()
                return

    threading.Thread(target=watchdog, daemon=True).start()
    if line is not None and snapshots is not None:

        def show_progress() -> None:
            while not finished.is_set():
                try:
                    worker, snapshot = snapshots.get(timeout=0.2)
                except queue.Empty:
                    continue
                line.update(worker, snapshot)

        threading.Thread(target=show_progress, daemon=True).start()
    errors: list[str] = []
    try:
        for mark in MARKS:
            barrier.wait()
            read(mark)
            barrier.wait()
    except threading.BrokenBarrierError:
        errors.append("a simulator process failed or the run exceeded its hard limit")
    finally:
        finished.set()
    reports: list[WorkerReport] = []
    silent = len(processes)
    for _ in processes:
        try:
            first, outcome = results.get(timeout=10 if not errors else 2)
        except queue.Empty:  # a process died without a word
            break
        silent -= 1
        if isinstance(outcome, WorkerReport):
            reports.append(outcome)
        else:
            errors.append(f"simulator process of stations from #{first}: {outcome}")
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join()
    errors += ["a simulator process ended without a report"] * silent
    return reports, errors


def _latency(samples: array[float]) -> Latency | None:
    if not samples:
        return None
    ordered = sorted(samples)
    count = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * count) - 1)] * 1000, 3)

    return Latency(count, rank(0.50), rank(0.90), rank(0.99), rank(1.0))


def simulate(
    options: Options, *, progress: TextIO | None = None, progress_every: float = 1.0
) -> Report:
    """Run the simulation ``options`` describe, to its end; the report.

    With ``progress`` (a stream, say stderr) a progress line (:class:`ProgressLine`) is
    written there every ``progress_every`` seconds. Raises :class:`OptionError` before
    anything starts when the options are out of bounds or the target is not allowed.
    Failures of the CSMS are never raised: they are counted in the report (``ok`` false)."""
    if progress is not None and not 0.1 <= progress_every <= 3600:
        raise OptionError(f"--progress-every must be between 0.1 and 3600, not {progress_every:g}")
    options, target = _checked(options)
    credentials = _credentials(options, f"{options.id_prefix}{0:0{_id_width(options)}d}")
    probe = ServerProbe(options.server_pid) if options.server_pid is not None else None
    readings: dict[str, _Reading] = {}

    def read(mark: str) -> None:
        readings[mark] = _Reading(
            at=time.monotonic(),
            machine_busy=machine_busy_seconds(),
            server_cpu=probe.cpu_seconds() if probe else None,
            server_rss_kib=probe.rss_kib() if probe else None,
        )

    cpu_start = time.process_time()
    read("start")
    plans = _plans(options, target, credentials)
    line = None if progress is None else ProgressLine(progress, options.stations, len(plans))
    try:
        if len(plans) == 1:

            async def sync(mark: str) -> None:
                read(mark)

            def report_progress(snapshot: Snapshot) -> None:
                assert line is not None
                line.update(0, snapshot)

            callback = report_progress if line is not None else None
            reports = [
                trio.run(run_worker, plans[0], sync, time.process_time, callback, progress_every)
            ]
            errors: list[str] = []
            simulator_cpu = time.process_time() - cpu_start
        else:
            hard_limit = _hard_limit(options)
            reports, errors = _run_processes(plans, hard_limit, read, line, progress_every)
            cpu_workers = sum(r.cpu_at["end"] for r in reports)
            simulator_cpu = time.process_time() - cpu_start + cpu_workers
    finally:
        if line is not None:
            line.close()
    return _report(options, readings, reports, errors, simulator_cpu)


def _report(
    options: Options,
    readings: dict[str, _Reading],
    reports: list[WorkerReport],
    errors: list[str],
    simulator_cpu: float,
) -> Report:
    tallies = {phase: Tally() for phase in PHASES}
    for report in reports:
        for phase, tally in report.tallies.items():
            tallies[phase].merge(tally)
    total = Tally()
    for tally in tallies.values():
        total.merge(tally)
    failures: Counter[str] = Counter(total.failures)
    failures.update(errors)
    measured = tallies["measure"]

    def seconds(start: str, end: str) -> float:
        if start in readings and end in readings:
            return round(readings[end].at - readings[start].at, 3)
        return 0.0

    measured_seconds = seconds("measure-start", "measure-end")
    answered = measured.counts["answered"]
    all_samples: array[float] = array("d")
    for samples in measured.latencies.values():
        all_samples.extend(samples)
    lags: array[float] = array("d")
    for report in reports:
        lags.extend(report.loop_lag)
    connections_at_idle = sum(r.connected_at_idle for r in reports)
    server = None
    if options.server_pid is not None and {"measure-end", "idle"} <= readings.keys():
        start, end = readings["measure-start"], readings["measure-end"]
        assert start.server_cpu is not None and end.server_cpu is not None
        cpu = end.server_cpu - start.server_cpu
        rss_start = readings["start"].server_rss_kib or 0
        rss_idle = readings["idle"].server_rss_kib or 0
        server = ServerFigures(
            pid=options.server_pid,
            cpu_seconds=round(cpu, 3),
            cpu_us_per_call=round(cpu / answered * 1e6, 1) if answered else None,
            rss_start_kib=rss_start,
            rss_idle_kib=rss_idle,
            rss_per_connection_kib=round((rss_idle - rss_start) / connections_at_idle, 2)
            if connections_at_idle
            else None,
        )
    simulator_measured = sum(r.cpu_at["measure-end"] - r.cpu_at["measure-start"] for r in reports)
    other_cores = None
    if measured_seconds and "measure-end" in readings:
        start, end = readings["measure-start"], readings["measure-end"]
        if start.machine_busy is not None and end.machine_busy is not None:
            others = end.machine_busy - start.machine_busy - simulator_measured
            others -= server.cpu_seconds if server is not None else 0.0
            other_cores = round(max(0.0, others) / measured_seconds, 2)
    failed = sum(total.counts[name] for name in FAILURES) + len(errors)
    return Report(
        ok=failed == 0,
        scenario=options.scenario,
        protocol=options.protocol,
        url=options.url,
        stations=options.stations,
        processes=options.processes,
        phase_seconds={
            "setup": seconds("start", "measure-start"),
            "measure": measured_seconds,
            "hold": seconds("measure-end", "idle"),
            "teardown": seconds("idle", "end"),
        },
        measured_seconds=measured_seconds,
        calls_per_second=round(answered / measured_seconds, 1) if measured_seconds else 0.0,
        counts={name: total.counts[name] for name in COUNTS},
        measured={name: measured.counts[name] for name in COUNTS},
        latency=_latency(all_samples),
        actions={
            action: latency
            for action, samples in sorted(measured.latencies.items())
            if (latency := _latency(samples)) is not None
        },
        connections_at_idle=connections_at_idle,
        failures=dict(failures.most_common(20)),
        simulator_cpu_seconds=round(simulator_cpu, 3),
        simulator_cpu_measured_seconds=round(simulator_measured, 3),
        simulator_loop_lag=_latency(lags),
        other_cores=other_cores,
        server=server,
    )
