"""Audit output: one JSON object per finding, a terminal summary, a self-contained HTML report."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Literal, TextIO

import jinja2
import msgspec
import trio

from chargeledger.core.audit.findings import Auditor, Finding, Severity
from chargeledger.core.cluster import AuditTable
from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.events import FrameLogged, Recorded, logged_event
from chargeledger.core.store import Store
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.projections.exchanges import decode_frame

__all__ = [
    "AUDIT_INTERVAL",
    "PUBLISHED_LIMIT",
    "AuditSummary",
    "Published",
    "WorkerAudit",
    "finding_json",
    "published",
    "read_published",
    "render_html",
    "write_text",
]

log = logging.getLogger("chargeledger.audit")

_SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
_FRAME_KINDS = {2: "CALL", 3: "CALLRESULT", 4: "CALLERROR"}
_WIDTH = 110


class AuditSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What was audited, for the report's header."""

    store: str
    events: int
    """Events folded."""
    last_position: int
    """The position folded to."""
    interrupted: bool = False
    station: str | None = None
    since: str | None = None
    until: str | None = None
    max_power_kw: float
    transactions: int
    stations: int


PUBLISHED_LIMIT = 1000
"""Errors and warnings listed in published findings at most (all are counted)."""


class _Listed(msgspec.Struct, kw_only=True):
    """A :class:`Finding` as published: without its evidence."""

    kind: str
    severity: Severity
    station: str
    transaction_ids: list[int | str]
    positions: list[int]
    trigger: int
    detail: str
    source: Literal["projection", "audit"]


class Published(msgspec.Struct, kw_only=True):
    """Findings as a worker publishes them (``chargeledger_audit``): the summary, every
    finding counted by severity and kind, the errors and warnings listed (without their
    evidence frames, read again by who shows them)."""

    summary: AuditSummary
    counts: list[tuple[Severity, str, int]]
    listed: list[_Listed]
    """The errors and warnings, by trigger position (the first :data:`PUBLISHED_LIMIT`)."""
    truncated: bool = False

    @property
    def findings(self) -> list[Finding]:
        """The errors and warnings listed, as findings (their evidence not read)."""
        return [Finding(**msgspec.structs.asdict(listed)) for listed in self.listed]


def published(auditor: Auditor, store: str) -> bytes:
    """Everything ``auditor`` found in the whole log it was fed (the findings of
    ``chargeledger audit`` over that log, ``started_offline`` included), as the JSON a worker
    publishes; ``store`` names the store in the summary."""
    found = auditor.findings() + auditor.offline_starts()
    found.sort(key=lambda finding: (finding.trigger, finding.kind))
    listed = [finding for finding in found if finding.severity != "info"]
    kinds = Counter((finding.severity, finding.kind) for finding in found)
    summary = AuditSummary(
        store=store,
        events=auditor.events,
        last_position=auditor.position,
        max_power_kw=auditor.options.max_power_kw,
        transactions=len(auditor.views.transactions.all()),
        stations=len(auditor.views.stations.all()),
    )
    return msgspec.json.encode(
        Published(
            summary=summary,
            counts=[(severity, kind, count) for (severity, kind), count in sorted(kinds.items())],
            listed=[
                msgspec.convert(finding, _Listed, from_attributes=True)
                for finding in listed[:PUBLISHED_LIMIT]
            ],
            truncated=len(listed) > PUBLISHED_LIMIT,
        )
    )


AUDIT_INTERVAL = 2.0
"""Seconds between two publications of a worker's findings, at least."""

_AUDIT_SHARE = 0.1
"""The share of the worker's time computing its findings may take at most."""


class WorkerAudit:
    """The audit of ``chargeledger worker``: an :class:`Auditor` observing the worker's own
    views (folded once, for both), publishing its findings in ``chargeledger_audit``
    (:class:`~chargeledger.core.cluster.AuditTable`) whenever the log moved on, every
    :data:`AUDIT_INTERVAL` seconds at most, or less often when computing them takes more
    than a tenth of the time (they are computed on the trio thread, where the views are
    folded)."""

    def __init__(self, views: Views, store: Store, node: str) -> None:
        self.auditor = Auditor(views=views)
        self.observe = self.auditor.observe
        self._store = store
        self._node = node

    async def run(self) -> None:
        """Publish until cancelled."""
        table = AuditTable(self._store.url)
        interval = AUDIT_INTERVAL
        done = -1
        try:
            while True:
                if self.auditor.position != done:
                    began = time.perf_counter()
                    findings = published(self.auditor, self._store.safe_url)
                    position = self.auditor.position
                    interval = max(AUDIT_INTERVAL, (time.perf_counter() - began) / _AUDIT_SHARE)
                    try:
                        await trio.to_thread.run_sync(table.publish, position, self._node, findings)
                        done = position
                    except StoreUnavailable as exc:
                        log.warning("publishing the audit's findings: %s", exc)
                await trio.sleep(interval)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(table.close)


def read_published(data: object) -> Published:
    """Published findings (the JSON of :func:`published`, decoded); ``ValueError`` when they
    are not."""
    try:
        return msgspec.convert(data, Published)
    except msgspec.ValidationError as exc:
        raise ValueError(f"unreadable published findings: {exc}") from exc


def finding_json(finding: Finding) -> dict[str, Any]:
    """``finding`` as JSON-ready builtins (fields documented in ``docs/cli.md``)."""
    return {
        "kind": finding.kind,
        "severity": finding.severity,
        "station": finding.station,
        "transaction_ids": list(finding.transaction_ids),
        "positions": list(finding.positions),
        "at": _time(finding.at),
        "detail": finding.detail,
        "source": finding.source,
        "evidence": [msgspec.to_builtins(logged_event(r)) for r in finding.evidence],
    }


def _time(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def _label(recorded: Recorded) -> str:
    """A short name for an evidence event: ``StartTransaction CALL``, ``CALLRESULT``, ..."""
    event = recorded.event
    if not isinstance(event, FrameLogged):
        return type(event).__name__
    frame = decode_frame(event.text)
    if frame is None:
        return "unreadable frame"
    kind = _FRAME_KINDS.get(frame[0], f"type {frame[0]}")
    if frame[0] == 2 and len(frame) > 2 and type(frame[2]) is str:
        return f"{frame[2]} {kind}"
    return kind


def _ids(finding: Finding) -> str:
    return ", ".join(str(i) for i in finding.transaction_ids) or "-"


def write_text(out: TextIO, summary: AuditSummary, findings: list[Finding]) -> None:
    """The terminal summary: counts, then every error and warning with its frames (errors
    first); info findings (ids issued, retransmissions answered correctly) are only counted."""
    scope = f"station {summary.station}" if summary.station else "all stations"
    if summary.since or summary.until:
        scope += f", {summary.since or '…'} to {summary.until or '…'}"
    partial = " (INTERRUPTED: partial)" if summary.interrupted else ""
    out.write(
        f"Audit of {summary.store}{partial}: {summary.events} events up to position "
        f"{summary.last_position}, {summary.stations} stations, {summary.transactions} "
        f"transactions; {scope}\n"
    )
    severities = Counter(finding.severity for finding in findings)
    out.write(
        f"{len(findings)} findings: "
        + ", ".join(f"{severities[s]} {s}" for s in _SEVERITIES)
        + "\n\n"
    )
    for finding in _ranked(findings):
        if finding.severity == "info":
            continue
        out.write(
            f"{finding.severity.upper():<8} {finding.kind}  station {finding.station}  "
            f"transaction {_ids(finding)}  positions {','.join(map(str, finding.positions))}\n"
            f"         {finding.detail}\n"
        )
        for recorded in finding.evidence:
            out.write(f"         {_evidence_line(recorded)}\n")
        out.write("\n")
    kinds = Counter((finding.severity, finding.kind) for finding in findings)
    if kinds:
        out.write("By kind:\n")
        for (severity, kind), count in sorted(
            kinds.items(), key=lambda item: (_SEVERITIES.index(item[0][0]), item[0][1])
        ):
            out.write(f"  {severity:<8} {kind:<38} {count:>7}\n")
    if severities["info"]:
        out.write("Info findings are listed by --json and --html.\n")


def _ranked(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info, each in log order."""
    return sorted(findings, key=lambda finding: _SEVERITIES.index(finding.severity))


def _evidence_line(recorded: Recorded) -> str:
    event = recorded.event
    at = _time(getattr(event, "at", None)) or ""
    if isinstance(event, FrameLogged):
        arrow = "->" if event.direction == "in" else "<-"
        text = event.text if len(event.text) <= _WIDTH else event.text[: _WIDTH - 1] + "…"
        return f"{recorded.position:>8} {at} {arrow} {text}"
    return f"{recorded.position:>8} {at} {type(event).__name__}"


def _view(finding: Finding) -> dict[str, Any]:
    events = []
    for recorded in finding.evidence:
        event = recorded.event
        at = _time(getattr(event, "at", None)) or ""
        events.append(
            {
                "position": recorded.position,
                "date": at[:10],
                "time": at[11:-1],
                "direction": getattr(event, "direction", None),
                "label": _label(recorded),
                "frame": event.text if isinstance(event, FrameLogged) else "",
                "note": getattr(event, "note", None),
                "session": getattr(event, "session", None),
                "trigger": recorded.position == finding.trigger,
            }
        )
    return {**finding_json(finding), "events": events, "ids": _ids(finding)}


def render_html(summary: AuditSummary, findings: list[Finding]) -> str:
    """The report as one self-contained HTML page (inline CSS, no external assets)."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    source = files("chargeledger.core.audit").joinpath("report.html.j2").read_text("utf-8")
    listed = [_view(finding) for finding in _ranked(findings)]
    severities = Counter(finding.severity for finding in findings)
    kinds = Counter((finding.severity, finding.kind) for finding in findings)
    return environment.from_string(source).render(
        summary=summary,
        findings=listed,
        severities=[(s, severities[s]) for s in _SEVERITIES],
        kinds=sorted(kinds.items(), key=lambda item: (_SEVERITIES.index(item[0][0]), item[0][1])),
        generated=_time(datetime.now(UTC).timestamp()),
    )
