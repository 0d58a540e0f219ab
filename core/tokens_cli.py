"""``chargeledger tokens``: manage the ID-token registry (docs/authorization.md).

``add ID [--type T] [--status S] [--expiry RFC3339] [--group G] [--max-concurrent N]
[--note TEXT] [--owner TEXT]`` registers a token (again: a full update, every option left
out takes its default); ``update ID ...`` changes only the options given; ``block ID``
registers it Blocked, keeping the rest; ``remove ID [--type T]`` removes it (without
``--type``: every type registered under that text); ``list [--json]``; ``import FILE.csv``
registers every row (columns ``id_token,type,status,expiry,group,max_concurrent,note,owner``,
a header row naming them): all in one commit, or none when a row is invalid.

By default through a running server's HTTP API (an ``operator`` key to change, ``read`` to
list), recorded with the key's name. With ``--store URL`` the change is written to the store
directly, recorded as asked by ``--name`` (default ``cli``): only while no server uses that
store, which would not see it until restarted. Exit status: 0 done, 2 nothing done (the
reason is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from chargeledger.core.events import Event, Recorded
from chargeledger.core.remote import add_api_arguments, api_request
from chargeledger.core.store import open_store
from chargeledger.core.tokens import (
    ID_TOKEN_TYPES,
    TokenRequest,
    read_csv,
    registration_events,
    removal_events,
)
from chargeledger.projections import TokenState, Views
from chargeledger.projections.tokens import TOKEN_STATUSES

__all__ = ["register"]


class Failed(Exception):
    """Nothing was done; the message says why."""


class _Api:
    """The registry behind a running server's HTTP API."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.api, self.key = args.api, args.api_key

    def _call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        data = None if body is None else msgspec.json.encode(body)
        try:
            status, answer = api_request(self.api, self.key, method, path, data)
        except OSError as exc:
            raise Failed(f"cannot reach the API at {self.api}: {exc}") from None
        if status != expect:
            detail = answer.get("detail") or answer.get("title") or ""
            raise Failed(f"{status} {detail}".rstrip())
        return answer

    def get(self, id_token: str, type: str | None) -> dict[str, Any] | None:
        query = "" if type is None else "?" + urlencode({"type": type})
        try:
            answer: dict[str, Any] = self._call("GET", f"/api/tokens/{_path(id_token)}{query}")
        except Failed as exc:
            if str(exc).startswith("404"):
                return None
            raise
        return answer

    def register(self, requests: list[TokenRequest]) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._call("POST", "/api/tokens", requests)
        return answer

    def remove(self, id_token: str, type: str | None) -> int:
        query = "" if type is None else "?" + urlencode({"type": type})
        try:
            self._call("DELETE", f"/api/tokens/{_path(id_token)}{query}", expect=204)
        except Failed as exc:
            if str(exc).startswith("404"):
                return 0
            raise
        return 1

    def all(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._call("GET", "/api/tokens")
        return answer


class _Store:
    """The registry in a store no server is using, changed as asked by ``name``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url, self.name = args.direct_store, args.name

    def _views(self) -> Views:
        store = open_store(self.url, create=False)
        try:
            return Views.replay(store.iter_all())
        finally:
            store.close()

    def _append(self, pairs: list[tuple[str, Event]]) -> list[Recorded]:
        store = open_store(self.url)
        try:
            return store.append([(stream, 1, event) for stream, event in pairs])
        finally:
            store.close()

    def get(self, id_token: str, type: str | None) -> dict[str, Any] | None:
        state = self._views().tokens.get(id_token, type)
        return None if state is None else _builtins(state)

    def register(self, requests: list[TokenRequest]) -> list[dict[str, Any]]:
        pairs = registration_events(requests, self.name, time.time())
        self._append(list(pairs))
        views = self._views()
        found = [views.tokens.get(event.id_token, event.type) for _, event in pairs]
        return [_builtins(state) for state in found if state is not None]

    def remove(self, id_token: str, type: str | None) -> int:
        pairs = removal_events(self._views().tokens, id_token, type, self.name, time.time())
        self._append(list(pairs))
        return len(pairs)

    def all(self) -> list[dict[str, Any]]:
        return [_builtins(state) for state in self._views().tokens.all()]


def _path(id_token: str) -> str:
    return quote(id_token, safe="")


def _builtins(state: TokenState) -> dict[str, Any]:
    document: dict[str, Any] = msgspec.to_builtins(state)
    return document


_FIELDS = ("type", "status", "expiry", "group", "max_concurrent", "note", "owner")
"""The options of ``add`` / ``update``, as ``TokenRequest`` fields."""


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name) is not None}


def _request(fields: dict[str, Any]) -> TokenRequest:
    try:
        return msgspec.convert(fields, TokenRequest)
    except msgspec.ValidationError as exc:
        raise Failed(str(exc)) from None


def _registry(args: argparse.Namespace) -> _Api | _Store:
    return _Store(args) if args.direct_store else _Api(args)


def _print(states: list[dict[str, Any]], as_json: bool) -> None:
    for state in states:
        if as_json:
            print(json.dumps(state))
        else:
            group = state.get("group") or "-"
            print(
                f"{state['id_token']:<24} {state['type']:<10} {state['status']:<9} "
                f"group={group} expiry={state.get('expiry') or '-'} "
                f"max_concurrent={state.get('max_concurrent') or '-'}"
            )


def _add(args: argparse.Namespace) -> list[dict[str, Any]]:
    return _registry(args).register([_request({"id_token": args.id_token, **_given(args)})])


def _update(args: argparse.Namespace, changes: dict[str, Any]) -> list[dict[str, Any]]:
    registry = _registry(args)
    current = registry.get(args.id_token, args.type)
    if current is None:
        raise Failed(f"ID token {args.id_token!r} is not registered (use `tokens add`)")
    fields = {name: current[name] for name in ("id_token", *_FIELDS)}
    return registry.register([_request({**fields, **changes})])


def _remove(args: argparse.Namespace) -> list[dict[str, Any]]:
    if not _registry(args).remove(args.id_token, args.type):
        raise Failed(f"ID token {args.id_token!r} is not registered")
    return []


def _import(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        requests = read_csv(Path(args.file).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise Failed(f"{args.file}: {exc}") from None
    if not requests:
        raise Failed(f"{args.file}: no tokens")
    states = _registry(args).register(requests)
    print(f"imported {len(states)} token(s)", file=sys.stderr)
    return states


_ACTIONS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {
    "add": _add,
    "update": lambda args: _update(args, _given(args)),
    "block": lambda args: _update(args, {"status": "Blocked"}),
    "remove": _remove,
    "list": lambda args: _registry(args).all(),
    "import": _import,
}


def _run(args: argparse.Namespace) -> int:
    try:
        states = _ACTIONS[args.action](args)
    except Failed as exc:
        print(f"chargeledger tokens {args.action}: {exc}", file=sys.stderr)
        return 2
    _print(states, args.json)
    return 0


def _common(parser: argparse.ArgumentParser, role: str) -> None:
    add_api_arguments(parser, role)
    parser.add_argument(
        "--store",
        dest="direct_store",
        metavar="URL",
        help="write to this store directly instead (no server may be using it)",
    )
    parser.add_argument("--name", default="cli", help="who asks, with --store (default cli)")
    parser.add_argument("--json", action="store_true", help="one JSON object per token")


def _fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=ID_TOKEN_TYPES, help="2.0.1 type (default ISO14443)")
    parser.add_argument("--status", choices=TOKEN_STATUSES, help="default Accepted")
    parser.add_argument("--expiry", help="RFC 3339 with an offset: answered Expired from then")
    parser.add_argument("--group", help="group id (1.6 parentIdTag, 2.0.1 groupIdToken)")
    parser.add_argument(
        "--max-concurrent", type=int, help="transactions it may have running at once"
    )
    parser.add_argument("--note", help="free text")
    parser.add_argument("--owner", help="whose token it is")


def register(commands: Any) -> None:
    """Add the ``tokens`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "tokens",
        help="manage the ID-token registry (who may charge)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    for name, what in (("add", "register a token (again: replace it)"), ("update", "change it")):
        sub = actions.add_parser(name, help=what)
        sub.add_argument("id_token")
        _fields(sub)
        _common(sub, "an operator key")
    for name, what in (("block", "register it Blocked"), ("remove", "remove its registration")):
        sub = actions.add_parser(name, help=what)
        sub.add_argument("id_token")
        sub.add_argument("--type", choices=ID_TOKEN_TYPES, help="only this type's registration")
        _common(sub, "an operator key")
    listing = actions.add_parser("list", help="print the registered tokens")
    _common(listing, "a read key")
    bulk = actions.add_parser("import", help="register every token of a CSV file")
    bulk.add_argument("file", metavar="FILE.csv")
    _common(bulk, "an operator key")
    parser.set_defaults(run=_run)
