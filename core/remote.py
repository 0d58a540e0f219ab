"""``chargeledger command``: send a use case to a station through a running server's HTTP API.

The use cases and their arguments come from :data:`chargeledger.core.usecases.USE_CASES`;
arguments are checked here against the use case's argument struct before anything is sent,
then posted to ``/api/stations/{station}/commands``, where the server records the command with
the API key's name and sends it through the one door. Exit status: 0 when the station accepted,
1 when it answered but did not accept, 2 when nothing was decided (bad arguments, the API
unreachable or refusing: its problem's ``detail`` is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import msgspec

from chargeledger.core.usecases import USE_CASES, UseCaseArgs

__all__ = [
    "DEFAULT_API",
    "add_api_arguments",
    "api_request",
    "call_api",
    "parse_arguments",
    "print_answer",
    "register",
]

DEFAULT_API = "http://127.0.0.1:8080"


def parse_arguments(use_case: str, pairs: list[str]) -> UseCaseArgs:
    """The arguments of ``use_case`` from ``NAME=VALUE`` pairs. A value is read as JSON when it
    is JSON (``1``, ``true``, ``["a","b"]``, ``{"k":"v"}``), as a string otherwise; numbers in
    strings are converted where the field wants a number. ``ValueError`` says what is wrong."""
    if use_case not in USE_CASES:
        raise ValueError(f"unknown use case {use_case!r}; `chargeledger command --list` lists them")
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            raise ValueError(f"--arg {pair!r}: expected NAME=VALUE")
        try:
            fields[name] = json.loads(text)
        except json.JSONDecodeError:
            fields[name] = text
    try:
        return msgspec.convert(fields, USE_CASES[use_case].args, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{use_case}: {exc}") from None


def api_request(
    api: str, key: str | None, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """Send ``method path`` (JSON ``body``) to the API at ``api`` with the bearer ``key``;
    the status and the JSON answer (a problem's ``detail`` for an error without JSON).
    ``OSError`` when the API cannot be reached."""
    url = f"{api.rstrip('/')}{path}"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except json.JSONDecodeError:
            return error.code, {"detail": error.reason}


def call_api(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """:func:`api_request` to ``args.api`` with ``args.api_key`` and ``body`` as JSON; status
    0 and the reason as ``detail`` when the API cannot be reached."""
    data = None if body is None else json.dumps(body).encode()
    try:
        return api_request(args.api, args.api_key, method, path, data)
    except OSError as exc:
        return 0, {"detail": f"cannot reach the API at {args.api}: {exc}"}


def print_answer(args: argparse.Namespace, program: str, status: int, body: Any, ok: int) -> int:
    """Print an API answer as a CLI does: the JSON body (on one line with ``args.json``;
    nothing for 204) and 0 when ``status`` is ``ok``, else ``program: STATUS detail`` on
    stderr and 2."""
    if status != ok:
        detail = body.get("detail") or body.get("title") or ""
        shown = f"{status} {detail}" if status else detail
        print(f"{program}: {shown}".rstrip(), file=sys.stderr)
        return 2
    if status != 204:
        print(json.dumps(body, indent=None if args.json else 2))
    return 0


def _post(api: str, key: str | None, station: str, body: bytes) -> tuple[int, dict[str, Any]]:
    return api_request(api, key, "POST", f"/api/stations/{quote(station, safe='')}/commands", body)


def _list() -> int:
    for use_case in USE_CASES.values():
        arguments = " ".join(
            f"{field.name}=..." if field.required else f"[{field.name}=...]"
            for field in msgspec.structs.fields(use_case.args)
        )
        print(f"{use_case.name} {arguments}".rstrip())
        print(f"    {use_case.summary} (role: {use_case.role})")
    return 0


def _command(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    if not args.station or not args.use_case:
        print("chargeledger command: give STATION and USE_CASE (or --list)", file=sys.stderr)
        return 2
    arguments = parse_arguments(args.use_case, args.arg or [])
    try:
        status, body = _post(args.api, args.api_key, args.station, msgspec.json.encode(arguments))
    except OSError as exc:
        print(f"chargeledger command: cannot reach the API at {args.api}: {exc}", file=sys.stderr)
        return 2
    if status != 200:
        detail = body.get("detail") or body.get("title") or ""
        print(f"chargeledger command: {status} {detail}".rstrip(), file=sys.stderr)
        return 2
    print(json.dumps(body, indent=None if args.json else 2))
    return 0 if body.get("accepted") else 1


def add_api_arguments(parser: argparse.ArgumentParser, key_role: str) -> None:
    """``--api`` and ``--api-key`` (from ``$CHARGELEDGER_API_URL`` / ``$CHARGELEDGER_API_KEY``)."""
    parser.add_argument(
        "--api",
        default=os.environ.get("CHARGELEDGER_API_URL", DEFAULT_API),
        help=f"the server's API (default: $CHARGELEDGER_API_URL or {DEFAULT_API})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CHARGELEDGER_API_KEY"),
        help=f"{key_role} (default: $CHARGELEDGER_API_KEY; none for a keyless local API)",
    )


def register(commands: Any) -> None:
    """Add the ``command`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "command",
        help="send a use case to a station through a running server's API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("station", nargs="?", help="the station's id")
    parser.add_argument("use_case", nargs="?", metavar="USE_CASE", help=", ".join(USE_CASES))
    parser.add_argument(
        "--arg", action="append", metavar="NAME=VALUE", help="a use-case argument (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the use cases and arguments")
    add_api_arguments(parser, "an operator key")
    parser.add_argument("--json", action="store_true", help="print the answer on one line")
    parser.set_defaults(run=_command)
