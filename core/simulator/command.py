"""The ``chargeledger simulate`` command: options, the summary table, ``--json``, the exit code.

Exit codes: 0 when every CALL was answered and nothing failed, 1 when any failure was counted
(CALLERRORs, refusals, timeouts, connection or protocol failures), 2 for options out of
bounds or a target the simulator may not load.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chargeledger.core.jsonlines import print_json_lines
from chargeledger.core.simulator.runner import (
    MAX_CALLS,
    MAX_DURATION,
    MAX_HOLD,
    MAX_PROCESSES,
    MAX_STATIONS,
    OptionError,
    Options,
    Report,
    simulate,
)
from chargeledger.core.simulator.scenarios import SCENARIOS
from chargeledger.core.simulator.station import COUNTS
from chargeledger.schemas import OCPP16, OCPP201

__all__ = ["format_report", "register"]

_PROTOCOLS = {"1.6": OCPP16, "2.0.1": OCPP201}


def register(commands: Any) -> None:
    """Add the ``simulate`` subcommand to ``commands`` (an argparse subparsers action)."""
    scenarios = "; ".join(f"{name}: {cls.summary}" for name, cls in SCENARIOS.items())
    parser = commands.add_parser(
        "simulate",
        help="run simulated charging stations against a CSMS",
        description="Run N simulated OCPP stations against a CSMS and report what happened. "
        f"Scenarios: {scenarios}. See docs/simulator.md.",
    )
    parser.add_argument(
        "url", help="CSMS URL the station id is appended to: ws:// or wss://HOST:PORT/PATH"
    )
    parser.add_argument(
        "-s", "--scenario", choices=list(SCENARIOS), default="connect-storm", help="load shape"
    )
    parser.add_argument(
        "-n",
        "--stations",
        type=int,
        default=10,
        help=f"stations (default 10, at most {MAX_STATIONS})",
    )
    parser.add_argument(
        "--protocol", choices=list(_PROTOCOLS), default="1.6", help="OCPP version (default 1.6)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds of measured load; for the storms, the most they may take "
        f"(default 30, at most {MAX_DURATION:.0f})",
    )
    parser.add_argument(
        "--calls",
        type=int,
        help=f"stop the measured load after this many CALLs (at most {MAX_CALLS})",
    )
    parser.add_argument(
        "--interval",
        type=float,
        help="steady: seconds between a station's MeterValues (default 10); "
        "transaction-cycles: pause between CALLs (default 0)",
    )
    parser.add_argument(
        "--meter-values",
        type=int,
        default=3,
        help="transaction-cycles: MeterValues per transaction (default 3)",
    )
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=500,
        help="stations connecting and booting at the same moment (default 500)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help=f"simulator processes sharing the stations (default 1, at most {MAX_PROCESSES})",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="seconds to stay connected and idle after the load "
        f"(default 0, at most {MAX_HOLD:.0f})",
    )
    parser.add_argument(
        "--call-timeout", type=float, default=30.0, help="seconds to wait for an answer (30)"
    )
    parser.add_argument("--id-prefix", default="SIM-", help="station ids: PREFIX00000, ...")
    parser.add_argument("--id-tag", default="SIMTAG", help="the id tag stations charge with")
    parser.add_argument("--seed", type=int, default=1, help="seed of meter jitter and offsets")
    parser.add_argument(
        "--allow-remote",
        metavar="HOST",
        help="allow this non-loopback host (exactly as written in the URL)",
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        metavar="PID",
        help="a local CSMS process: report its CPU per CALL and memory per connection",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--progress-every",
        type=float,
        metavar="SECONDS",
        help="the progress line on stderr: every SECONDS (default: 1 on a terminal, where the "
        "line is rewritten in place; 10 elsewhere, one line each time); 0: none",
    )
    security = parser.add_argument_group(
        "security profiles", "HTTP Basic (profiles 1, 2), wss:// (2, 3), client certificates (3)"
    )
    security.add_argument(
        "--password",
        help="every station's HTTP Basic password (username: the station id); "
        "{station} in it is replaced by the station id",
    )
    security.add_argument(
        "--passwords",
        metavar="FILE",
        help="per-station passwords: lines of STATION PASSWORD (before --password)",
    )
    security.add_argument(
        "--ca-file", help="wss://: CA (PEM) the server's certificate must chain to"
    )
    security.add_argument(
        "--server-name", help="wss://: the name the server's certificate must carry (URL host)"
    )
    security.add_argument(
        "--client-cert-dir",
        metavar="DIR",
        help="wss://: a client certificate per station, DIR/<station>.pem and DIR/<station>.key",
    )
    security.add_argument(
        "--client-cert", metavar="PEM", help="wss://: one client certificate for every station"
    )
    security.add_argument(
        "--client-key", metavar="PEM", help="its private key (default: in --client-cert)"
    )
    parser.set_defaults(run=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    options = Options(
        url=args.url,
        scenario=args.scenario,
        stations=args.stations,
        protocol=_PROTOCOLS[args.protocol],
        duration=args.duration,
        calls=args.calls,
        interval=args.interval,
        meter_values=args.meter_values,
        connect_concurrency=args.connect_concurrency,
        processes=args.processes,
        hold=args.hold,
        call_timeout=args.call_timeout,
        id_prefix=args.id_prefix,
        id_tag=args.id_tag,
        seed=args.seed,
        allow_remote=args.allow_remote,
        server_pid=args.server_pid,
        password=args.password,
        passwords_file=args.passwords,
        ca_file=args.ca_file,
        server_name=args.server_name,
        client_cert_dir=args.client_cert_dir,
        client_cert=args.client_cert,
        client_key=args.client_key,
    )
    every = args.progress_every
    if every is None:
        every = 1.0 if sys.stderr.isatty() else 10.0
    try:
        if every == 0:
            report = simulate(options)
        else:
            report = simulate(options, progress=sys.stderr, progress_every=every)
    except OptionError as exc:
        print(f"chargeledger simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json_lines([report])
    else:
        print(format_report(report))
    return 0 if report.ok else 1


def format_report(report: Report) -> str:
    """The human summary of ``report``: a few lines and a table per action."""
    lines = [
        f"{report.scenario}: {report.stations} stations ({report.protocol}) -> {report.url}, "
        f"{report.processes} process{'es' if report.processes > 1 else ''}",
        "phases: "
        + ", ".join(f"{name} {secs:.2f} s" for name, secs in report.phase_seconds.items()),
        f"measured: {report.measured['answered']} answered in {report.measured_seconds:.2f} s "
        f"= {report.calls_per_second:,.1f} calls/s",
        "",
        f"{'measured CALLs':<20}{'answered':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}"
        f"{'max ms':>10}",
    ]
    rows = list(report.actions.items())
    if report.latency is not None and len(rows) > 1:
        rows.append(("all", report.latency))
    for action, latency in rows:
        lines.append(
            f"{action:<20}{latency.count:>10}{latency.p50_ms:>10.2f}{latency.p90_ms:>10.2f}"
            f"{latency.p99_ms:>10.2f}{latency.max_ms:>10.2f}"
        )
    lines += ["", f"{'all phases':<20}" + "".join(f"{n:>10}" for n in ("total", "measured"))]
    for name in COUNTS:
        lines.append(f"{name:<20}{report.counts[name]:>10}{report.measured[name]:>10}")
    lines.append("")
    lag = report.simulator_loop_lag
    lag_text = f"; its loop lag p99 {lag.p99_ms:.1f} ms, max {lag.max_ms:.1f} ms" if lag else ""
    lines.append(
        f"simulator CPU: {report.simulator_cpu_seconds:.2f} s "
        f"({report.simulator_cpu_measured_seconds:.2f} s in the measured phase){lag_text}"
    )
    if report.other_cores is not None:
        lines.append(f"other processes on this machine: {report.other_cores:.2f} cores busy")
    server = report.server
    if server is not None:
        per_call = f"{server.cpu_us_per_call:.0f} µs/call" if server.cpu_us_per_call else "-"
        per_connection = (
            f"{server.rss_per_connection_kib:.1f} KiB/connection"
            if server.rss_per_connection_kib is not None
            else "-"
        )
        lines.append(
            f"server pid {server.pid}: CPU {server.cpu_seconds:.2f} s in the measured phase "
            f"({per_call}); RSS {server.rss_start_kib} -> {server.rss_idle_kib} KiB with "
            f"{report.connections_at_idle} connected ({per_connection})"
        )
    if report.failures:
        lines.append("failures:")
        lines += [f"  {count:>8}  {reason}" for reason, count in report.failures.items()]
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)
