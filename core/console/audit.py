"""The console's audit: the audit and the hash-chain verification of ``chargeledger audit`` /
``verify``, run on the server's store, rendered by the audit's own HTML report; or the
findings a worker keeps up to date and publishes (docs/cluster.md, "Audits")."""

from __future__ import annotations

from typing import Any

import msgspec

from chargeledger.core.audit.findings import AuditOptions, Auditor, Finding, fetch, select
from chargeledger.core.audit.progress import pages, scan
from chargeledger.core.audit.report import AuditSummary, read_published, render_html
from chargeledger.core.audit.verify import ChainVerifier
from chargeledger.core.cluster import AuditTable
from chargeledger.core.store import Store, backend_for
from chargeledger.core.times import rfc3339

__all__ = ["published_audit", "run_audit", "verify_chains"]


def run_audit(
    store: Store, station: str | None, since: float | None, until: float | None
) -> tuple[AuditSummary, list[Finding], str]:
    """Audit the whole log (findings reported for ``station`` and ``[since, until]`` only, as
    ``chargeledger audit`` does) with the default options; the summary, the findings and the
    HTML report. Blocking: run it on a worker thread."""
    options = AuditOptions()
    auditor = Auditor(options)
    for recorded in scan(store, "audit", False):
        auditor.feed(recorded)
    findings = select(auditor, store, station, since, until)
    summary = AuditSummary(
        store=store.safe_url,
        events=auditor.events,
        last_position=auditor.position,
        station=station,
        since=None if since is None else rfc3339(since),
        until=None if until is None else rfc3339(until),
        max_power_kw=options.max_power_kw,
        transactions=len(auditor.views.transactions.all()),
        stations=len(auditor.views.stations.all()),
    )
    return summary, findings, render_html(summary, findings)


def published_audit(store: Store) -> dict[str, Any] | None:
    """The findings a worker published (docs/cluster.md, "Audits"), with their evidence
    read from ``store`` and rendered by the audit's HTML report: the position they are as of,
    their age, the worker, the summary, the counts by kind. ``None`` on a store no worker
    shares (SQLite, memory) or when no worker published any. Blocking."""
    if not backend_for(store.url).shared:
        return None
    table = AuditTable(store.url)
    try:
        row = table.published()
    finally:
        table.close()
    if row is None:
        return None
    position, node, age, data = row
    try:
        found = read_published(data)
    except ValueError:
        return None
    findings = found.findings
    frames = fetch(store, [p for finding in findings for p in finding.positions])
    for finding in findings:
        finding.evidence = [frames[p] for p in finding.positions if p in frames]
    return {
        "position": position,
        "node": node,
        "age": round(age),
        "summary": msgspec.to_builtins(found.summary),
        "counts": found.counts,
        "findings": sum(count for _, _, count in found.counts),
        "listed": len(findings),
        "truncated": found.truncated,
        "report": render_html(found.summary, findings),
    }


def verify_chains(store: Store) -> dict[str, Any]:
    """Every stream's hash chain recomputed (``chargeledger verify``): events and streams
    checked, up to which position, and the breaks. Blocking."""
    verifier = ChainVerifier()
    for page in pages(store.read_rows, store.max_position(), "verify", False):
        verifier.check(page)
    return {
        "events": verifier.events,
        "streams": verifier.streams,
        "position": verifier.position,
        "breaks": [
            {"position": b.position, "stream": b.stream, "version": b.version, "problem": b.problem}
            for b in verifier.breaks
        ],
    }
