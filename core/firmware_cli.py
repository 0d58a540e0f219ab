"""``chargeledger firmware``: firmware updates and campaigns through a running server's HTTP
API (docs/device-management.md).

``update STATION --location URL [--retrieve-date T] [--install-date T] [--retries N]
[--retry-interval S] [--signing-certificate FILE --signature SIG]`` updates one station
(the ``update_firmware`` use case; the retrieve time defaults to now), ``status STATION``
prints its firmware, ``campaign create --location URL [--station S ...] [--site S] [--vendor V]
[--model M] [--firmware-version X] [--max-in-flight N] [--interval S] [--max-failure-ratio R]
[--station-timeout S] [--name NAME]`` starts a campaign, ``campaign show [ID]`` prints one
campaign or all, ``campaign pause ID``, ``resume ID`` and ``cancel ID`` pause, resume and
cancel one. ``status`` and ``show`` need a ``read`` key, the others an ``operator`` key.
Exit status: 0 done, 1 the station did not accept the update, 2 nothing done (the API's
problem ``detail`` is printed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chargeledger.core.remote import add_api_arguments, call_api, print_answer
from chargeledger.core.times import rfc3339

__all__ = ["register"]


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return call_api(args, method, path, body)


def _answer(args: argparse.Namespace, status: int, body: Any, ok: int) -> int:
    return print_answer(args, "chargeledger firmware", status, body, ok)


def _drop_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _firmware(args: argparse.Namespace) -> dict[str, Any] | None:
    """The firmware fields shared by ``update`` and ``campaign create``; ``None`` after
    printing why they are wrong."""
    certificate = None
    if args.signing_certificate is not None:
        try:
            certificate = Path(args.signing_certificate).read_text()
        except OSError as exc:
            print(f"chargeledger firmware: {exc}", file=sys.stderr)
            return None
    if (certificate is None) != (args.signature is None):
        print(
            "chargeledger firmware: a signed update needs both --signing-certificate and"
            " --signature",
            file=sys.stderr,
        )
        return None
    return _drop_none(
        {
            "location": args.location,
            "retrieve_date": args.retrieve_date,
            "install_date": args.install_date,
            "retries": args.retries,
            "retry_interval": args.retry_interval,
            "signing_certificate": certificate,
            "signature": args.signature,
        }
    )


def _update(args: argparse.Namespace) -> int:
    firmware = _firmware(args)
    if firmware is None:
        return 2
    firmware.setdefault("retrieve_date", rfc3339(time.time()))
    path = f"/api/stations/{quote(args.station, safe='')}/commands"
    status, body = _call(args, "POST", path, {"use_case": "update_firmware", **firmware})
    done = _answer(args, status, body, ok=200)
    return 1 if done == 0 and not body.get("accepted") else done


def _status(args: argparse.Namespace) -> int:
    path = f"/api/stations/{quote(args.station, safe='')}/firmware"
    return _answer(args, *_call(args, "GET", path), ok=200)


def _create(args: argparse.Namespace) -> int:
    firmware = _firmware(args)
    if firmware is None:
        return 2
    body = {
        **firmware,
        **_drop_none(
            {
                "name": args.name,
                "stations": args.station,
                "site": args.site,
                "vendor": args.vendor,
                "model": args.model,
                "firmware_version": args.firmware_version,
                "max_in_flight": args.max_in_flight,
                "interval": args.interval,
                "max_failure_ratio": args.max_failure_ratio,
                "station_timeout": args.station_timeout,
            }
        ),
    }
    return _answer(args, *_call(args, "POST", "/api/firmware/campaigns", body), ok=201)


def _show(args: argparse.Namespace) -> int:
    path = "/api/firmware/campaigns"
    if args.campaign_id:
        path += f"/{quote(args.campaign_id, safe='')}"
    return _answer(args, *_call(args, "GET", path), ok=200)


def _change(args: argparse.Namespace) -> int:
    path = f"/api/firmware/campaigns/{quote(args.campaign_id, safe='')}/{args.campaign_action}"
    return _answer(args, *_call(args, "POST", path, {}), ok=200)


def _firmware_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--location", required=True, help="the firmware's URL (not hosted here)")
    parser.add_argument("--retrieve-date", help="RFC 3339 (default: now)")
    parser.add_argument("--install-date", help="RFC 3339 (2.0.1 and signed 1.6 updates)")
    parser.add_argument("--retries", type=int)
    parser.add_argument("--retry-interval", type=int, help="seconds")
    parser.add_argument("--signing-certificate", metavar="FILE", help="PEM signing certificate")
    parser.add_argument("--signature", help="the firmware's signature (base64)")


def register(commands: Any) -> None:
    """Add the ``firmware`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "firmware",
        help="firmware updates and campaigns through a running server's API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    update = actions.add_parser("update", help="update one station's firmware")
    update.add_argument("station")
    _firmware_arguments(update)
    update.set_defaults(run=_update)
    status = actions.add_parser("status", help="print a station's firmware")
    status.add_argument("station")
    status.set_defaults(run=_status)
    campaign = actions.add_parser("campaign", help="firmware campaigns")
    campaigns = campaign.add_subparsers(dest="campaign_action", required=True)
    create = campaigns.add_parser("create", help="start a campaign")
    _firmware_arguments(create)
    create.add_argument("--name")
    create.add_argument("--station", action="append", help="a station (repeatable)")
    create.add_argument("--site", help="the stations of this site and of its sub-sites")
    create.add_argument("--vendor", help="stations whose boot names this vendor")
    create.add_argument("--model", help="stations whose boot names this model")
    create.add_argument("--firmware-version", help="stations running this version")
    create.add_argument("--max-in-flight", type=int, help="stations updating at once (1)")
    create.add_argument("--interval", type=float, help="seconds between rollout steps (60)")
    create.add_argument(
        "--max-failure-ratio", type=float, help="stop once more fail than this (0.1)"
    )
    create.add_argument("--station-timeout", type=float, help="seconds (3600)")
    create.set_defaults(run=_create)
    show = campaigns.add_parser("show", help="print one campaign or all")
    show.add_argument("campaign_id", nargs="?")
    show.set_defaults(run=_show)
    changes = []
    for verb, what in (
        ("pause", "pause a running campaign"),
        ("resume", "resume a paused campaign"),
        ("cancel", "cancel a campaign"),
    ):
        change = campaigns.add_parser(verb, help=what)
        change.add_argument("campaign_id")
        change.set_defaults(run=_change)
        changes.append((change, "an operator key"))
    for action, role in (
        (update, "an operator key"),
        (status, "a read key"),
        (create, "an operator key"),
        (show, "a read key"),
        *changes,
    ):
        add_api_arguments(action, role)
        action.add_argument("--json", action="store_true", help="print JSON on one line")
