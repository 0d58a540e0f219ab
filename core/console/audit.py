"""The console's audit: the audit and the hash-chain verification of ``chargeledger audit`` /
``verify``, run on the server's store, rendered by the audit's own HTML report."""

from __future__ import annotations

from typing import Any

from chargeledger.core.audit.findings import AuditOptions, Auditor, Finding, select
from chargeledger.core.audit.progress import pages, scan
from chargeledger.core.audit.report import AuditSummary, render_html
from chargeledger.core.audit.verify import ChainVerifier
from chargeledger.core.store import Store
from chargeledger.core.times import rfc3339

__all__ = ["run_audit", "verify_chains"]


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
