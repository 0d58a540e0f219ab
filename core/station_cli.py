"""``chargeledger station``: show one station, and register, set the password of, and deregister
stations through a running server's HTTP API (docs/device-management.md, docs/security.md).

``show ID [--json]`` (a ``read`` key) prints everything the server knows of the station: its
connection and boot, a summary of its device model, its problems, the latest meter readings,
the messages it displays, and the links to its other views (firmware, logs, monitors,
customer information, ...).

``register ID --profile N [--password P | --generate-password] [--disable]`` (an ``admin``
key) records the registration (``StationRegistered``) and, when asked, the password
(``StationPasswordSet``, its hash only); a generated password is printed this once.
``deregister ID`` removes the registration. Exit status: 0 done, 2 nothing (or not
everything) done: the API's problem ``detail`` is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from chargeledger.core.remote import add_api_arguments, api_request

__all__ = ["register"]


def _failed(status: int, body: dict[str, Any]) -> int:
    detail = body.get("detail") or body.get("title") or ""
    print(f"chargeledger station: {status} {detail}".rstrip(), file=sys.stderr)
    return 2


def _register(args: argparse.Namespace) -> int:
    path = f"/api/stations/{quote(args.station, safe='')}"
    registration = {"description": args.description, "profile": args.profile}
    registration["enabled"] = not args.disable
    status, body = api_request(
        args.api, args.api_key, "PUT", f"{path}/registration", json.dumps(registration).encode()
    )
    if status != 200:
        return _failed(status, body)
    print(json.dumps(body))
    if args.password is None and not args.generate_password:
        if args.profile in (1, 2) and not body.get("has_password"):
            print(
                f"note: profile {args.profile} needs a password: --password or --generate-password",
                file=sys.stderr,
            )
        return 0
    request = {} if args.password is None else {"password": args.password}
    status, body = api_request(
        args.api, args.api_key, "POST", f"{path}/password", json.dumps(request).encode()
    )
    if status != 200:
        return _failed(status, body)
    if args.generate_password:
        print(f"password (shown this once; only its hash is recorded): {body['password']}")
    return 0


def _deregister(args: argparse.Namespace) -> int:
    path = f"/api/stations/{quote(args.station, safe='')}/registration"
    status, body = api_request(args.api, args.api_key, "DELETE", path)
    return 0 if status == 204 else _failed(status, body)


SHOWN = ("device_model", "problems", "meter", "display_messages")
"""The views ``show`` fetches besides the station view, by their name in its ``links``."""


def _show(args: argparse.Namespace) -> int:
    path = f"/api/stations/{quote(args.station, safe='')}"
    status, view = api_request(args.api, args.api_key, "GET", path)
    if status != 200:
        return _failed(status, view)
    shown: dict[str, Any] = {"station": view}
    for name in SHOWN:
        status, body = api_request(args.api, args.api_key, "GET", view["links"][name])
        if status != 200:
            return _failed(status, body)
        shown[name] = body
    if args.json:
        print(json.dumps(shown))
    else:
        print("\n".join(_show_lines(shown)))
    return 0


def _show_lines(shown: dict[str, Any]) -> list[str]:
    """``show`` as text: one block per view."""
    state, model = shown["station"]["state"], shown["device_model"]
    boot = state.get("boot") or {}
    lines = [
        f"{state['station']}  {state['protocol'] or '-'}  "
        f"{'connected' if state['connected'] else 'offline'}  boot={boot.get('status') or '-'}  "
        f"{boot.get('vendor') or '-'} {boot.get('model') or '-'} "
        f"firmware {boot.get('firmware_version') or '-'}",
        f"device model: {model['total']} variables, {len(model['reports'])} reports, "
        f"{len(model['unknown_variables'])} unknown",
    ]
    for report in model["reports"][-3:]:
        done = "complete" if report["complete"] else f"parts {report['seq_nos']}"
        lines.append(f"  report {report['request_id']} {report['base'] or '-'} {done}")
    problems = shown["problems"]
    lines.append(f"problems: {len(problems['active'])} active, {len(problems['recent'])} recent")
    for problem in problems["active"]:
        lines.append(
            f"  {problem['key']}  {problem['source']}  {problem['actual_value'] or '-'}  "
            f"{problem['tech_code'] or ''} {problem['tech_info'] or ''}".rstrip()
        )
    readings = shown["meter"]["readings"]
    lines.append(f"meter: {len(readings)} readings")
    for r in readings:
        where = f"connector {r['connector_id']}"
        lines.append(
            f"  {where:<12} {r['measurand']} {r['phase'] or '-'} {r['location']}  "
            f"{r['value']} {r['unit'] or ''}  {r['context'] or '-'}  {r['timestamp'] or '-'}"
            + (f"  transaction {r['transaction_id']}" if r["transaction_id"] is not None else "")
        )
    messages = shown["display_messages"]["messages"]
    lines.append(f"display messages: {len(messages)}")
    for m in messages:
        window = f"{m['start_date_time'] or '…'} → {m['end_date_time'] or '…'}"
        lines.append(
            f"  {m['id']:>4}  {m['priority'] or '-'}  {m['state'] or 'any state'}  {window}  "
            f"{m['window']}  {m['content']!r}"
        )
    lines.append("links:")
    lines += [f"  {name:<22} {link}" for name, link in shown["station"]["links"].items()]
    return lines


def register(commands: Any) -> None:
    """Add the ``station`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "station",
        help="show, register or deregister a station through a running server's API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="everything the server knows of one station")
    show.add_argument("station", help="the station's identity")
    show.add_argument("--json", action="store_true", help="one JSON object: every view")
    add_api_arguments(show, "a read key")
    show.set_defaults(run=_show)
    add = actions.add_parser("register", help="register a station (again: replace it)")
    add.add_argument("station", help="the station's identity")
    add.add_argument(
        "--profile",
        type=int,
        choices=[0, 1, 2, 3],
        default=0,
        help="the lowest security profile it may connect with (default 0)",
    )
    password = add.add_mutually_exclusive_group()
    password.add_argument("--password", help="its HTTP Basic password (16-40 characters)")
    password.add_argument(
        "--generate-password", action="store_true", help="generate one and print it once"
    )
    add.add_argument("--disable", action="store_true", help="refuse its connections")
    add.add_argument("--description", default="", help="free text (where it is, ...)")
    add_api_arguments(add, "an admin key")
    add.set_defaults(run=_register)
    remove = actions.add_parser("deregister", help="remove a station's registration")
    remove.add_argument("station", help="the station's identity")
    add_api_arguments(remove, "an admin key")
    remove.set_defaults(run=_deregister)
