"""Audit findings: the projections' anomalies and the audit's own checks, with their evidence.

One pass folds the log into fresh :class:`~chargeledger.projections.Views` (so every anomaly
kind the projections know, today's and future ones, becomes a finding) and keeps, from the
exchanges the views pair, which CALL each of our CALLRESULTs answered, so a finding names
both frames of each exchange. The audit adds what needs the whole log: energy implausible for
the time, transactions never ended, ended transactions that the one billing rule
(:mod:`chargeledger.projections.billing`) does not find billable, transactions started while
the station was offline, for every transaction id the exchange that issued it, and every
critical security event a station reported (the Security events list's critical flag,
:data:`~chargeledger.projections.security_events.CRITICAL_SECURITY_EVENTS`), and every
firmware update a station reported installed and then booted into its old version
(``version_unchanged``, from the firmware projection). A second,
targeted read fetches the verbatim frames of the evidence.
"""

from __future__ import annotations

import contextlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import msgspec

from chargeledger.core.archive import ArchivedLog
from chargeledger.core.audit.importer import END_OF_IMPORT
from chargeledger.core.events import FrameLogged, Recorded, SessionClosed, SessionOpened
from chargeledger.core.store import Store
from chargeledger.projections import ANOMALY_KINDS, Anomaly, TransactionState, Views
from chargeledger.projections.billing import billing_doubts
from chargeledger.projections.charging_profiles import CHARGING_ANOMALY_KINDS
from chargeledger.projections.exchanges import Exchange, as_int, is_v16
from chargeledger.projections.firmware import FIRMWARE_ANOMALY_KINDS
from chargeledger.projections.security_events import read_security_event

__all__ = [
    "AUDIT_KINDS",
    "FINDING_KINDS",
    "AuditOptions",
    "Auditor",
    "Finding",
    "Severity",
    "fetch",
    "select",
    "severity_of",
]

Severity = Literal["error", "warning", "info"]

AUDIT_KINDS = (
    "energy_implausible",
    "transaction_never_ended",
    "transaction_cut_off",
    "transaction_not_billable",
    "started_offline",
    "transaction_issued",
    "critical_security_event",
    "session_held_twice",
)
"""The kinds the audit finds itself; every other kind is a projection anomaly."""

FINDING_KINDS = (
    *ANOMALY_KINDS,
    *CHARGING_ANOMALY_KINDS,
    *FIRMWARE_ANOMALY_KINDS,
    *AUDIT_KINDS,
)
"""Every kind of finding: the transactions', charging profiles' and firmware's anomalies,
then the audit's own."""

_SEVERITY: dict[str, Severity] = {
    # Money or the meter is wrong.
    "duplicate_start": "error",
    "transaction_id_reused": "error",
    "meter_stop_below_start": "error",
    "energy_implausible": "error",
    "stop_from_other_station": "error",
    # Two nodes both recorded frames of one station after one took it over: not fenced.
    "session_held_twice": "error",
    # The station says its security was touched (tamper, log cleared, clock set, ...).
    "critical_security_event": "warning",
    # Handled correctly, but worth knowing.
    "start_retransmitted": "info",
    "transaction_issued": "info",
    "transaction_cut_off": "info",
}
"""Severity by kind; any kind not named (stops for unknown or sentinel ids, double stops,
seqNo trouble, transactions never ended, ...) is a ``warning``."""

_FETCH_GAP = 256
"""Evidence positions closer than this are fetched with one range read."""


def severity_of(kind: str) -> Severity:
    """The severity of a finding kind (``warning`` for kinds this version does not know)."""
    return _SEVERITY.get(kind, "warning")


class AuditOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of the audit's own checks."""

    max_power_kw: float = 350.0
    """Average power above which a transaction's energy is implausible for its duration."""
    offline_grace_seconds: float = 60.0
    """A 1.6 start whose own timestamp precedes the opening of the session that delivered it
    by more than this happened while the station was offline (clocks drift a little)."""


class Finding(msgspec.Struct, kw_only=True):
    """One thing an auditor should look at, and the log positions that show it."""

    kind: str
    severity: Severity
    station: str
    """The station that sent the CALL that triggered it."""
    transaction_ids: list[int | str]
    positions: list[int]
    """Log positions of the evidence, ascending."""
    trigger: int
    """The position of the frame that completed it (its time is the finding's time)."""
    detail: str
    source: Literal["projection", "audit"]
    evidence: list[Recorded] = []
    """The events at ``positions`` (filled by :func:`select`)."""

    @property
    def at(self) -> float | None:
        """When the triggering frame was recorded (``None`` before :func:`select`)."""
        for recorded in self.evidence:
            if recorded.position == self.trigger:
                return getattr(recorded.event, "at", None)
        return None


class Auditor:
    """Folds the log, one event at a time, into what :meth:`findings` reports."""

    def __init__(self, options: AuditOptions | None = None, views: Views | None = None) -> None:
        self.options = options or AuditOptions()
        self.views = Views() if views is None else views
        """Its fold of the log: its own, or (``views`` given) views someone else folds, each
        event before handing it to :meth:`observe` (the worker's: docs/cluster.md)."""
        self.events = 0
        # Station CALLs answered by us: CALLRESULT position -> CALL position, both ascending.
        self._results = array("q")
        self._calls = array("q")
        self._opened: dict[str, float] = {}
        """When each session opened."""
        self._start_opened: dict[int, float] = {}
        """Per transaction start CALL (position), when the session that delivered it opened."""
        self._security: list[Finding] = []
        """A finding per critical security event, in log order."""
        self._booted: dict[str, int] = {}
        """The position of each station's last BootNotification we answered."""
        self._import_ended: set[str] = set()
        """Stations whose last session was closed by the end of an imported file."""
        self._open: dict[str, dict[str, tuple[str, int]]] = {}
        """Per station, its sessions open at the last event fed: session -> (node, position
        of its opening)."""
        self._held_twice: list[Finding] = []
        """A finding per session that recorded a frame after another node took its station
        over (the first such frame only)."""

    @property
    def position(self) -> int:
        """The position of the last event fed (0 before the first)."""
        return self.views.position

    def feed(self, recorded: Recorded) -> None:
        """Fold the next event of the log (position order, each once)."""
        self.views.apply(recorded)
        self.observe(recorded)

    def observe(self, recorded: Recorded) -> None:
        """Take the next event of the log once :attr:`views` folded it (:meth:`feed` without
        the fold, for views folded by their owner)."""
        self.events += 1
        self._hold(recorded)
        exchange = self.views.last_exchange
        if exchange is not None and exchange.origin == "in":
            self._results.append(exchange.result_position)
            self._calls.append(exchange.call_position)
            event = read_security_event(exchange)
            if event is not None and event.critical:
                info = f" ({event.tech_info})" if event.tech_info else ""
                self._security.append(
                    _finding(
                        "critical_security_event",
                        event.station,
                        [],
                        [exchange.call_position, exchange.result_position],
                        exchange.call_position,
                        f"{event.type} at {event.timestamp}{info}",
                    )
                )
            if exchange.action == "BootNotification":
                self._booted[exchange.station] = exchange.result_position
            elif exchange.action in ("StartTransaction", "TransactionEvent"):
                self._note_start(exchange)
        elif isinstance(recorded.event, SessionOpened):
            self._opened[recorded.event.session] = recorded.event.at
            self._import_ended.discard(recorded.event.station)
        elif isinstance(recorded.event, SessionClosed) and recorded.event.reason == END_OF_IMPORT:
            self._import_ended.add(recorded.event.station)

    def _note_start(self, exchange: Exchange) -> None:
        """When the session of a start CALL opened, if the exchange started a transaction
        (for :meth:`offline_starts`, without reading the frame again)."""
        if exchange.action == "StartTransaction":
            answer = exchange.response if isinstance(exchange.response, dict) else {}
            issued = answer.get("transactionId")
            transaction = self.views.transactions.get(issued) if type(issued) is int else None
        else:
            request = exchange.request if isinstance(exchange.request, dict) else {}
            info = request.get("transactionInfo")
            key = info.get("transactionId") if isinstance(info, dict) else None
            transaction = (
                None
                if not isinstance(key, str)
                else self.views.transactions.get(key, exchange.station)
            )
        opened = self._opened.get(exchange.session)
        if (
            transaction is not None
            and opened is not None
            and transaction.positions[:1] == [exchange.call_position]
        ):
            self._start_opened[exchange.call_position] = opened

    def _hold(self, recorded: Recorded) -> None:
        """``session_held_twice``: a session recording a frame while a session of the same
        station opened after it, by another node, is still open (the takeover did not fence
        the old session: docs/cluster.md, "Fenced sessions"). One node replacing its own
        session, or sessions with no node (imports), are not concerned."""
        event = recorded.event
        if isinstance(event, SessionOpened):
            self._open.setdefault(event.station, {})[event.session] = (
                event.node,
                recorded.position,
            )
        elif isinstance(event, SessionClosed):
            self._open.get(event.station, {}).pop(event.session, None)
        elif isinstance(event, FrameLogged):
            sessions = self._open.get(event.station, {})
            mine = sessions.get(event.session)
            if mine is None or not mine[0]:
                return
            for other, (node, opened) in sessions.items():
                if node and node != mine[0] and opened > mine[1]:
                    self._held_twice.append(
                        _finding(
                            "session_held_twice",
                            event.station,
                            [],
                            [mine[1], opened, recorded.position],
                            recorded.position,
                            f"session {event.session} of node {mine[0]!r} recorded a frame "
                            f"after node {node!r} took the station over (session {other}, "
                            f"opened at position {opened}) without closing it",
                        )
                    )
                    # one finding per session: forget it, so its next frames find nothing
                    del sessions[event.session]
                    return

    def call_of(self, result_position: int) -> int | None:
        """The position of the station CALL our CALLRESULT at ``result_position`` answered."""
        index = bisect_left(self._results, result_position)
        if index < len(self._results) and self._results[index] == result_position:
            return self._calls[index]
        return None

    def findings(self, *, reached_end: bool = True) -> list[Finding]:
        """Everything found in the events fed so far, without evidence frames (see
        :func:`select`), by trigger position, ``started_offline`` apart (see
        :meth:`offline_starts`). ``reached_end``: the events fed are the whole log (false
        when the audit was interrupted: transactions active at the last event fed are then
        cut off, see :meth:`_unended`)."""
        transactions = self.views.transactions
        found = [self._anomaly(anomaly, None) for anomaly in transactions.anomalies]
        found += self._security
        found += self._held_twice
        # what the charging profiles installed do not explain (composite_mismatch,
        # clear_unknown, ...), and what a firmware update did not do (version_unchanged)
        found += [
            _projection_finding(
                a.kind, a.station, [a.call_position, a.position], a.position, a.detail
            )
            for a in self.views.charging_profiles.anomalies
        ]
        found += [
            _projection_finding(a.kind, a.station, list(a.positions), a.position, a.detail)
            for a in self.views.firmware.anomalies
        ]
        starts: dict[tuple[str, int | None, int | None], list[int]] = {}
        for transaction in transactions.all():
            place = (transaction.station, transaction.evse_id, transaction.connector_id)
            starts.setdefault(place, []).append(transaction.started_position)
        for transaction in transactions.all():
            start = transaction.positions[:2]
            how = (
                "issued by the CSMS answering StartTransaction"
                if is_v16(transaction.protocol)
                else "named by the station in the first TransactionEvent answered"
            )
            found.append(
                _finding(
                    "transaction_issued",
                    transaction.station,
                    [transaction.transaction_id],
                    start,
                    transaction.started_position,
                    f"id {how} (connector {transaction.connector_id}, "
                    f"idTag {transaction.id_tag!r})",
                )
            )
            found += [self._anomaly(anomaly, transaction) for anomaly in transaction.anomalies]
            found += self._energy(transaction)
            found += self._billing(transaction, starts, reached_end)
        found.sort(key=lambda finding: (finding.trigger, finding.kind))
        return found

    def offline_starts(self) -> list[Finding]:
        """Transactions started while their station was offline: flagged so by the
        projection (2.0.1 ``offline``), or starts whose timestamp precedes the opening of
        the session that delivered them by more than the grace."""
        found = []
        for transaction in self.views.transactions.all():
            start = transaction.positions[:2]
            detail = None
            if transaction.offline:
                detail = "the station sent its events flagged offline (queued while offline)"
            else:
                opened = self._start_opened.get(start[0]) if start else None
                started = _instant(transaction.start_timestamp)
                grace = self.options.offline_grace_seconds
                if opened is not None and started is not None and started < opened - grace:
                    detail = (
                        f"started {transaction.start_timestamp}, {opened - started:.0f} s "
                        "before the session that delivered the start opened"
                    )
            if detail is not None:
                found.append(
                    _finding(
                        "started_offline",
                        transaction.station,
                        [transaction.transaction_id],
                        start,
                        transaction.started_position,
                        detail,
                    )
                )
        return found

    def _anomaly(self, anomaly: Anomaly, transaction: TransactionState | None) -> Finding:
        call = self.call_of(anomaly.position)
        positions = [anomaly.position] if call is None else [call, anomaly.position]
        ids: list[int | str] = [] if anomaly.transaction_id is None else [anomaly.transaction_id]
        if transaction is None and anomaly.kind == "stop_from_other_station":
            owner = as_int(anomaly.transaction_id)  # 1.6 ids are unique across stations
            transaction = None if owner is None else self.views.transactions.get(owner)
        if transaction is not None:
            positions += transaction.positions[:2]
            if transaction.status == "ended" and transaction.positions[-1] < anomaly.position:
                positions += transaction.positions[-2:]  # what it came after: the end
            if anomaly.kind == "duplicate_start":
                first = self.views.transactions.find_start(
                    transaction.station,
                    transaction.connector_id,
                    transaction.id_tag,
                    transaction.start_timestamp,
                    as_int(transaction.meter_start),
                )
                if first is not None and first is not transaction:
                    ids = [first.transaction_id, transaction.transaction_id]
                    positions += first.positions[:2]
        return Finding(
            kind=anomaly.kind,
            severity=severity_of(anomaly.kind),
            station=anomaly.station,
            transaction_ids=ids,
            positions=sorted(set(positions)),
            trigger=anomaly.position,
            detail=anomaly.detail,
            source="projection",
        )

    def _billing(
        self,
        transaction: TransactionState,
        starts: dict[tuple[str, int | None, int | None], list[int]],
        reached_end: bool,
    ) -> list[Finding]:
        """The billing rule's verdict (:func:`billing_doubts`), when it is not billable: a
        transaction still active at the end of the audited log never ended, or was cut off
        (:meth:`_unended`); an ended one with doubts is not billable as it stands (its
        evidence: its start and its end)."""
        doubts = billing_doubts(transaction)
        if not doubts:
            return []
        ids: list[int | str] = [transaction.transaction_id]
        if doubts == ["not_ended"]:
            kind, why = self._unended(transaction, starts, reached_end)
            return [
                _finding(
                    kind,
                    transaction.station,
                    ids,
                    transaction.positions[:2],
                    transaction.started_position,
                    f"started {transaction.start_timestamp}; still active at position "
                    f"{self.position}, the end of the audited log: {why}",
                )
            ]
        return [
            _finding(
                "transaction_not_billable",
                transaction.station,
                ids,
                transaction.positions[:2] + transaction.positions[-2:],
                transaction.positions[-1],
                f"ended, not billable as it stands: {', '.join(doubts)}",
            )
        ]

    def _unended(
        self,
        transaction: TransactionState,
        starts: dict[tuple[str, int | None, int | None], list[int]],
        reached_end: bool,
    ) -> tuple[str, str]:
        """Whether a transaction still active at the end of the audited log never ended or
        was cut off, and why (docs/audit.md, "Cut off or never ended").

        Never ended: the audited log shows its station going on without it, after its last
        event: the station booted again, or another transaction started on its connector
        (EVSE and connector in 2.0.1). Otherwise it is cut off when the log stops before its
        end could show: the audit was interrupted before the end of the log, its station is
        still connected at the end (it may be charging now), or its station's last session
        was closed by the end of an imported file. Anything else (the station left and
        never came back within the log) never ended."""
        station = transaction.station
        last = transaction.positions[-1]
        booted = self._booted.get(station, 0)
        if booted > last:
            return "transaction_never_ended", f"the station booted again at position {booted}"
        place = (station, transaction.evse_id, transaction.connector_id)
        later = [p for p in starts.get(place, []) if p > transaction.started_position]
        if later:
            return (
                "transaction_never_ended",
                f"another transaction started on its connector at position {min(later)}",
            )
        if not reached_end:
            return "transaction_cut_off", "the audit was interrupted there, its end not read"
        state = self.views.stations.get(station)
        if state is not None and state.connected:
            return "transaction_cut_off", "the station is still connected: it may be charging"
        if station in self._import_ended:
            return "transaction_cut_off", "the imported log ends there"
        return "transaction_never_ended", "the station left and did not end it within the log"

    def _energy(self, transaction: TransactionState) -> list[Finding]:
        energy = transaction.energy_wh
        if transaction.status != "ended" or not energy or transaction.ended_at is None:
            return []
        start = _instant(transaction.start_timestamp)
        stop = _instant(transaction.stop_timestamp)
        if start is None or stop is None:  # the station's times are unusable: take ours
            start, stop = transaction.started_at, transaction.ended_at
        seconds = stop - start
        limit = self.options.max_power_kw
        if seconds > 0 and energy / 1000 / (seconds / 3600) <= limit:
            return []
        power = "an instant" if seconds <= 0 else f"{seconds:.0f} s"
        if seconds > 0:
            power += f": {energy / 1000 / (seconds / 3600):.1f} kW on average"
        return [
            _finding(
                "energy_implausible",
                transaction.station,
                [transaction.transaction_id],
                transaction.positions[:2] + transaction.positions[-2:],
                transaction.positions[-1],
                f"{energy:.0f} Wh in {power}, above the {limit:g} kW limit",
            )
        ]


def select(
    auditor: Auditor,
    store: Store | ArchivedLog,
    station: str | None = None,
    since: float | None = None,
    until: float | None = None,
    *,
    reached_end: bool = True,
) -> list[Finding]:
    """The findings of everything ``auditor`` was fed, with their evidence read from
    ``store``: only those of ``station`` and, by the time of their triggering frame, in
    ``[since, until]`` when given. The fold always covers the whole log (a stop in range
    needs its start from before), only the report is filtered. ``reached_end``: the
    auditor was fed the whole log (see :meth:`Auditor.findings`)."""
    found = [
        f
        for f in auditor.findings(reached_end=reached_end)
        if station is None or f.station == station
    ]
    found += [f for f in auditor.offline_starts() if station is None or f.station == station]
    frames = fetch(store, [p for finding in found for p in finding.positions])
    selected = []
    for finding in found:
        finding.evidence = [frames[p] for p in finding.positions if p in frames]
        at = finding.at
        if at is None or ((since is None or at >= since) and (until is None or at <= until)):
            selected.append(finding)
    selected.sort(key=lambda finding: (finding.trigger, finding.kind))
    return selected


def _finding(
    kind: str,
    station: str,
    transaction_ids: list[int | str],
    positions: list[int],
    trigger: int,
    detail: str,
) -> Finding:
    return Finding(
        kind=kind,
        severity=severity_of(kind),
        station=station,
        transaction_ids=transaction_ids,
        positions=sorted(set(positions)),
        trigger=trigger,
        detail=detail,
        source="audit",
    )


def _instant(timestamp: Any) -> float | None:
    """A station's RFC 3339 timestamp as UNIX seconds; ``None`` when it is not one."""
    if type(timestamp) is not str:
        return None
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(timestamp)
        if moment.tzinfo is not None:
            return moment.timestamp()
    return None


def fetch(store: Store | ArchivedLog, positions: Iterable[int]) -> dict[int, Recorded]:
    """The events at ``positions``, read with one query per cluster of nearby positions."""
    wanted = sorted(set(positions))
    found: dict[int, Recorded] = {}
    index = 0
    while index < len(wanted):
        first = last = wanted[index]
        index += 1
        while index < len(wanted) and wanted[index] - last < _FETCH_GAP:
            last = wanted[index]
            index += 1
        for recorded in store.read(first - 1, last - first + 1, stop=last):
            found[recorded.position] = recorded
    return {position: found[position] for position in wanted if position in found}


def _projection_finding(
    kind: str, station: str, positions: list[int], trigger: int, detail: str
) -> Finding:
    """A finding a projection's anomaly makes (it names no transaction)."""
    return Finding(
        kind=kind,
        severity=severity_of(kind),
        station=station,
        transaction_ids=[],
        positions=positions,
        trigger=trigger,
        detail=detail,
        source="projection",
    )
