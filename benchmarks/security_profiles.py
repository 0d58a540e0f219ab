"""What each station security profile costs ChargeLedger: handshakes per second and server CPU
per handshake (a connect storm), and server CPU per CALL over TLS against plain WebSockets
(saturation), for profiles 0 to 3. Run through ``benchmarks/run.py``:

    python benchmarks/run.py --security --quick               # about 3 minutes
    python benchmarks/run.py --security --quick --repeat 3    # each case 3 times, the median
    python benchmarks/run.py --security --write-docs          # N=1,000; docs/performance.md

Every case starts ChargeLedger fresh, as its own process, with TLS on a second port (a
``trustme`` CA and ECDSA P-256 certificates made in a temporary directory: the server's, and
one per profile 3 station), ``registration = "registered_only"`` and the HTTP API on loopback;
registers the case's stations at the case's profile through that API (profiles 1 and 2 with a
password, hashed by the server); then runs ``chargeledger simulate`` with what the profile
needs: nothing over ``ws://`` (0), ``--password`` over ``ws://`` (1), ``--password`` over
``wss://`` with ``--ca-file`` (2), ``--client-cert-dir`` over ``wss://`` (3). The server's CPU
is read from /proc as in every case of run.py, so the simulator's own TLS work is not in it.
Results: ``benchmarks/results/security.json`` and ``security.md``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trustme
from run import (
    RESULTS,
    Case,
    _fmt,
    _free_port,
    _get,
    machine,
    server,
    simulate,
    tree,
    wait_until_quiet,
    write_docs,
)

from chargeledger.core.remote import api_request

PASSWORD = "benchmark-station-password-1"
PROFILES = (0, 1, 2, 3)
TRANSPORTS = {
    0: "`ws://`",
    1: "`ws://` + Basic",
    2: "`wss://` + Basic",
    3: "`wss://` + client certificate",
}
DOCS_BEGIN = "<!-- security profile results: written by run.py --security --write-docs -->"
DOCS_END = "<!-- end of security profile results -->"


def cases(quick: bool) -> list[Case]:
    """A connect storm (each station's handshake and boot) and a saturation run (CALLs on
    open connections) per profile."""
    if quick:
        return [Case("connect-storm", 100, 60), Case("saturation", 50, 8)]
    return [Case("connect-storm", 1000, 120), Case("saturation", 100, 20, call_timeout=60)]


def identity(profile: int, index: int) -> str:
    """The simulator's name for station ``index`` with ``--id-prefix SP{profile}-``."""
    return f"SP{profile}-{index:05d}"


def make_pki(directory: Path, profile_3_stations: int) -> None:
    """The CA, the server's certificate and key, and ``certs/<station>.pem|.key`` for the
    first ``profile_3_stations`` profile 3 stations (the ``--client-cert-dir`` layout)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    issued.private_key_pem.write_to_path(str(directory / "server.key"))
    (directory / "certs").mkdir()
    for index in range(profile_3_stations):
        station = identity(3, index)
        issued = ca.issue_cert(station, common_name=station)
        issued.cert_chain_pems[0].write_to_path(str(directory / "certs" / f"{station}.pem"))
        issued.private_key_pem.write_to_path(str(directory / "certs" / f"{station}.key"))


def register(api: str, profile: int, stations: int) -> None:
    """Register ``stations`` stations at ``profile`` (with ``PASSWORD`` for 1 and 2) through
    the API, a few at a time (each password is an argon2id hash on the server). Raises
    RuntimeError on the first answer that is not 200."""

    def one(index: int) -> None:
        path = f"/api/stations/{quote(identity(profile, index), safe='')}"
        body = json.dumps({"profile": profile}).encode()
        steps = [("PUT", f"{path}/registration", body)]
        if profile in (1, 2):
            steps.append(("POST", f"{path}/password", json.dumps({"password": PASSWORD}).encode()))
        for method, where, data in steps:
            status, answer = api_request(api, None, method, where, data)
            if status != 200:
                raise RuntimeError(f"{method} {where}: {status} {answer}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(stations)))


def run_case(profile: int, case: Case, pki: Path, quiet_budget: list[float]) -> dict[str, Any]:
    """One case on one profile against a fresh ChargeLedger (see the module doc)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-sp{profile}-"))
    others = wait_until_quiet(quiet_budget)
    tls_port, api_port = _free_port(), _free_port()
    config = (
        f'registration = "registered_only"\napi_port = {api_port}\n\n[tls]\n'
        f'cert_file = "{pki / "server.pem"}"\nkey_file = "{pki / "server.key"}"\n'
        f'ca_file = "{pki / "ca.pem"}"\nport = {tls_port}\n'
    )
    credentials: tuple[str, ...] = ()
    if profile in (1, 2):
        credentials += ("--password", PASSWORD)
    if profile in (2, 3):
        credentials += ("--ca-file", str(pki / "ca.pem"))
    if profile == 3:
        credentials += ("--client-cert-dir", str(pki / "certs"))
    try:
        with server("chargeledger", workdir, config=config, ports=(tls_port, api_port)) as (
            pid,
            url,
        ):
            started = time.monotonic()
            register(f"http://127.0.0.1:{api_port}", profile, case.stations)
            registering = round(time.monotonic() - started, 1)
            if profile >= 2:
                url = f"wss://127.0.0.1:{tls_port}/ocpp"
            report = simulate(case, url, pid, ("--id-prefix", f"SP{profile}-", *credentials))
        return {
            "profile": profile,
            "case": asdict(case),
            "others_before": others,
            "registering_seconds": registering,
            "report": report,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def medians(runs: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """Per profile and scenario, the run with the median server CPU per call (the lower of
    the two middle ones for an even count); a run without that figure counts as the most
    expensive, so failures show when most repetitions failed."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["profile"], run["case"]["scenario"]), []).append(run)

    def cost(run: dict[str, Any]) -> float:
        value = _get(run["report"], "server", "cpu_us_per_call")
        return float("inf") if value is None else float(value)

    return {key: sorted(group, key=cost)[(len(group) - 1) // 2] for key, group in groups.items()}


def render_markdown(results: dict[str, Any]) -> str:
    """The per-profile table (the median run of each case), its extra cost over profile 0,
    the load beside it, and every run with failures."""
    runs = medians(results["runs"])
    m = results["machine"]
    storm, saturation = (case for case in results["cases"])
    lines = [
        f"Taken {results['finished_at']} by `{results['command']}` in "
        f"{results['elapsed_minutes']:.1f} min on {m['nproc']} x {m['cpu_model']}, Python "
        f"{m['python']}; tree {results['tree']['commit'][:10]}. ECDSA P-256 certificates "
        "(trustme), TLS 1.3, argon2id passwords (19 MiB, 2 passes). Connect storm: "
        f"{storm['stations']:,} stations connect and boot at once; saturation: "
        f"{saturation['stations']:,} booted stations keep one MeterValues in flight each for "
        f"{saturation['duration']:g} s. Each case ran {results['repeat']} time(s), "
        "interleaved across profiles; shown: the run with the median server CPU per call. "
        "(!) marks a run with failures. Other load: cores that processes other than the "
        "server and the simulator kept busy in the measured phase (the machine is shared).",
        "",
        "| profile | transport | handshakes/s | server CPU us per handshake + boot | over SP0 "
        "| saturation calls/s | server CPU us per call | over SP0 | p50 / p99 ms "
        "| other load, cores (storm / saturation) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def figure(profile: int, scenario: str, *path: str) -> Any:
        run = runs.get((profile, scenario))
        return None if run is None else _get(run["report"], *path)

    def flag(profile: int, scenario: str) -> str:
        run = runs.get((profile, scenario))
        return "" if run is not None and run["report"].get("ok") else " (!)"

    def extra(profile: int, scenario: str) -> str:
        ours = figure(profile, scenario, "server", "cpu_us_per_call")
        base = figure(0, scenario, "server", "cpu_us_per_call")
        if profile == 0 or ours is None or base is None:
            return "-"
        return f"{ours - base:+,.0f}"

    for profile in PROFILES:
        storm_rate = figure(profile, "connect-storm", "calls_per_second")
        storm_cpu = figure(profile, "connect-storm", "server", "cpu_us_per_call")
        rate = figure(profile, "saturation", "calls_per_second")
        cpu = figure(profile, "saturation", "server", "cpu_us_per_call")
        p50 = figure(profile, "saturation", "latency", "p50_ms")
        p99 = figure(profile, "saturation", "latency", "p99_ms")
        load = " / ".join(
            _fmt(figure(profile, scenario, "other_cores"), 2)
            for scenario in ("connect-storm", "saturation")
        )
        lines.append(
            f"| {profile} | {TRANSPORTS[profile]} "
            f"| {_fmt(storm_rate)}{flag(profile, 'connect-storm')} | {_fmt(storm_cpu)} "
            f"| {extra(profile, 'connect-storm')} "
            f"| {_fmt(rate)}{flag(profile, 'saturation')} | {_fmt(cpu)} "
            f"| {extra(profile, 'saturation')} | {_fmt(p50, 1)} / {_fmt(p99, 1)} | {load} |"
        )
    failed = [run for run in results["runs"] if not run["report"].get("ok")]
    if failed:
        lines += ["", "Runs with failures:", ""]
    for run in failed:
        reasons = run["report"].get("failures") or {}
        detail = "; ".join(f"{count} x {reason}" for reason, count in reasons.items())
        detail += f" {run['report'].get('error', '')[-300:]}".rstrip()
        lines.append(f"- profile {run['profile']}, {run['case']['scenario']}: {detail}")
    return "\n".join(lines) + "\n"


def main(quick: bool, docs: bool, repeat: int = 1) -> int:
    """Run every profile's cases ``repeat`` times (the profiles interleaved, so that a burst
    of load from elsewhere does not land on one profile only); write the results (and with
    ``docs`` the table into docs/performance.md); 0 when every run was free of failures."""
    started = time.time()
    measured_tree = tree()
    chosen = cases(quick)
    pki = Path(tempfile.mkdtemp(prefix="bench-pki-"))
    quiet_budget = [60.0 * repeat]
    runs = []
    try:
        make_pki(pki, max(case.stations for case in chosen))
        for case in [case for _ in range(repeat) for case in chosen]:
            for profile in PROFILES:
                print(f"SP{profile} {case.label:<28}", end=" ", flush=True)
                run = run_case(profile, case, pki, quiet_budget)
                report = run["report"]
                print(
                    f"{'ok' if report.get('ok') else 'FAILED':<6} "
                    f"{_fmt(report.get('calls_per_second'))} calls/s, "
                    f"{_fmt(_get(report, 'server', 'cpu_us_per_call'))} µs/call, "
                    f"other load {_fmt(report.get('other_cores'), 2)} cores",
                    flush=True,
                )
                runs.append(run)
    finally:
        shutil.rmtree(pki, ignore_errors=True)
    results: dict[str, Any] = {
        "command": "python benchmarks/run.py --security"
        + (" --quick" if quick else "")
        + (f" --repeat {repeat}" if repeat > 1 else ""),
        "repeat": repeat,
        "machine": machine(),
        "tree": measured_tree,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_minutes": round((time.time() - started) / 60, 2),
        "cases": [asdict(case) for case in chosen],
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "security.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = render_markdown(results)
    (RESULTS / "security.md").write_text(markdown)
    if docs:
        write_docs(markdown, DOCS_BEGIN, DOCS_END)
    print(markdown)
    return 0 if all(run["report"].get("ok") for run in runs) else 1
