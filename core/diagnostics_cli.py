"""``chargeledger logs``, ``monitors`` and ``customer-information``: the diagnostics views,
folded from the store (read-only, so they work while a server writes to it).

The uploads, monitors and customer information are asked for with ``chargeledger command``
(``get_log``, ``get_diagnostics``, ``set_variable_monitoring``, ``get_monitoring_report``,
``customer_information``, ...); ``--json`` prints one object per station, the same as the
HTTP API's ``/api/stations/{id}/logs``, ``/monitors`` and ``/customer-information``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

from chargeledger.core.jsonlines import print_json_lines
from chargeledger.projections import Views
from chargeledger.projections.customer_information import customer_information_json
from chargeledger.projections.logs import logs_json
from chargeledger.projections.monitors import monitors_json

__all__ = ["register"]


def _show(
    args: argparse.Namespace,
    states: list[Any],
    to_json: Callable[[Any], dict[str, Any]],
    lines: Callable[[dict[str, Any]], Iterator[str]],
) -> int:
    """Print the states of the station asked for (all without ``--station``): one JSON object
    each with ``--json``, else the text ``lines`` of each."""
    rows = [to_json(state) for state in states if args.station in (None, state.station)]
    if args.json:
        print_json_lines(rows)
    else:
        for row in rows:
            for line in lines(row):
                print(line)
    return 0


def _log_lines(row: dict[str, Any]) -> Iterator[str]:
    for request in row["requests"]:
        request_id = "-" if request["request_id"] is None else request["request_id"]
        yield (
            f"{row['station']:<20} {request['action'] or '-':<14} {request_id:>8} "
            f"{request['log_type'] or '-':<14} {request['status'] or '-':<16} "
            f"{request['upload_status'] or '-':<21} {request['file_name'] or '-'}"
        )


def _monitor_lines(row: dict[str, Any]) -> Iterator[str]:
    for monitor in row["monitors"]:
        fired = monitor["last_event"]
        yield (
            f"{row['station']:<20} {monitor['id']:>6} {monitor['key']:<32} "
            f"{monitor['type'] or '-':<20} {monitor['value']!s:<10} "
            f"severity={monitor['severity']} events={monitor['events']}"
            + ("" if fired is None else f" last={fired['actual_value']}")
        )


def _customer_lines(row: dict[str, Any]) -> Iterator[str]:
    for request in row["requests"]:
        asked = (request["asked_by"] or {}).get("key", "-")
        what = "+".join(k for k in ("report", "clear") if request[k]) or "-"
        done = "complete" if request["complete"] else "incomplete"
        yield (
            f"{row['station']:<20} {request['request_id']:>8} {what:<12} "
            f"{request['status'] or '-':<9} by={asked:<16} {done:<10} {request['data']!r}"
        )


def _logs(args: argparse.Namespace) -> int:
    return _show(args, args.fold(args.store).logs.all(), logs_json, _log_lines)


def _monitors(args: argparse.Namespace) -> int:
    return _show(args, args.fold(args.store).monitors.all(), monitors_json, _monitor_lines)


def _customer_information(args: argparse.Namespace) -> int:
    states = args.fold(args.store).customer_information.all()
    return _show(args, states, customer_information_json, _customer_lines)


def register(
    commands: Any,
    with_store: Callable[[argparse.ArgumentParser, str | None], None],
    fold: Callable[[str], Views],
) -> None:
    """Add the ``logs``, ``monitors`` and ``customer-information`` subcommands; ``fold``
    folds a store URL's log into views."""
    for name, run, what in (
        ("logs", _logs, "diagnostics and log uploads and their status"),
        ("monitors", _monitors, "the stations' variable monitors (2.0.1)"),
        ("customer-information", _customer_information, "customer-information requests"),
    ):
        sub = commands.add_parser(name, help=f"print {what}", description=__doc__)
        with_store(sub, None)
        sub.add_argument("--station", help="only this station's")
        sub.add_argument("--json", action="store_true", help="one JSON object per station")
        sub.set_defaults(run=run, fold=fold)
