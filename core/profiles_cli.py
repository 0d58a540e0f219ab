"""``chargeledger profiles``: the charging profiles and the CSMS's composite schedule,
folded from the store (docs/smart-charging.md). Setting and clearing profiles are use cases
(``chargeledger command STATION set_charging_profile --arg ...``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from chargeledger.core.jsonlines import print_json_lines
from chargeledger.core.plugin import plugin_options
from chargeledger.core.settings import load_settings
from chargeledger.projections import Views
from chargeledger.projections.charging_profiles import charging_profiles_json
from chargeledger.projections.composite import schedule_table
from chargeledger.projections.reservations import parse_time

__all__ = ["register"]


def _list(args: argparse.Namespace) -> int:
    views: Views = args.views_of(args.store)
    stations = [args.station] if args.station else views.charging_profiles.stations()
    rows = [
        profile
        for station in stations
        for profile in charging_profiles_json(views.charging_profiles, station)["profiles"]
    ]
    if args.json:
        print_json_lines(rows)
        return 0
    for row in rows:
        periods = " ".join(f"{p['start']}s:{p['limit']:g}" for p in row["periods"])
        tx = f" tx={row['transaction_id']}" if row["transaction_id"] is not None else ""
        print(
            f"{row['station']:<16} {row['place']:>3} {row['id']:>8} {row['purpose']:<34} "
            f"level={row['stack_level']} {row['kind']:<9} {row['source']:<5}{tx} "
            f"{row['unit']} {periods}"
        )
    return 0


def _composite(args: argparse.Namespace) -> int:
    start = time.time() if args.start is None else parse_time(args.start)
    if start is None:
        raise ValueError(f"--start {args.start!r} is not an RFC 3339 time")
    if args.duration < 1:
        raise ValueError("--duration must be at least 1 second")
    options = plugin_options(load_settings(), "smart_charging")
    schedule = args.views_of(args.store).charging_profiles.composite(
        args.station,
        args.connector,
        start,
        args.duration,
        args.unit,
        voltage=float(options.get("voltage", 230)),
        phases=int(options.get("phases", 3)),
    )
    if args.json:
        print_json_lines({"start": p.start, "limit": p.limit} for p in schedule.periods)
    else:
        print(schedule_table(schedule), end="")
    return 0


def register(commands: Any, with_store: Any, views_of: Any) -> None:
    """Add ``profiles`` (``list``, ``composite``) to the ``chargeledger`` subcommands;
    ``with_store(parser, default)`` adds ``--store``, ``views_of(store_url)`` folds it."""
    profiles = commands.add_parser("profiles", help="charging profiles and composite schedules")
    sub = profiles.add_subparsers(dest="profiles_command", required=True)
    listing = sub.add_parser("list", help="the charging profiles the log shows, per station")
    with_store(listing, None)
    listing.add_argument("--station", help="only this station's")
    listing.add_argument("--json", action="store_true", help="one JSON object per profile")
    listing.set_defaults(run=_list, views_of=views_of)
    composite = sub.add_parser(
        "composite", help="the composite schedule the CSMS computes, as a table"
    )
    with_store(composite, None)
    composite.add_argument("station")
    composite.add_argument("--connector", type=int, default=0, help="connector/EVSE (0: station)")
    composite.add_argument("--start", help="RFC 3339 (default: now)")
    composite.add_argument("--duration", type=int, default=86400, help="seconds (default 1 day)")
    composite.add_argument("--unit", choices=["A", "W"], default="W")
    composite.add_argument("--json", action="store_true", help="one JSON object per period")
    composite.set_defaults(run=_composite, views_of=views_of)
