"""Replay: a fresh fold compared with a saved snapshot of the views, and what-if re-decision.

A snapshot is the JSON of every projection of :class:`~chargeledger.projections.Views`
(each projection's ``all()``, and its ``anomalies`` when it has some) and the position it was
folded to. ``chargeledger replay --save`` writes one; a later ``chargeledger replay`` folds
the log afresh up to that position and reports every difference: what a changed projection
would have said about the same history.

What-if: the recorded station CALLs go through today's codec and plugins, with the views
folded up to just before each of them, and today's answers are compared with the recorded
ones; and the firmware campaigns' rollout decisions (:mod:`chargeledger.core.firmware`) are
taken again by today's plugins and compared with the recorded ones (``campaign_decisions``),
and so are the site limits' allocations (:mod:`chargeledger.core.site_decisions`,
``site_decisions``).
Nothing is sent and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from chargeledger.core.decide import Answered, Retransmission, answer_wire, decide_call, error_text
from chargeledger.core.errors import FrameError, error_code
from chargeledger.core.events import FrameLogged, Recorded, SessionClosed, SessionOpened
from chargeledger.core.firmware import (
    Decision,
    decides,
    decisions_in,
    recorded_decision,
    sort_decisions,
)
from chargeledger.core.frames import Call, CallErrorFrame, CallResult, encode_result, parse_frame
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.site_decisions import (
    recorded_site_decision,
    site_decides,
    site_decisions_in,
)
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.projections.exchanges import as_int
from chargeledger.schemas import OCPP16

__all__ = [
    "SNAPSHOT_FORMAT",
    "Difference",
    "Redecision",
    "WhatIf",
    "diff",
    "load_snapshot",
    "save_snapshot",
    "snapshot",
]

SNAPSHOT_FORMAT = 1

_NEW_ID = "<new id>"


def _key(index: int, row: dict[str, Any]) -> str:
    """A stable name for one row of a projection."""
    if "kind" in row and "position" in row:
        return f"{row['kind']}@{row['position']}"
    if "reservation_id" in row and "station" in row:  # before: it names a transaction too
        return f"{row['station']}/reservation {row['reservation_id']}"
    if "transaction_id" in row and "station" in row:
        return f"{row['station']}/{row['transaction_id']}"
    if "station" in row:
        return str(row["station"])
    if "id_token" in row and "type" in row:
        return f"{row['id_token']}/{row['type']}"
    return str(index)


def _rows(states: list[Any]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = msgspec.json.decode(msgspec.json.encode(states))
    return {_key(index, row): row for index, row in enumerate(rows)}


def snapshot(views: Views) -> dict[str, Any]:
    """The JSON-ready snapshot of every projection of ``views`` (see the module doc)."""
    projections: dict[str, Any] = {}
    for name, projection in sorted(vars(views).items()):
        if name.startswith("_") or not callable(getattr(projection, "all", None)):
            continue
        projections[name] = _rows(projection.all())
        anomalies = getattr(projection, "anomalies", None)
        if isinstance(anomalies, list):
            projections[f"{name}.anomalies"] = _rows(anomalies)
    return {
        "format": SNAPSHOT_FORMAT,
        "position": views.position,
        "projections": projections,
    }


def save_snapshot(path: Path, data: dict[str, Any], saved_at: float) -> None:
    """Write ``data`` to ``path`` atomically (a half-written snapshot is never left)."""
    document = {**data, "saved_at": rfc3339(saved_at)}
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(msgspec.json.encode(document))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def load_snapshot(path: Path) -> dict[str, Any]:
    """The snapshot at ``path``. Raises ``OSError`` when it cannot be read and
    ``ValueError`` when it is not a snapshot this version understands."""
    try:
        data = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is not a views snapshot: {exc}") from None
    if type(data) is not dict or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"{path} is not a views snapshot of format {SNAPSHOT_FORMAT}")
    return data


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """One way the fresh fold differs from the saved snapshot."""

    projection: str
    key: str
    """The row: a station, ``station/transaction_id``, ``kind@position`` of an anomaly."""
    change: Literal["added", "removed", "changed"]
    field: str | None
    """The changed field (dotted for nested ones); ``None`` for a whole row."""
    saved: Any
    replayed: Any


def diff(saved: dict[str, Any], fresh: dict[str, Any]) -> list[Difference]:
    """How the projections of snapshot ``fresh`` differ from those of ``saved``."""
    found: list[Difference] = []
    old, new = saved["projections"], fresh["projections"]
    for projection in sorted(old.keys() | new.keys()):
        before, after = old.get(projection, {}), new.get(projection, {})
        for key in sorted(before.keys() | after.keys()):
            if key not in before:
                found.append(Difference(**_row(projection, key, "added", None, after[key])))
            elif key not in after:
                found.append(Difference(**_row(projection, key, "removed", before[key], None)))
            else:
                found += [
                    Difference(
                        projection=projection,
                        key=key,
                        change="changed",
                        field=field,
                        saved=was,
                        replayed=now,
                    )
                    for field, was, now in _changes("", before[key], after[key])
                ]
    return found


def _row(projection: str, key: str, change: str, saved: Any, replayed: Any) -> dict[str, Any]:
    return {
        "projection": projection,
        "key": key,
        "change": change,
        "field": None,
        "saved": saved,
        "replayed": replayed,
    }


def _changes(prefix: str, was: Any, now: Any) -> list[tuple[str, Any, Any]]:
    """The leaves that differ, by dotted path; lists are compared whole."""
    if type(was) is dict and type(now) is dict:
        return [
            change
            for name in sorted(was.keys() | now.keys())
            for change in _changes(f"{prefix}{name}.", was.get(name), now.get(name))
        ]
    return [] if was == now else [(prefix.rstrip("."), was, now)]


# -------------------------------------------------------------------------
# What-if
# -------------------------------------------------------------------------


class Redecision(msgspec.Struct, frozen=True, kw_only=True):
    """A station CALL that today's rules answer differently from what was recorded."""

    station: str
    action: str
    positions: list[int]
    """The CALL and the recorded answer."""
    transaction_ids: list[int | str]
    recorded: str
    """The recorded answer, verbatim."""
    today: str
    """Today's answer (a new 1.6 transaction id shows as ``"<new id>"``)."""
    detail: str


class _Pending(msgspec.Struct):
    station: str
    action: str
    position: int
    protocol: str
    answer: dict[str, Any] | FrameError
    """Today's CALLRESULT payload or CALLERROR."""
    new_id: bool
    """Today's answer carries a new transaction id."""
    text: str


class WhatIf:
    """Re-decides every recorded station CALL as today's gateway would; feed it the log in
    order.

    Each CALL takes the gateway's own inbound path (:func:`~chargeledger.core.decide.decide_call`)
    with a retransmission window per station kept as the gateway keeps it: a verbatim
    retransmission today's gateway answers from that window is counted in ``cached`` and not
    compared (its answer is the earlier one, compared already); a message id reused by a
    different CALL is compared as today's ``ProtocolError``. The window of a server that was
    restarted in the middle of the log is empty from then on; the replay cannot see restarts,
    so a retransmission across one shows as ``cached`` here while it was decided afresh then.
    Timestamps in answers compare as instants, to the second (another CSMS's ``currentTime``
    is its own clock's).
    """

    def __init__(self, plugins: PluginHost) -> None:
        self.plugins = plugins
        self.views = Views()
        self.events = 0
        self.decided = 0
        """CALLs re-decided and compared with their recorded answer."""
        self.cached = 0
        """Verbatim retransmissions, answered from the retransmission window: not compared."""
        self.unanswered = 0
        """CALLs without a recorded answer (the session ended first)."""
        self.differences: list[Redecision] = []
        self._protocols: dict[str, str] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._answered: dict[str, Answered] = {}
        self._decisions_recorded: list[Decision] = []
        self._decisions_today: list[Decision] = []
        self._sites_recorded: list[Decision] = []
        self._sites_today: list[Decision] = []

    @property
    def position(self) -> int:
        return self.views.position

    def feed(self, recorded: Recorded) -> None:
        """Take the next event of the log: decide before folding it, as the gateway did."""
        event = recorded.event
        if isinstance(event, SessionOpened):
            self._protocols[event.session] = event.protocol
        elif isinstance(event, SessionClosed):
            self._protocols.pop(event.session, None)
            for key in [key for key in self._pending if key[0] == event.session]:
                del self._pending[key]
                self.unanswered += 1
        elif isinstance(event, FrameLogged) and not event.binary:
            if event.direction == "in":
                self._inbound(recorded.position, event)
            else:
                self._outbound(recorded.position, event)
        self.views.apply(recorded)
        self.events += 1
        decision = recorded_decision(event)
        if decision is not None:
            self._decisions_recorded.append(decision)
        site_decision = recorded_site_decision(event)
        if site_decision is not None:
            self._sites_recorded.append(site_decision)
        campaigns, sites = decides(event), site_decides(self.views)
        if campaigns or sites:
            commands = self.plugins.react(recorded, self.views)
            if campaigns:
                self._decisions_today += decisions_in(commands)
            if sites:
                self._sites_today += site_decisions_in(commands)

    def campaign_decisions(self) -> tuple[list[Decision], list[Decision]]:
        """The firmware campaigns' decisions fed so far: those recorded and those today's
        plugins take again, each sorted (equal when the rollout replays)."""
        return sort_decisions(self._decisions_recorded), sort_decisions(self._decisions_today)

    def site_decisions(self) -> tuple[list[Decision], list[Decision]]:
        """The site limits' allocation decisions fed so far: those recorded and those
        today's plugins take again, each sorted (equal when the allocations replay)."""
        return sort_decisions(self._sites_recorded), sort_decisions(self._sites_today)

    def _inbound(self, position: int, event: FrameLogged) -> None:
        protocol = self._protocols.get(event.session, OCPP16)
        try:
            frame = parse_frame(event.text, protocol)
        except FrameError as exc:
            self._expect(event, position, protocol, "", exc.message_id, exc, False)
            return
        if not isinstance(frame, Call):
            return  # the station answering one of our CALLs
        answered = self._answered.setdefault(event.station, Answered())
        decision = decide_call(
            answered,
            self.plugins,
            self.views,
            frame,
            event.text,
            station=event.station,
            session=event.session,
            protocol=protocol,
            at=event.at,
        )
        if decision.retransmission is Retransmission.VERBATIM:
            self.cached += 1
            return
        assert not isinstance(decision.answer, str)  # only a verbatim retransmission's is
        new_id = decision.needs_transaction_id
        answer = answer_wire(protocol, frame, decision.answer, 1 if new_id else None)
        text = self._expect(
            event, position, protocol, frame.action, frame.message_id, answer, new_id
        )
        if decision.note is None:
            answered.remember(frame.message_id, event.text, text, event.session)

    def _expect(
        self,
        event: FrameLogged,
        position: int,
        protocol: str,
        action: str,
        message_id: str,
        answer: dict[str, Any] | FrameError,
        new_id: bool,
    ) -> str:
        """Wait for the recorded answer to the CALL at ``position``, to compare it with
        today's ``answer``; today's answer text (a new id shown as ``"<new id>"``)."""
        if isinstance(answer, FrameError):
            text = error_text(protocol, answer)
        else:
            shown = {**answer, "transactionId": _NEW_ID} if new_id else answer
            text = encode_result(message_id, shown)
        self._pending[(event.session, message_id)] = _Pending(
            event.station, action, position, protocol, answer, new_id, text
        )
        return text

    def _outbound(self, position: int, event: FrameLogged) -> None:
        protocol = self._protocols.get(event.session, OCPP16)
        try:
            frame = parse_frame(event.text, protocol)
        except FrameError:
            return
        if isinstance(frame, Call):
            return
        pending = self._pending.pop((event.session, frame.message_id), None)
        if pending is None:
            return
        self.decided += 1
        detail = self._compare(pending, frame)
        if detail is None:
            return
        ids: list[int | str] = []
        for payload in (
            frame.payload if isinstance(frame, CallResult) else {},
            pending.answer if isinstance(pending.answer, dict) and not pending.new_id else {},
        ):
            found = as_int(payload.get("transactionId"))
            if found is not None and found not in ids:
                ids.append(found)
        self.differences.append(
            Redecision(
                station=pending.station,
                action=pending.action,
                positions=[pending.position, position],
                transaction_ids=ids,
                recorded=event.text,
                today=pending.text,
                detail=detail,
            )
        )

    def _compare(self, pending: _Pending, recorded: CallResult | CallErrorFrame) -> str | None:
        """Why today's answer differs from the recorded one; ``None`` when it does not."""
        today = pending.answer
        if isinstance(today, FrameError):
            code = error_code(pending.protocol, today.code)
            if isinstance(recorded, CallErrorFrame):
                if recorded.code == code:
                    return None
                return f"recorded CALLERROR {recorded.code}; today CALLERROR {code}"
            return f"recorded a CALLRESULT; today CALLERROR {code}: {today.description}"
        if isinstance(recorded, CallErrorFrame):
            return f"recorded CALLERROR {recorded.code}; today a CALLRESULT"
        payload = recorded.payload
        if not pending.new_id:
            if _same(payload, today):
                return None
            earlier, recorded_id = (
                as_int(today.get("transactionId")),
                as_int(payload.get("transactionId")),
            )
            if earlier is not None and recorded_id is not None and recorded_id != earlier:
                return (
                    f"recorded transaction id {recorded_id}; today's rules answer with the "
                    f"existing transaction {earlier}: no second transaction for this start"
                )
            return "the answers differ"
        recorded_id = as_int(payload.get("transactionId"))
        rest = {name: value for name, value in payload.items() if name != "transactionId"}
        mine = {name: value for name, value in today.items() if name != "transactionId"}
        issued = recorded_id is not None and self.views.transactions.get(recorded_id) is None
        if not issued:
            return (
                f"recorded the existing transaction id {recorded_id}; today's rules issue a new id"
            )
        return None if _same(rest, mine) else "the answers differ beside the new transaction id"


def _same(recorded: Any, today: Any) -> bool:
    """Equal, with timestamps compared as instants to the second."""
    if type(recorded) is dict and type(today) is dict:
        return recorded.keys() == today.keys() and all(
            _same(recorded[name], today[name]) for name in recorded
        )
    if type(recorded) is list and type(today) is list:
        return len(recorded) == len(today) and all(map(_same, recorded, today))
    if recorded == today:
        return True
    if type(recorded) is str and type(today) is str:
        try:
            return abs(_seconds(recorded) - _seconds(today)) < 1
        except ValueError:
            return False
    return False


def _seconds(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("no UTC offset")
    return moment.timestamp()
