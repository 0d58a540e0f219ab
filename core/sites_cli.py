"""``chargeledger sites``: sites and their limits through a running server's HTTP API
(docs/smart-charging.md#site-limits).

``set NAME [--station S ...] [--parent P] [--limit L --unit A|W] [--min-allocation M]
[--deadband D] [--min-interval SECONDS] [--phase-limit L1=32 ...] [--station-phases
S=L1[,L2] ...] [--period 17:00-20:00=20[,L1=10] ...]`` defines or redefines a site (an
``admin`` key),
``delete NAME`` deletes it, ``show [NAME]`` prints the sites with the allocations decided
(a ``read`` key). Exit status: 0 done, 2 nothing done: the API's problem ``detail`` is
printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from chargeledger.core.remote import add_api_arguments, api_request

__all__ = ["register"]


def _request(args: argparse.Namespace, method: str, path: str, body: Any, ok: int) -> int:
    data = None if body is None else json.dumps(body).encode()
    try:
        status, answer = api_request(args.api, args.api_key, method, path, data)
    except OSError as exc:
        print(f"chargeledger sites: cannot reach the API at {args.api}: {exc}", file=sys.stderr)
        return 2
    if status != ok:
        detail = answer.get("detail") or answer.get("title") or ""
        print(f"chargeledger sites: {status} {detail}".rstrip(), file=sys.stderr)
        return 2
    if status != 204:
        print(json.dumps(answer, indent=None if args.json else 2))
    return 0


def _path(name: str | None) -> str:
    return "/api/sites" if name is None else f"/api/sites/{quote(name, safe='')}"


def _set(args: argparse.Namespace) -> int:
    body = {
        "stations": args.station or [],
        "parent": args.parent,
        "limit": args.limit,
        "unit": args.unit,
        "min_allocation": args.min_allocation,
        "deadband": args.deadband,
        "min_interval": args.min_interval,
        "description": args.description,
        "strategy": args.strategy,
        "priorities": dict(_priority(text) for text in args.priority or []),
        "max_allocation": args.max_allocation,
        "phase_limits": dict(_phase_limit(text) for text in args.phase_limit or []),
        "station_phases": dict(_station_phases(text) for text in args.station_phases or []),
        "periods": [_period(text) for text in args.period or []],
    }
    return _request(args, "PUT", _path(args.name), body, ok=200)


def _phase_limit(text: str) -> tuple[str, float]:
    phase, _, value = text.partition("=")
    try:
        return phase, float(value)
    except ValueError:
        raise ValueError(f"{text!r}: expected PHASE=LIMIT, e.g. L1=32") from None


def _station_phases(text: str) -> tuple[str, list[str]]:
    station, _, phases = text.rpartition("=")
    if not station or not phases:
        raise ValueError(f"--station-phases {text!r}: expected STATION=L1[,L2,...]")
    return station, phases.split(",")


def _period(text: str) -> dict[str, Any]:
    """``START-END=LIMIT[,PHASE=LIMIT...]`` (or only phase limits) as a period's JSON."""
    times, _, limits = text.partition("=")
    start, _, end = times.partition("-")
    if not start or not end or not limits:
        raise ValueError(f"--period {text!r}: expected START-END=LIMIT[,L1=LIMIT,...]")
    period: dict[str, Any] = {"start": start, "end": end, "phase_limits": {}}
    for item in limits.split(","):
        if "=" in item:
            phase, value = _phase_limit(item)
            period["phase_limits"][phase] = value
        else:
            try:
                period["limit"] = float(item)
            except ValueError:
                raise ValueError(f"--period {text!r}: {item!r} is not a limit") from None
    return period


def _priority(text: str) -> tuple[str, int]:
    station, _, priority = text.rpartition("=")
    if not station or not priority.lstrip("-").isdigit():
        raise ValueError(f"--priority {text!r}: expected STATION=NUMBER")
    return station, int(priority)


def _delete(args: argparse.Namespace) -> int:
    return _request(args, "DELETE", _path(args.name), None, ok=204)


def _show(args: argparse.Namespace) -> int:
    return _request(args, "GET", _path(args.name), None, ok=200)


def register(commands: Any) -> None:
    """Add the ``sites`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "sites",
        help="sites and their limits through a running server's API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    define = actions.add_parser("set", help="define or redefine a site")
    define.add_argument("name")
    define.add_argument("--station", action="append", help="a station of it (repeatable)")
    define.add_argument("--parent", help="the site it is within (a feeder, ...)")
    define.add_argument("--limit", type=float, help="the limit it shares (none: its parents')")
    define.add_argument("--unit", choices=["A", "W"], default="A")
    define.add_argument("--min-allocation", type=float, default=0.0)
    define.add_argument("--deadband", type=float, default=0.0, help="smallest raise sent")
    define.add_argument("--min-interval", type=float, default=0.0, help="seconds between raises")
    define.add_argument("--description", default="")
    define.add_argument("--strategy", choices=["equal", "priority"], default="equal")
    define.add_argument(
        "--priority", action="append", metavar="STATION=N", help="higher first (repeatable)"
    )
    define.add_argument("--max-allocation", type=float, help="the most a transaction gets")
    define.add_argument(
        "--phase-limit", action="append", metavar="PHASE=LIMIT", help="per phase (repeatable)"
    )
    define.add_argument(
        "--station-phases",
        action="append",
        metavar="STATION=L1[,L2]",
        help="a station on fewer than three phases (repeatable)",
    )
    define.add_argument(
        "--period",
        action="append",
        metavar="START-END=LIMIT[,PHASE=LIMIT]",
        help="daily (UTC) other limits, e.g. 17:00-20:00=20 (repeatable)",
    )
    define.set_defaults(run=_set)
    delete = actions.add_parser("delete", help="delete a site")
    delete.add_argument("name")
    delete.set_defaults(run=_delete)
    show = actions.add_parser("show", help="print the sites (or one) and their allocations")
    show.add_argument("name", nargs="?")
    show.set_defaults(run=_show)
    for action, role in ((define, "an admin key"), (delete, "an admin key"), (show, "a read key")):
        add_api_arguments(action, role)
        action.add_argument("--json", action="store_true", help="print JSON on one line")
