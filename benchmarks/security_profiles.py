"""What each station security profile costs ChargeLedger: handshakes per second and server CPU
per handshake (a connect storm), and server CPU per CALL over TLS against plain WebSockets
(saturation), for profiles 0 to 3, and for profile 0 stations over ``wss://`` ("0+TLS": TLS
alone, without the password check that dominates profile 2's handshake). Run through
``benchmarks/run.py``:

    python benchmarks/run.py --security --quick               # about 3 minutes
    python benchmarks/run.py --security --quick --repeat 3    # each case 3 times, the median
    python benchmarks/run.py --security --write-docs          # N=1,000; docs/performance.md

Every case starts ChargeLedger fresh, as its own process, with TLS on a second port (a
``trustme`` CA and ECDSA P-256 certificates made in a temporary directory: the server's, and
one per profile 3 station), ``registration = "registered_only"`` and the HTTP API on loopback;
registers the case's stations at the case's profile through that API (profiles 1 and 2 with a
password, hashed by the server); then runs ``chargeledger simulate`` with what the profile
needs: nothing over ``ws://`` (0), ``--ca-file`` over ``wss://`` (0+TLS), ``--password`` over
``ws://`` (1), ``--password`` over
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
PROFILES = ("0", "0+TLS", "1", "2", "3")
"""The variants measured: a security profile, and ``+TLS`` for a station of that profile that
connects over ``wss://`` anyway (the server admits a station at its profile or above)."""
TRANSPORTS = {
    "0": "`ws://`",
    "0+TLS": "`wss://`, no password",
    "1": "`ws://` + Basic",
    "2": "`wss://` + Basic",
    "3": "`wss://` + client certificate",
}
TLS_PAIRS = (("0+TLS", "0"), ("2", "1"))
"""(over TLS, the same without it): what TLS itself adds, with and without a password."""


def level(variant: str) -> int:
    """The security profile ``variant`` registers its stations at."""
    return int(variant[0])


def over_tls(variant: str) -> bool:
    return variant.endswith("+TLS") or level(variant) >= 2


def prefix(variant: str) -> str:
    """The ``--id-prefix`` of ``variant``'s stations: ``SP2-``, ``SP0T-`` for 0+TLS."""
    return f"SP{variant.replace('+TLS', 'T')}-"


DOCS_BEGIN = "<!-- security profile results: written by run.py --security --write-docs -->"
DOCS_END = "<!-- end of security profile results -->"


def cases(quick: bool) -> list[Case]:
    """A connect storm (each station's handshake and boot) and a saturation run (CALLs on
    open connections) per profile."""
    if quick:
        return [Case("connect-storm", 100, 60), Case("saturation", 50, 8)]
    return [Case("connect-storm", 1000, 120), Case("saturation", 100, 20, call_timeout=60)]


def identity(variant: str, index: int) -> str:
    """The simulator's name for station ``index`` of ``variant`` (``--id-prefix``)."""
    return f"{prefix(variant)}{index:05d}"


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
        station = identity("3", index)
        issued = ca.issue_cert(station, common_name=station)
        issued.cert_chain_pems[0].write_to_path(str(directory / "certs" / f"{station}.pem"))
        issued.private_key_pem.write_to_path(str(directory / "certs" / f"{station}.key"))


def register(api: str, variant: str, stations: int) -> None:
    """Register ``stations`` stations at ``profile`` (with ``PASSWORD`` for 1 and 2) through
    the API, a few at a time (each password is an argon2id hash on the server). Raises
    RuntimeError on the first answer that is not 200."""

    profile = level(variant)

    def one(index: int) -> None:
        path = f"/api/stations/{quote(identity(variant, index), safe='')}"
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


def run_case(variant: str, case: Case, pki: Path, quiet_budget: list[float]) -> dict[str, Any]:
    """One case of one variant against a fresh ChargeLedger (see the module doc)."""
    profile = level(variant)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{prefix(variant).lower()}"))
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
    if over_tls(variant):
        credentials += ("--ca-file", str(pki / "ca.pem"))
    if profile == 3:
        credentials += ("--client-cert-dir", str(pki / "certs"))
    try:
        with server("chargeledger", workdir, config=config, ports=(tls_port, api_port)) as (
            pid,
            url,
        ):
            started = time.monotonic()
            register(f"http://127.0.0.1:{api_port}", variant, case.stations)
            registering = round(time.monotonic() - started, 1)
            if over_tls(variant):
                url = f"wss://127.0.0.1:{tls_port}/ocpp"
            report = simulate(case, url, pid, ("--id-prefix", prefix(variant), *credentials))
        return {
            "profile": variant,
            "case": asdict(case),
            "others_before": others,
            "registering_seconds": registering,
            "report": report,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def medians(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per profile and scenario, the run with the median server CPU per call (the lower of
    the two middle ones for an even count); a run without that figure counts as the most
    expensive, so failures show when most repetitions failed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((str(run["profile"]), run["case"]["scenario"]), []).append(run)

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

    def figure(profile: str, scenario: str, *path: str) -> Any:
        run = runs.get((profile, scenario))
        return None if run is None else _get(run["report"], *path)

    def flag(profile: str, scenario: str) -> str:
        run = runs.get((profile, scenario))
        return "" if run is not None and run["report"].get("ok") else " (!)"

    def extra(profile: str, scenario: str, base_profile: str = "0") -> str:
        ours = figure(profile, scenario, "server", "cpu_us_per_call")
        base = figure(base_profile, scenario, "server", "cpu_us_per_call")
        if profile == base_profile or ours is None or base is None:
            return "-"
        return f"{ours - base:+,.0f}"

    present = {str(run["profile"]) for run in results["runs"]}
    for profile in [variant for variant in PROFILES if variant in present]:
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
    lines += [
        "",
        "What TLS itself adds (server CPU, the median runs above; a difference of two noisy "
        "figures):",
        "",
        "| over TLS | against | per handshake + boot, us | per call at saturation, us |",
        "|---|---|--:|--:|",
    ]
    for tls, plain in [pair for pair in TLS_PAIRS if present.issuperset(pair)]:
        lines.append(
            f"| {tls} ({TRANSPORTS[tls]}) | {plain} ({TRANSPORTS[plain]}) "
            f"| {extra(tls, 'connect-storm', plain)} | {extra(tls, 'saturation', plain)} |"
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


def main(quick: bool, docs: bool, repeat: int = 1, variants: tuple[str, ...] = PROFILES) -> int:
    """Run the cases of every variant of ``variants`` ``repeat`` times (the variants
    interleaved, so that a burst of load from elsewhere does not land on one only); write the
    results (``security.json``, or ``security-VARIANTS.json`` for a subset; and with ``docs``
    the table into docs/performance.md); 0 when every run was free of failures."""
    unknown = set(variants) - set(PROFILES)
    if unknown:
        raise SystemExit(f"unknown security profiles {sorted(unknown)}; choose from {PROFILES}")
    name = "security" if set(variants) == set(PROFILES) else "security-" + "-".join(variants)
    started = time.time()
    measured_tree = tree()
    chosen = cases(quick)
    pki = Path(tempfile.mkdtemp(prefix="bench-pki-"))
    quiet_budget = [60.0 * repeat]
    runs = []
    try:
        make_pki(pki, max(case.stations for case in chosen))
        for case in [case for _ in range(repeat) for case in chosen]:
            for profile in [variant for variant in PROFILES if variant in variants]:
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
        + (f" --repeat {repeat}" if repeat > 1 else "")
        + (f" --security-profiles {','.join(variants)}" if name != "security" else ""),
        "repeat": repeat,
        "machine": machine(),
        "tree": measured_tree,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_minutes": round((time.time() - started) / 60, 2),
        "cases": [asdict(case) for case in chosen],
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = render_markdown(results)
    (RESULTS / f"{name}.md").write_text(markdown)
    if docs:
        write_docs(markdown, DOCS_BEGIN, DOCS_END)
    print(markdown)
    return 0 if all(run["report"].get("ok") for run in runs) else 1
