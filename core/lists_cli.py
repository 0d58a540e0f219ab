"""``chargeledger lists``: local authorization lists through a running server's HTTP API
(docs/authorization.md).

``define NAME [--group G | --tokens T ...] [--station S ...]`` defines or redefines a list
(an ``operator`` key; every token, a group's or the named ones; every station or the named
ones), ``delete NAME`` deletes it, ``push [--station S ...] [--full]`` brings stations up to
date now, ``show`` prints the definitions and ``sync [--behind]`` each station's sync state
(a ``read`` key). Exit status: 0 done, 1 ``sync --behind`` found stations behind, 2 nothing
done: the API's problem ``detail`` is printed.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from chargeledger.core.remote import add_api_arguments, call_api, print_answer

__all__ = ["register"]


def _answer(args: argparse.Namespace, status: int, body: Any, ok: int) -> int:
    return print_answer(args, "chargeledger lists", status, body, ok)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return call_api(args, method, path, body)


def _define(args: argparse.Namespace) -> int:
    selection = "group" if args.group else "tokens" if args.tokens else "all"
    body = {
        "selection": selection,
        "group": args.group,
        "tokens": args.tokens,
        "stations": args.station,
        "description": args.description,
    }
    path = f"/api/local-lists/{quote(args.name, safe='')}"
    return _answer(args, *_call(args, "PUT", path, body), ok=200)


def _delete(args: argparse.Namespace) -> int:
    path = f"/api/local-lists/{quote(args.name, safe='')}"
    return _answer(args, *_call(args, "DELETE", path), ok=204)


def _push(args: argparse.Namespace) -> int:
    body = {"stations": args.station, "full": args.full}
    return _answer(args, *_call(args, "POST", "/api/local-lists/push", body), ok=202)


def _show(args: argparse.Namespace) -> int:
    return _answer(args, *_call(args, "GET", "/api/local-lists"), ok=200)


def _sync(args: argparse.Namespace) -> int:
    path = "/api/local-lists/sync" + ("?behind=true" if args.behind else "")
    status, body = _call(args, "GET", path)
    done = _answer(args, status, body, ok=200)
    return 1 if done == 0 and args.behind and body else done


def register(commands: Any) -> None:
    """Add the ``lists`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "lists",
        help="local authorization lists through a running server's API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    define = actions.add_parser("define", help="define or redefine a list")
    define.add_argument("name")
    chosen = define.add_mutually_exclusive_group()
    chosen.add_argument("--group", help="the tokens of this group (default: every token)")
    chosen.add_argument("--tokens", nargs="+", metavar="TOKEN", help="these tokens")
    define.add_argument(
        "--station", action="append", help="a station it goes to (repeatable; default: all)"
    )
    define.add_argument("--description", default="")
    define.set_defaults(run=_define)
    delete = actions.add_parser("delete", help="delete a list")
    delete.add_argument("name")
    delete.set_defaults(run=_delete)
    push = actions.add_parser("push", help="bring stations up to date now")
    push.add_argument("--station", action="append", help="default: every connected station")
    push.add_argument("--full", action="store_true", help="with a full update")
    push.set_defaults(run=_push)
    show = actions.add_parser("show", help="print the list definitions")
    show.set_defaults(run=_show)
    sync = actions.add_parser("sync", help="print each station's list sync state")
    sync.add_argument("--behind", action="store_true", help="only stations behind (exit 1)")
    sync.set_defaults(run=_sync)
    for action, role in (
        (define, "an operator key"),
        (delete, "an operator key"),
        (push, "an operator key"),
        (show, "a read key"),
        (sync, "a read key"),
    ):
        add_api_arguments(action, role)
        action.add_argument("--json", action="store_true", help="print JSON on one line")
