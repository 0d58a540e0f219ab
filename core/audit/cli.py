"""The auditor's commands: ``audit``, ``replay`` (and ``--what-if``), ``import``, ``verify``.

Each reads the whole log in one pass, with a progress bar on stderr (on a terminal, or with
``--progress``), and stops cleanly on Ctrl-C: it reports what it did up to there and exits
with status 130. ``--json`` prints one JSON object per line on stdout; summaries then go to
stderr. Documented in ``docs/cli.md`` and ``docs/audit.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from chargeledger.core.archive import (
    ArchivedLog,
    archive_before,
    merged_events,
    merged_rows,
    read_archive,
)
from chargeledger.core.audit.findings import FINDING_KINDS, AuditOptions, Auditor, select
from chargeledger.core.audit.importer import FORMATS, import_log
from chargeledger.core.audit.progress import INTERRUPTED, Interrupt, pages, scan
from chargeledger.core.audit.replay import (
    Difference,
    Redecision,
    WhatIf,
    diff,
    load_snapshot,
    save_snapshot,
    snapshot,
)
from chargeledger.core.audit.report import AuditSummary, finding_json, render_html, write_text
from chargeledger.core.audit.verify import ChainVerifier
from chargeledger.core.events import Recorded
from chargeledger.core.firmware import Decision
from chargeledger.core.jsonlines import print_json_lines
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import load_settings
from chargeledger.core.store import Store, backend_for, open_store
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.schemas import PROTOCOLS

__all__ = ["register"]

_json = msgspec.json.Encoder()


def _say(args: argparse.Namespace, text: str) -> None:
    """A human line: on stdout, or on stderr when stdout carries JSON."""
    print(text, file=sys.stderr if args.json else sys.stdout)


def _log(
    args: argparse.Namespace, store: Store, label: str, interrupt: Interrupt
) -> Iterator[Recorded]:
    """The events of ``args.archive`` (``--archive``, archives of ``chargeledger archive``)
    and of ``store``, in position order (the progress bar follows the store's part)."""
    return merged_events(args.archive, scan(store, label, args.progress, interrupt=interrupt))


def _instant(text: str) -> float:
    """``--since``/``--until``: RFC 3339, or a date (midnight UTC); UTC when no offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time or date: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# -------------------------------------------------------------------------
# audit
# -------------------------------------------------------------------------


def _audit(args: argparse.Namespace) -> int:
    options = AuditOptions(max_power_kw=args.max_power_kw, offline_grace_seconds=args.offline_grace)
    store = open_store(args.store, create=False)
    try:
        auditor = Auditor(options)
        with Interrupt() as interrupt:
            for recorded in _log(args, store, "audit", interrupt):
                auditor.feed(recorded)
            findings = select(
                auditor,
                ArchivedLog(store, args.archive) if args.archive else store,
                args.station,
                args.since,
                args.until,
                reached_end=not interrupt.requested,
            )
    finally:
        store.close()
    if args.kind:
        findings = [finding for finding in findings if finding.kind in args.kind]
    summary = AuditSummary(
        store=store.safe_url,
        events=auditor.events,
        last_position=auditor.position,
        interrupted=interrupt.requested,
        station=args.station,
        since=None if args.since is None else rfc3339(args.since),
        until=None if args.until is None else rfc3339(args.until),
        max_power_kw=options.max_power_kw,
        transactions=len(auditor.views.transactions.all()),
        stations=len(auditor.views.stations.all()),
    )
    if args.html:
        Path(args.html).write_text(render_html(summary, findings), encoding="utf-8")
    if args.json:
        print_json_lines([finding_json(finding) for finding in findings])
    else:
        write_text(sys.stdout, summary, findings)
    if args.html:
        _say(args, f"HTML report: {args.html}")
    if interrupt.requested:
        _say(args, f"interrupted: audited up to position {auditor.position} only")
        return INTERRUPTED
    return 0


# -------------------------------------------------------------------------
# replay
# -------------------------------------------------------------------------


def _snapshot_path(args: argparse.Namespace) -> Path:
    if args.snapshot:
        return Path(args.snapshot)
    store_file = backend_for(args.store).file(args.store)
    if store_file is None:
        raise ValueError("give --snapshot FILE: only a store kept in a file has one next to it")
    return Path(f"{store_file}.views.json")


def _difference_line(difference: Difference) -> str:
    where = f"{difference.projection} {difference.key}"
    if difference.change == "changed":
        saved = _json.encode(difference.saved).decode()
        replayed = _json.encode(difference.replayed).decode()
        return f"  {where} {difference.field}: {saved} -> {replayed}"
    return f"  {where}: {difference.change}"


def _replay(args: argparse.Namespace) -> int:
    if args.what_if:
        return _what_if(args)
    path = _snapshot_path(args)
    saved = load_snapshot(path) if path.exists() else None
    compare_at: int | None = None if saved is None else saved["position"]
    store = open_store(args.store, create=False)
    started = time.perf_counter()
    views = Views()
    events = 0
    fresh: dict[str, Any] | None = None
    try:
        with Interrupt() as interrupt:
            for recorded in _log(args, store, "replay", interrupt):
                if fresh is None and compare_at is not None and recorded.position > compare_at:
                    fresh = snapshot(views)  # the views as of the snapshot's position
                views.apply(recorded)
                events += 1
    finally:
        store.close()
    seconds = time.perf_counter() - started
    done = not interrupt.requested
    if fresh is None and compare_at is not None and (done or views.position >= compare_at):
        fresh = snapshot(views)
    rate = events / seconds if seconds > 0 else 0.0
    _say(
        args,
        f"replayed {events} events up to position {views.position} in {seconds:.2f} s "
        f"({rate:,.0f} events/s)",
    )
    differences = [] if saved is None or fresh is None else diff(saved, fresh)
    if saved is None and not args.save:
        _say(args, f"no snapshot at {path} to compare with (save one with --save)")
    elif saved is not None and fresh is None:
        _say(args, f"stopped before the snapshot's position {compare_at}: not compared")
    elif saved is not None:
        if views.position < saved["position"]:
            _say(
                args,
                f"the log ends at position {views.position}, before the snapshot's position "
                f"{compare_at}: events are missing from the log",
            )
        _say(
            args,
            f"compared with {path} (saved {saved.get('saved_at')} at position "
            f"{compare_at}): {len(differences)} differences",
        )
        if args.json:
            print_json_lines([msgspec.to_builtins(difference) for difference in differences])
        else:
            for difference in differences:
                print(_difference_line(difference))
    if not done:
        _say(args, f"interrupted: replayed up to position {views.position} only; nothing saved")
        return INTERRUPTED
    if args.save:
        save_snapshot(path, snapshot(views), time.time())
        _say(args, f"saved the views at position {views.position} to {path}")
    return 1 if differences else 0


def _what_if(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, disabled_plugins=args.disable_plugin or None)
    what_if = WhatIf(PluginHost(settings))
    store = open_store(args.store, create=False)
    try:
        with Interrupt() as interrupt:
            for recorded in _log(args, store, "what-if", interrupt):
                what_if.feed(recorded)
    finally:
        store.close()
    differences = [
        difference
        for difference in what_if.differences
        if args.station is None or difference.station == args.station
    ]
    _say(
        args,
        f"re-decided {what_if.decided} station CALLs up to position {what_if.position}: "
        f"{len(differences)} answered differently today; {what_if.cached} answered from the "
        f"gateway's memory of earlier answers (not re-decided), {what_if.unanswered} never "
        "answered",
    )
    if args.json:
        print_json_lines([msgspec.to_builtins(difference) for difference in differences])
    else:
        for difference in differences:
            print(_redecision_text(difference))
    decided, today = what_if.campaign_decisions()
    campaigns_differ = decided != today
    if decided or today:
        _say(
            args,
            f"firmware campaigns: {len(decided)} decisions recorded, {len(today)} taken again "
            f"today: {'they differ' if campaigns_differ else 'the same'}",
        )
    decided_then, again = what_if.site_decisions()
    sites_differ = decided_then != again
    if decided_then or again:
        _say(
            args,
            f"site allocations: {len(decided_then)} decisions recorded, {len(again)} taken again "
            f"today: {'they differ' if sites_differ else 'the same'}",
        )
        for line in _decision_differences(decided_then, again):
            _say(args, line)
    if interrupt.requested:
        _say(args, f"interrupted: re-decided up to position {what_if.position} only")
        return INTERRUPTED
    return 1 if differences or campaigns_differ or sites_differ else 0


def _decision_differences(recorded: list[Decision], again: list[Decision]) -> list[str]:
    """A line per decision only recorded or only taken today (by name: a changed one shows
    as both), the first 20."""
    lines = []
    for decision in recorded:
        if decision not in again:
            lines.append(f"  recorded only: {_decision_text(decision)}")
    for decision in again:
        if decision not in recorded:
            lines.append(f"  today only:    {_decision_text(decision)}")
    return lines[:20] + ([f"  ... {len(lines) - 20} more"] if len(lines) > 20 else [])


def _decision_text(decision: Decision) -> str:
    if decision.kind == "timer" or decision.kind == "step":
        return f"{decision.kind} {decision.name} due {rfc3339(decision.due or 0.0)}"
    payload = _json.encode(decision.payload).decode()
    return f"{decision.kind} {decision.name} {decision.station} {decision.action} {payload}"


def _redecision_text(difference: Redecision) -> str:
    positions = ",".join(map(str, difference.positions))
    return (
        f"{difference.station} {difference.action} positions {positions}: {difference.detail}\n"
        f"  recorded {difference.recorded}\n"
        f"  today    {difference.today}"
    )


# -------------------------------------------------------------------------
# import
# -------------------------------------------------------------------------


def _import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    store: Store = open_store(args.store)
    try:
        with Interrupt() as interrupt:
            result = import_log(
                store,
                path,
                args.format,
                protocol=args.protocol,
                session_gap=args.session_gap,
                show_progress=args.progress,
                interrupt=interrupt,
            )
    finally:
        store.close()
    if args.json:
        print_json_lines(
            [{"line": skipped.line, "error": skipped.error} for skipped in result.skipped]
        )
    else:
        for skipped in result.skipped:
            print(f"{path}:{skipped.line}: skipped: {skipped.error}", file=sys.stderr)
    where = (
        f"positions {result.first_position}..{result.last_position}"
        if result.first_position is not None
        else "nothing written"
    )
    protocols = ", ".join(f"{name} {result.protocols[name]}" for name in sorted(result.protocols))
    _say(
        args,
        f"imported {result.frames} frames of {len(result.stations)} stations in "
        f"{result.sessions} sessions from {path} ({where}; {protocols or 'no stations'}); "
        f"{len(result.skipped)} lines skipped",
    )
    if result.interrupted:
        _say(args, f"interrupted after line {result.lines}: the lines up to it are imported")
        return INTERRUPTED
    return 1 if result.skipped else 0


# -------------------------------------------------------------------------
# verify
# -------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    store = open_store(args.store, create=False)
    verifier = ChainVerifier()
    try:
        with Interrupt() as interrupt:
            last = store.max_position()
            rows = (
                row
                for page in pages(
                    store.read_rows, last, "verify", args.progress, interrupt, store.remote
                )
                for row in page
            )
            verifier.check(merged_rows(args.archive, rows))
    finally:
        store.close()
    if args.json:
        print_json_lines([msgspec.to_builtins(broken) for broken in verifier.breaks])
    for broken in verifier.breaks:
        _say(
            args,
            f"BROKEN at position {broken.position} ({broken.stream} version {broken.version}): "
            f"{broken.problem}",
        )
    state = "every chain is intact"
    if verifier.breaks:
        first = verifier.breaks[0].position
        state = f"{len(verifier.breaks)} broken chains, the first at position {first}"
    _say(
        args,
        f"verified {verifier.events} events in {verifier.streams} streams up to position "
        f"{verifier.position}: {state}",
    )
    if interrupt.requested:
        _say(args, f"interrupted: verified up to position {verifier.position} only")
        return INTERRUPTED
    return 1 if verifier.breaks else 0


# -------------------------------------------------------------------------
# archive
# -------------------------------------------------------------------------


def _archive(args: argparse.Namespace) -> int:
    store = open_store(args.store, create=False)
    try:
        result = archive_before(store, args.before, Path(args.to))
    except OSError as exc:  # the file exists, or cannot be written: nothing deleted
        print(f"chargeledger archive: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    if not result.events:
        print(f"nothing to archive before {rfc3339(args.before)}; no file written")
        return 0
    print(
        f"archived {result.events} events of {result.streams} sessions to {result.path} "
        f"and deleted them from {store.safe_url}; {result.kept_open} sessions kept (open, "
        "or reaching past the cut)"
    )
    return 0


def _archive_file(text: str) -> Path:
    """``--archive``: a readable archive (its header is checked here; its events when read)."""
    try:
        read_archive(Path(text))
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(text)


def _archive_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archive",
        action="append",
        type=_archive_file,
        default=[],
        metavar="FILE",
        help="an archive of chargeledger archive, read with the store (repeatable)",
    )


# -------------------------------------------------------------------------
# wiring
# -------------------------------------------------------------------------


def register(commands: Any, with_store: Any) -> None:
    """Add ``audit``, ``replay``, ``import`` and ``verify`` to the ``chargeledger`` parser's
    subcommands; ``with_store(parser, default)`` adds its ``--store`` option."""

    def common(parser: argparse.ArgumentParser, json_help: str) -> None:
        with_store(parser, None)
        parser.add_argument("--json", action="store_true", help=json_help)
        parser.add_argument(
            "--progress",
            action="store_const",
            const=True,
            default=None,
            help="show a progress bar on stderr even when it is not a terminal",
        )

    audit = commands.add_parser("audit", help="find incidents in the log, with their evidence")
    common(audit, "one JSON object per finding")
    audit.add_argument("--station", help="only findings of this station")
    audit.add_argument("--since", type=_instant, help="only findings from this time (RFC 3339)")
    audit.add_argument("--until", type=_instant, help="only findings up to this time (RFC 3339)")
    audit.add_argument(
        "--kind",
        action="append",
        choices=FINDING_KINDS,
        metavar="KIND",
        help="only findings of this kind (repeatable; an unknown one is refused with the list)",
    )
    audit.add_argument(
        "--max-power-kw",
        type=float,
        default=AuditOptions().max_power_kw,
        help="average power above which a transaction's energy is implausible (default 350)",
    )
    audit.add_argument(
        "--offline-grace",
        type=float,
        default=AuditOptions().offline_grace_seconds,
        metavar="SECONDS",
        help="clock drift allowed before a 1.6 start counts as offline (default 60)",
    )
    audit.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    _archive_input(audit)
    audit.set_defaults(run=_audit)

    replay = commands.add_parser(
        "replay", help="rebuild the views and compare with a saved snapshot, or --what-if"
    )
    common(replay, "one JSON object per difference")
    replay.add_argument(
        "--snapshot", metavar="FILE", help="the views snapshot (default: next to a SQLite store)"
    )
    replay.add_argument("--save", action="store_true", help="save the rebuilt views as snapshot")
    replay.add_argument(
        "--what-if",
        action="store_true",
        help="re-decide the recorded station CALLs with today's plugins and compare",
    )
    replay.add_argument("--config", help="--what-if: the TOML settings plugins decide with")
    replay.add_argument(
        "--disable-plugin", action="append", metavar="NAME", help="--what-if: without plugin NAME"
    )
    replay.add_argument("--station", help="--what-if: only this station's differences")
    _archive_input(replay)
    replay.set_defaults(run=_replay)

    importer = commands.add_parser("import", help="load an OCPP log of another system")
    importer.add_argument("file", help="the log: JSON Lines or text, one frame per line")
    common(importer, "one JSON object per skipped line")
    importer.add_argument("--format", choices=FORMATS, help="default: from the file")
    importer.add_argument(
        "--protocol", choices=PROTOCOLS, help="for stations whose CALLs do not tell"
    )
    importer.add_argument(
        "--session-gap",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="a longer silence starts a new session (default 3600; 0: never)",
    )
    importer.set_defaults(run=_import)

    verify = commands.add_parser("verify", help="check the hash chain of every stream")
    common(verify, "one JSON object per broken chain")
    _archive_input(verify)
    verify.set_defaults(run=_verify)

    archive = commands.add_parser(
        "archive",
        help="move closed sessions before a date out of the store into an archive file",
        description="Write every session stream that is over before --before (opened and "
        "closed, or a refused handshake; never a session still open) to a new archive file "
        "(JSON Lines, .gz compressed), then delete those events from the store in one "
        "transaction. audit, replay and verify read it back with --archive, serve with the "
        "archives setting. See docs/operations.md, Retention.",
    )
    with_store(archive, None)
    archive.add_argument(
        "--before", required=True, type=_instant, help="the cut: RFC 3339 time or date (UTC)"
    )
    archive.add_argument("--to", required=True, metavar="FILE", help="the new archive file")
    archive.set_defaults(run=_archive)
