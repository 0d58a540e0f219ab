"""``chargeledger station``: register, set the password of, and deregister stations through a
running server's HTTP API (an ``admin`` key; docs/security.md).

``register ID --profile N [--password P | --generate-password] [--disable]`` records the
registration (``StationRegistered``) and, when asked, the password (``StationPasswordSet``,
its hash only); a generated password is printed this once. ``deregister ID`` removes the
registration. Exit status: 0 done, 2 nothing (or not everything) done: the API's problem
``detail`` is printed.
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


def register(commands: Any) -> None:
    """Add the ``station`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "station",
        help="register or deregister a station through a running server's API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
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
