"""``chargeledger tariffs`` (through a running server's API) and ``chargeledger rate`` (on the
store): tariffs, their assignments and re-rating (docs/tariffs.md).

``tariffs add ID (--file TARIFF.json | --currency EUR [--energy P] [--time P] [--parking P]
[--session-fee P] [--min P] [--max P] [--tax-rate R] [--valid-from T] [--valid-to T]
[--timezone Z] [--band SPEC]... [--description TEXT])`` defines (or redefines: the whole
tariff) a tariff; a band is ``DAYS HH:MM-HH:MM energy=P time=P parking=P`` (``DAYS``:
``*``, ``Mon-Fri`` or ``Sat,Sun``; the prices given replace the base ones). ``list``,
``show ID``, ``remove ID``; ``assign ID TARGET [--group G]`` (``TARGET``: ``default`` or
``station:<id>``), ``unassign ID TARGET [--group G]``, ``assignments``. Changes need an
``admin`` key, reading a ``read`` key.

``rate --tariff ID|FILE.json [--from T] [--to T]`` re-rates the transactions that ended
between ``--from`` and ``--to`` (RFC 3339) with a tariff of the registry or of a file, and
prints each one's total under the tariff it got and under this one, and the totals. It
reads the store and records nothing. Exit status: 0 done, 2 nothing done (the reason is
printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from chargeledger.core.jsonlines import print_json_lines
from chargeledger.core.remote import add_api_arguments, api_request
from chargeledger.core.store import open_store
from chargeledger.core.tariff import WEEKDAYS, Tariff, check_tariff, parse_instant
from chargeledger.projections import Views
from chargeledger.projections.rating import rerate, summary

__all__ = ["parse_band", "register"]


class Failed(Exception):
    """Nothing was done; the message says why."""


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else msgspec.json.encode(body)
    try:
        status, answer = api_request(args.api, args.api_key, method, path, data)
    except OSError as exc:
        raise Failed(f"cannot reach the API at {args.api}: {exc}") from None
    if status >= 300:
        detail = answer.get("detail") or answer.get("title") or ""
        raise Failed(f"{status} {detail}".rstrip())
    return answer


def _days(text: str) -> list[str]:
    if text == "*":
        return []
    if "-" in text:
        first, _, last = text.partition("-")
        if first not in WEEKDAYS or last not in WEEKDAYS:
            raise ValueError(f"days {text!r}: expected like Mon-Fri")
        return list(WEEKDAYS[WEEKDAYS.index(first) : WEEKDAYS.index(last) + 1])
    return text.split(",")


_BAND_PRICES = {"energy": "energy_per_kwh", "time": "time_per_hour", "parking": "parking_per_hour"}


def parse_band(spec: str) -> dict[str, Any]:
    """A ``--band`` (``Mon-Fri 08:00-20:00 energy=0.40 parking=2``) as a band's fields;
    ``ValueError`` saying what is wrong."""
    parts = spec.split()
    if len(parts) < 2 or parts[1].count("-") != 1:
        raise ValueError(f"band {spec!r}: expected 'DAYS HH:MM-HH:MM energy=P time=P parking=P'")
    start, end = parts[1].split("-")
    band: dict[str, Any] = {"days": _days(parts[0]), "start": start, "end": end}
    for price in parts[2:]:
        name, _, value = price.partition("=")
        if name not in _BAND_PRICES or not value:
            raise ValueError(f"band {spec!r}: {price!r} is not energy=, time= or parking=")
        band[_BAND_PRICES[name]] = value
    return band


_OPTIONS = {
    "currency": "currency",
    "energy": "energy_per_kwh",
    "time": "time_per_hour",
    "parking": "parking_per_hour",
    "session_fee": "session_fee",
    "min": "min_price",
    "max": "max_price",
    "tax_rate": "tax_rate",
    "valid_from": "valid_from",
    "valid_to": "valid_to",
    "timezone": "timezone",
    "description": "description",
}
"""``tariffs add`` options and the tariff fields they set."""


def _tariff_of(fields: dict[str, Any], tariff_id: str) -> Tariff:
    try:
        tariff = msgspec.convert({**fields, "id": tariff_id}, Tariff)
        check_tariff(tariff)
    except (msgspec.ValidationError, ValueError, InvalidOperation) as exc:
        raise Failed(str(exc)) from None
    return tariff


def _read_file(path: str) -> dict[str, Any]:
    try:
        fields = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Failed(f"{path}: {exc}") from None
    if type(fields) is not dict:
        raise Failed(f"{path}: a tariff is a JSON object")
    return fields


def _add(args: argparse.Namespace) -> list[Any]:
    if args.file:
        fields = _read_file(args.file)
        fields.pop("id", None)
    else:
        fields = {
            field: getattr(args, option)
            for option, field in _OPTIONS.items()
            if getattr(args, option) is not None
        }
        try:
            fields["bands"] = [parse_band(spec) for spec in args.band or []]
        except ValueError as exc:
            raise Failed(str(exc)) from None
    tariff = _tariff_of(fields, args.tariff_id)
    body = msgspec.to_builtins(tariff)
    del body["id"]
    return [_call(args, "PUT", f"/api/tariffs/{_path(args.tariff_id)}", body)]


def _path(text: str) -> str:
    return quote(text, safe="")


def _assign(args: argparse.Namespace) -> list[Any]:
    body = {"tariff_id": args.tariff_id, "target": args.target, "group": args.group}
    return [_call(args, "POST", "/api/tariff-assignments", body)]


def _unassign(args: argparse.Namespace) -> list[Any]:
    query = {"tariff_id": args.tariff_id, "target": args.target}
    if args.group is not None:
        query["group"] = args.group
    _call(args, "DELETE", f"/api/tariff-assignments?{urlencode(query)}")
    return []


def _remove(args: argparse.Namespace) -> list[Any]:
    _call(args, "DELETE", f"/api/tariffs/{_path(args.tariff_id)}")
    return []


def _text(row: dict[str, Any]) -> str:
    if "tariff" in row:
        tariff = row["tariff"]
        return (
            f"{tariff['id']:<16} {tariff['currency']} energy={tariff['energy_per_kwh']}"
            f" time={tariff['time_per_hour']} parking={tariff['parking_per_hour']}"
            f" session={tariff['session_fee']} tax={tariff['tax_rate']}"
            f" bands={len(tariff['bands'])}"
        )
    return f"{row['tariff_id']:<16} {row['target']:<24} group={row.get('group') or '*'}"


_ACTIONS: dict[str, Callable[[argparse.Namespace], list[Any]]] = {
    "add": _add,
    "list": lambda args: list(_call(args, "GET", "/api/tariffs")),
    "show": lambda args: [_call(args, "GET", f"/api/tariffs/{_path(args.tariff_id)}")],
    "remove": _remove,
    "assign": _assign,
    "unassign": _unassign,
    "assignments": lambda args: list(_call(args, "GET", "/api/tariff-assignments")),
}


def _run(args: argparse.Namespace) -> int:
    try:
        rows = _ACTIONS[args.action](args)
    except Failed as exc:
        print(f"chargeledger tariffs {args.action}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json_lines(rows)
    else:
        for row in rows:
            print(_text(row))
    return 0


def _instant(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_instant(text).timestamp()
    except ValueError:
        raise Failed(f"{option} {text!r} is not an RFC 3339 date-time with an offset") from None


def _rate(args: argparse.Namespace) -> int:
    try:
        since, until = _instant(args.since, "--from"), _instant(args.until, "--to")
        store = open_store(args.store, create=False)
        try:
            views = Views.replay(store.iter_all())
        finally:
            store.close()
        if Path(args.tariff).is_file():
            fields = _read_file(args.tariff)
            tariff = _tariff_of(fields, str(fields.pop("id", Path(args.tariff).stem)))
        else:
            state = views.tariffs.get(args.tariff)
            if state is None:
                raise Failed(f"tariff {args.tariff!r} is neither defined nor a file")
            tariff = state.tariff
    except Failed as exc:
        print(f"chargeledger rate: {exc}", file=sys.stderr)
        return 2
    items = rerate(views.transactions, views.metering, tariff, since, until)
    totals = summary(items, tariff.currency)
    if args.json:
        print_json_lines(items)
        print(json.dumps(msgspec.to_builtins(totals)), file=sys.stderr)
        return 0
    for item in items:
        print(
            f"{item.station:<20} {item.transaction_id!s:<12} {item.tariff_id or '-':<12} "
            f"{item.total if item.total is not None else '-':>10} -> {item.new_total:>10} "
            f"{item.currency} difference={item.difference if item.difference is not None else '-'}"
        )
    print(
        f"{totals.transactions} transaction(s), {totals.changed} changed: "
        f"{totals.total} -> {totals.new_total} {totals.currency} "
        f"(difference {totals.difference:+})"
    )
    return 0


def _decimal(text: str) -> str:
    try:
        Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal amount") from None
    return text


def register(
    commands: Any, with_store: Callable[[argparse.ArgumentParser, str | None], None]
) -> None:
    """Add the ``tariffs`` and ``rate`` subcommands to the CLI's subparsers."""
    parser = commands.add_parser(
        "tariffs",
        help="manage tariffs and where they apply",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)

    def sub(name: str, what: str, role: str, with_id: bool = True) -> argparse.ArgumentParser:
        action = actions.add_parser(name, help=what)
        if with_id:
            action.add_argument("tariff_id", metavar="ID")
        add_api_arguments(action, role)
        action.add_argument("--json", action="store_true", help="one JSON object per line")
        return action

    add = sub("add", "define a tariff (again: replace it)", "an admin key")
    add.add_argument("--file", metavar="TARIFF.json", help="the tariff as JSON (docs/tariffs.md)")
    add.add_argument("--currency", help="ISO 4217 code (EUR)")
    for option, what in (
        ("--energy", "per kWh"),
        ("--time", "per hour charging"),
        ("--parking", "per hour plugged in, not charging"),
        ("--session-fee", "per transaction"),
        ("--min", "minimum net price"),
        ("--max", "maximum net price"),
        ("--tax-rate", "a fraction: 0.19 for 19 %%"),
    ):
        add.add_argument(option, type=_decimal, help=what)
    add.add_argument("--valid-from", help="RFC 3339: from when transactions get it")
    add.add_argument("--valid-to", help="RFC 3339: until when")
    add.add_argument("--timezone", help="IANA zone of the bands' clock times (default UTC)")
    add.add_argument("--band", action="append", help="DAYS HH:MM-HH:MM energy=P time=P parking=P")
    add.add_argument("--description", help="what the driver is shown")
    sub("list", "print the tariffs", "a read key", with_id=False)
    sub("show", "print one tariff", "a read key")
    sub("remove", "remove a tariff", "an admin key")
    for name, what in (("assign", "assign a tariff"), ("unassign", "take an assignment back")):
        action = sub(name, what, "an admin key")
        action.add_argument("target", help="default or station:<id>")
        action.add_argument("--group", help="only for the tokens of this group")
    sub("assignments", "print the assignments", "a read key", with_id=False)
    parser.set_defaults(run=_run)

    rate = commands.add_parser(
        "rate",
        help="re-rate ended transactions with another tariff (records nothing)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    with_store(rate, None)
    rate.add_argument("--tariff", required=True, metavar="ID|FILE.json")
    rate.add_argument("--from", dest="since", metavar="RFC3339", help="stops answered from then")
    rate.add_argument("--to", dest="until", metavar="RFC3339", help="stops answered until then")
    rate.add_argument("--json", action="store_true", help="one JSON object per transaction")
    rate.set_defaults(run=_rate)
