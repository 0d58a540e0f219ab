"""The ``chargeledger`` command: ``serve`` the CSMS, and read the log and projections.

The read commands (``events``, ``stations``, ``transactions``, ``certificates``,
``security-events``, ``reservations``, ``plug-and-charge``) open the store read-only and
fold the log themselves, so they work while a server is writing to the same store.
``--json`` prints one JSON object per line; the fields are documented in docs/cli.md.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from importlib.metadata import version
from typing import Any

import msgspec
import trio

from chargeledger.core.drain import DRAIN_CODES
from chargeledger.core.errors import ChargeLedgerError
from chargeledger.core.events import EVENT_TYPES, LoggedEvent, logged_event
from chargeledger.core.http.keys import new_key, settings_toml
from chargeledger.core.jsonlines import print_json_lines
from chargeledger.core.remote import add_api_arguments, call_api, print_answer
from chargeledger.core.server import run_server
from chargeledger.core.settings import DEFAULT_STORE, load_settings
from chargeledger.core.startup import failure_lines, one_line, startup_problems
from chargeledger.core.store import open_store
from chargeledger.core.times import rfc3339
from chargeledger.projections import (
    Views,
    certificates_json,
    plug_and_charge_json,
    reservation_json,
    security_events_json,
    station_json,
    transaction_json,
)
from chargeledger.projections.security_events import security_event_json

__all__ = ["PlainHelpParser", "main", "plain_text"]


_SUMMARY_CHARS = 120
"""The most of a command's arguments ``chargeledger events`` shows on its line."""


def _command_summary(fields: dict[str, Any]) -> str:
    """What a ``CommandRequested`` asked and who asked, on one line: ``remote_start
    id_token="TAG" connector_id=1 by ops-desk (operator)``; arguments beyond
    ``_SUMMARY_CHARS`` are cut with an ellipsis (``--json`` has them all)."""
    args = " ".join(
        f"{name}={msgspec.json.encode(value).decode()}"
        for name, value in fields["payload"].items()
        if name != "use_case"
    )
    if len(args) > _SUMMARY_CHARS:
        args = args[: _SUMMARY_CHARS - 1] + "…"
    what = fields["command"] if fields["mode"] == "use_case" else f"message {fields['command']}"
    return " ".join(filter(None, (what, args, f"by {fields['key']} ({fields['role']})")))


def _event_line(logged: LoggedEvent) -> str:
    """One aligned line of text for ``chargeledger events`` without ``--json``."""
    fields = logged.event
    detail = fields.get("text") or fields.get("protocol") or ""
    if "code" in fields:
        detail = f"code={fields['code']} {fields.get('reason', '')}"
    if logged.kind == "CommandRequested":
        detail = _command_summary(fields)
    at = rfc3339(fields["at"], 6) if "at" in fields else ""
    return (
        f"{logged.position:>8}  {at:<27} {fields.get('station', '-'):<20} "
        f"{logged.kind:<17} {fields.get('direction', ''):<3} {detail}"
    )


def _events(args: argparse.Namespace) -> int:
    store = open_store(args.store, create=False)
    try:
        records = (
            r
            for r in store.iter_all()
            if (args.station is None or getattr(r.event, "station", None) == args.station)
            and (not args.kind or type(r.event).__name__ in args.kind)
        )
        logged = map(logged_event, records)
        if args.json:
            print_json_lines(logged)
        else:
            for one in logged:
                print(_event_line(one))
    finally:
        store.close()
    return 0


def _views(store_url: str) -> Views:
    store = open_store(store_url, create=False)
    try:
        return Views.replay(store.iter_all())
    finally:
        store.close()


def _stations(args: argparse.Namespace) -> int:
    rows = [station_json(s) for s in _views(args.store).stations.all()]
    if args.json:
        print_json_lines(rows)
    else:
        for row in rows:
            state = "connected" if row["connected"] else "offline"
            boot = (row.get("boot") or {}).get("status", "-")
            print(f"{row['station']:<24} {row['protocol'] or '-':<10} {state:<10} boot={boot}")
    return 0


def _transactions(args: argparse.Namespace) -> int:
    rows = [transaction_json(t) for t in _views(args.store).transactions.all()]
    if args.json:
        print_json_lines(rows)
    else:
        for row in rows:
            anomalies = ",".join(a["kind"] for a in row.get("anomalies", []))
            print(
                f"{row['transaction_id']!s:<12} {row['station']:<20} {row['status']:<7} "
                f"{row['completeness']:<10} energy_wh={row['energy_wh']} {anomalies}"
            )
    return 0


def _certificates(args: argparse.Namespace) -> int:
    rows = [
        certificates_json(state)
        for state in _views(args.store).certificates.all()
        if args.station is None or state.station == args.station
    ]
    if args.json:
        print_json_lines(rows)
    else:
        for row in rows:
            rejected = sum(csr["status"] != "Accepted" for csr in row["csrs"])
            print(
                f"{row['station']:<24} installed={len(row['installed'])} "
                f"csrs={len(row['csrs'])} rejected={rejected} signed={len(row['signed'])} "
                f"deletions={len(row['deletions'])}"
            )
    return 0


def _plug_and_charge(args: argparse.Namespace) -> int:
    """One line (or JSON object) per station with Plug & Charge exchanges."""
    rows = [
        plug_and_charge_json(state)
        for state in _views(args.store).plug_and_charge.all()
        if args.station is None or state.station == args.station
    ]
    if args.json:
        print_json_lines(rows)
    else:
        for row in rows:
            answers = " ".join(
                f"{answer['action']}={answer['status']}" for answer in row["answers"][-3:]
            )
            print(
                f"{row['station']:<24} contracts={len(row['contracts'])} "
                f"ocsp_checks={len(row['ocsp_checks'])} "
                f"provider_calls={len(row['provider_calls'])} "
                f"answers={len(row['answers'])} {answers}"
            )
    return 0


def _reservations(args: argparse.Namespace) -> int:
    """One line (or JSON object) per reservation, in the order they were made."""
    rows = [reservation_json(state) for state in _views(args.store).reservations.all(args.station)]
    if args.json:
        print_json_lines(rows)
    else:
        for row in rows:
            place = f"evse {row['evse_id']}" if row["evse_id"] else row["connector_id"]
            place = place or "station"  # 1.6 connector 0, 2.0.1 no EVSE
            print(
                f"{row['reservation_id']:>8}  {row['station']:<20} {row['status']:<9} "
                f"{place!s:<7} {row['id_token'] or '-':<20} until {row['expires_at'] or '-'}"
            )
    return 0


def _security_events(args: argparse.Namespace) -> int:
    """One line (or JSON object) per security event kept, oldest first per station."""
    states = [
        state
        for state in _views(args.store).security_events.all()
        if args.station is None or state.station == args.station
    ]
    if args.json:
        print_json_lines(security_events_json(state) for state in states)
        return 0
    for state in states:
        for event in map(security_event_json, state.recent):
            flag = "CRITICAL" if event["critical"] else "-"
            print(
                f"{event['position']:>8}  {event['at']:<24} {event['station']:<20} "
                f"{flag:<8} {event['type']} {event['tech_info'] or ''}".rstrip()
            )
    return 0


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(
            args.config,
            host=args.host,
            port=args.port,
            store=args.store,
            node=args.node,
            disabled_plugins=args.disable_plugin or None,
            api_host=args.api_host,
            api_port=args.api_port,
            allow_insecure=args.allow_insecure or None,
        )
    except (ValueError, OSError) as exc:
        print(f"chargeledger serve: {one_line(exc)}", file=sys.stderr)
        return 2
    problems = startup_problems(settings)
    for problem in problems:
        print(f"chargeledger serve: {problem}", file=sys.stderr)
    if problems:
        return 2

    web: Sequence[Any] = ()
    if settings.api_port is not None:
        # Imported here, as the web framework: only when the API is served.
        from chargeledger.core.console.routes import ROUTES as web

    return _run_until_signal("serve", partial(run_server, settings, web=web))


def _run_until_signal(command: str, run: Callable[..., Awaitable[Any]]) -> int:
    """Run ``await nursery.start(run)`` until SIGINT or SIGTERM; its exit status (2, with one
    line per failure, when it failed)."""

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def run_then_stop(
                    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    await run(task_status=task_status)
                    nursery.cancel_scope.cancel()  # it ended by itself (a drain)

                started = await nursery.start(run_then_stop)

                async def stop_on_signal() -> None:
                    # SIGTERM drains a serving node (a rolling restart: docs/operations.md);
                    # SIGINT, a second SIGTERM, or SIGTERM to a worker stops at once (sessions
                    # closed with 1001).
                    log = logging.getLogger("chargeledger")
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        # a worker's CentralSystem has a drain too, with nothing to drain
                        drain = getattr(started, "drain", None) if command == "serve" else None
                        if signum == signal.SIGTERM and drain is not None and drain.request():
                            log.info("%s: draining", name)
                            continue
                        log.info("%s: shutting down", name)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)

    try:
        trio.run(main)
    except BaseException as exc:  # a group from trio's nurseries, usually
        lines = failure_lines(exc)
        if lines is None:
            raise
        for line in lines:
            print(f"chargeledger {command}: {line}", file=sys.stderr)
        return 2
    return 0


def _worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(args.config, store=args.store, node=args.node)
    except (ValueError, OSError) as exc:
        print(f"chargeledger worker: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.node is None:  # not the node name of the serving processes sharing the config
        settings = msgspec.structs.replace(settings, node=f"{settings.node}-worker")
    from chargeledger.core.audit.report import WorkerAudit
    from chargeledger.core.worker import run_worker

    # its audit: findings kept up to date and published (docs/cluster.md, "Audits")
    return _run_until_signal("worker", partial(run_worker, settings, observer=WorkerAudit))


def _drain(args: argparse.Namespace) -> int:
    """``chargeledger drain``: ask a running node to drain; with ``--wait``, until it stopped."""
    status, body = call_api(args, "POST", "/api/node/drain", {"code": args.code})
    code = print_answer(args, "chargeledger drain", status, body, 202)
    if code or not args.wait:
        return code
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        status, _ = call_api(args, "GET", "/health/live")
        if status == 0:  # the API no longer answers: the node stopped
            print(f"node {body['node']} stopped", file=sys.stderr)
            return 0
        time.sleep(0.2)
    print(
        f"chargeledger drain: node {body['node']} still runs after {args.timeout:g} s",
        file=sys.stderr,
    )
    return 1


def _api_key(args: argparse.Namespace) -> int:
    key = new_key()
    print(f"key (give it to {args.name}; it is not stored anywhere): {key}")
    print("add to the settings file (--config):\n")
    print(settings_toml(args.name, args.role, key), end="")
    return 0


_MARKUP = re.compile(r"(?::[a-z]+:)?``?~?([^`]+?)``?")
"""reStructuredText inline markup of our docstrings: ````code````, ``:role:`target```."""


def plain_text(text: str) -> str:
    """``text`` without reStructuredText inline markup, as a terminal should show it."""
    return _MARKUP.sub(r"\1", text)


class PlainHelpParser(argparse.ArgumentParser):
    """An argument parser whose help and usage show docstrings without their markup; the
    subcommands' parsers are of the same class (argparse makes them of the parent's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for text in ("description", "epilog"):  # before wrapping, so lines fill the width
            if kwargs.get(text):
                kwargs[text] = plain_text(kwargs[text])
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        return plain_text(super().format_help())

    def format_usage(self) -> str:
        return plain_text(super().format_usage())


def _parser() -> argparse.ArgumentParser:
    parser = PlainHelpParser(prog="chargeledger", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('chargeledger')}"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def with_store(p: argparse.ArgumentParser, default: str | None) -> None:
        p.add_argument(
            "--store",
            default=default,
            help="sqlite:///PATH, memory:// or postgresql://USER@HOST:PORT/DB[?schema=S] "
            f"(default: $CHARGELEDGER_STORE or {DEFAULT_STORE})",
        )

    serve = commands.add_parser("serve", help="run the CSMS gateway")
    with_store(serve, None)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 9000)")
    serve.add_argument("--config", help="TOML settings file (see docs/operations.md)")
    serve.add_argument("--node", help="this process's node name (default HOSTNAME:PORT)")
    serve.add_argument(
        "--disable-plugin", action="append", metavar="NAME", help="do not load plugin NAME"
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--api-port", type=int, help="serve the HTTP API on this port (0: any)")
    serve.add_argument("--api-host", help="address of the HTTP API (default 127.0.0.1)")
    serve.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow open registration on a non-loopback host (test benches only)",
    )
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker",
        help="follow a shared PostgreSQL store and run its reactions and timers (no stations)",
    )
    with_store(worker, None)
    worker.add_argument("--config", help="TOML settings file (see docs/operations.md)")
    worker.add_argument("--node", help="this process's node name (default HOSTNAME-worker)")
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(run=_worker)
    drain = commands.add_parser(
        "drain",
        help="drain a running node (rolling restart): stop taking stations, close, stop",
        description="Ask the node behind --api to drain: its readiness turns 503, it stops "
        "listening, closes every station's session with --code once idle (stations reconnect "
        "to other nodes), then stops. Needs an admin key. See docs/operations.md.",
    )
    add_api_arguments(drain, "an admin API key")
    drain.add_argument(
        "--code",
        type=int,
        choices=DRAIN_CODES,
        default=DRAIN_CODES[0],
        help="close code: 1012 service restart (default) or 1001 going away",
    )
    drain.add_argument("--wait", action="store_true", help="wait until the node stopped")
    drain.add_argument(
        "--timeout", type=float, default=120.0, help="--wait: give up after this (default 120 s)"
    )
    drain.add_argument("--json", action="store_true", help="print the answer on one line")
    drain.set_defaults(run=_drain)

    api_key = commands.add_parser("api-key", help="make an HTTP API key and its settings entry")
    api_key.add_argument("--name", required=True, help="who holds the key (recorded as author)")
    api_key.add_argument("--role", required=True, choices=["read", "operator", "admin"])
    api_key.set_defaults(run=_api_key)

    events = commands.add_parser("events", help="print the event log")
    with_store(events, None)
    events.add_argument("--station", help="only this station's events")
    events.add_argument(
        "--kind",
        action="append",
        choices=sorted(EVENT_TYPES),
        metavar="KIND",
        help="only events of this kind, e.g. CommandRequested (repeatable; the kinds the "
        "API's kind= accepts, an unknown one is refused with the list)",
    )
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.set_defaults(run=_events)

    for name, run, what in (
        ("stations", _stations, "stations and their current state"),
        ("transactions", _transactions, "transactions with energy, status and anomalies"),
    ):
        sub = commands.add_parser(name, help=f"print {what}")
        with_store(sub, None)
        sub.add_argument("--json", action="store_true", help="one JSON object per line")
        sub.set_defaults(run=run)
    for name, run, what in (
        ("certificates", _certificates, "station certificates, CSRs and signed certificates"),
        ("security-events", _security_events, "the security events stations reported"),
        ("reservations", _reservations, "reservations and their status"),
        ("plug-and-charge", _plug_and_charge, "Plug & Charge answers and OCSP checks"),
    ):
        sub = commands.add_parser(name, help=f"print {what}")
        with_store(sub, None)
        sub.add_argument("--station", help="only this station's")
        sub.add_argument("--json", action="store_true", help="one JSON object per line")
        sub.set_defaults(run=run)
    from chargeledger.core.remote import register as register_command

    register_command(commands)
    from chargeledger.core.station_cli import register as register_station

    register_station(commands)
    from chargeledger.core.lists_cli import register as register_lists

    register_lists(commands)
    from chargeledger.core.tokens_cli import register as register_tokens

    register_tokens(commands)
    from chargeledger.core.tariffs_cli import register as register_tariffs

    register_tariffs(commands, with_store)
    from chargeledger.core.firmware_cli import register as register_firmware

    register_firmware(commands)
    from chargeledger.core.simulator import register as register_simulate

    register_simulate(commands)
    from chargeledger.core.diagnostics_cli import register as register_diagnostics

    register_diagnostics(commands, with_store, _views)
    from chargeledger.core.audit.cli import register as register_audit

    register_audit(commands, with_store)
    from chargeledger.core.profiles_cli import register as register_profiles

    register_profiles(commands, with_store, _views)
    from chargeledger.core.sites_cli import register as register_sites

    register_sites(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chargeledger`` console script."""
    args = _parser().parse_args(argv)
    if getattr(args, "store", None) is None and args.command not in ("serve", "worker"):
        args.store = load_settings().store
    try:
        code: int = args.run(args)
    except BrokenPipeError:  # e.g. piped into head
        return 0
    except (ChargeLedgerError, ValueError) as exc:
        print(f"chargeledger: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
