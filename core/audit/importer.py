"""Import OCPP logs of other systems into a store, so their incidents can be audited too.

Two formats, one frame per line (see ``docs/audit.md``):

* JSON Lines: ``{"timestamp": RFC 3339, "station": ..., "direction": "in"|"out",
  "frame": "<verbatim frame text>", "protocol": "ocpp1.6"|"ocpp2.0.1" (optional)}``;
* text: ``TIMESTAMP STATION DIRECTION FRAME``, separated by whitespace, the frame being the
  rest of the line verbatim (``2024-05-01T10:00:00Z CP-1 in [2,"1","Heartbeat",{}]``).

Blank lines and, in text, lines starting with ``#`` are skipped; any other line that does not
parse is reported with its number and skipped. Frames are recorded verbatim as
``FrameLogged`` in synthetic sessions (``SessionOpened`` ... ``SessionClosed``, node
``import:<file name>``): one per station, and a new one after a gap longer than
``session_gap`` seconds or when the protocol changes. A station's protocol, when its lines do
not say it, is inferred from its CALLs: the first whose action and payload are valid in
exactly one of the two versions decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

from chargeledger.core.audit.progress import Interrupt, Progress
from chargeledger.core.errors import FrameError
from chargeledger.core.events import (
    Direction,
    Event,
    FrameLogged,
    SessionClosed,
    SessionOpened,
    session_stream,
)
from chargeledger.core.frames import Call, parse_frame, validate_request
from chargeledger.core.store import Store
from chargeledger.schemas import OCPP16, OCPP201, PROTOCOLS

__all__ = ["END_OF_IMPORT", "FORMATS", "ImportResult", "LineError", "import_log", "parse_line"]

Format = Literal["jsonl", "text"]
FORMATS: tuple[Format, ...] = ("jsonl", "text")

BATCH = 5000
"""Events per store transaction."""

_DIRECTIONS: tuple[Direction, ...] = ("in", "out")
_CLOSE_NOT_SEEN = 1006
END_OF_IMPORT = "imported log: end of the imported frames"
"""The reason of the ``SessionClosed`` recorded for each session open at the end of an
imported file (or where its import was interrupted): the other system's log stops there."""


class _JsonLine(msgspec.Struct):
    timestamp: str
    station: str
    direction: Literal["in", "out"]
    frame: str
    protocol: Literal["ocpp1.6", "ocpp2.0.1"] | None = None


_decoder = msgspec.json.Decoder(_JsonLine)


class Line(msgspec.Struct, frozen=True):
    """One frame of the imported log."""

    line: int
    """Its line number in the file (from 1)."""
    at: float
    station: str
    direction: Direction
    text: str
    protocol: str | None


class LineError(msgspec.Struct, frozen=True):
    """A line that was skipped, and why."""

    line: int
    error: str


@dataclass
class ImportResult:
    """What an import did."""

    file: str
    frames: int = 0
    """Frames committed."""
    sessions: int = 0
    stations: set[str] = field(default_factory=set)
    protocols: dict[str, str] = field(default_factory=dict)
    """The protocol of each station (given or inferred)."""
    skipped: list[LineError] = field(default_factory=list)
    first_position: int | None = None
    last_position: int | None = None
    interrupted: bool = False
    lines: int = 0
    """The number of the last line read."""


def _instant(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return moment.timestamp()


def parse_line(text: str, number: int, fmt: Format) -> Line | LineError | None:
    """One line of the log: its frame, why it was skipped, or ``None`` for a blank line (or
    a text comment)."""
    text = text.rstrip("\r\n")
    if not text.strip() or (fmt == "text" and text.lstrip().startswith("#")):
        return None
    try:
        if fmt == "jsonl":
            line = _decoder.decode(text)
            timestamp, station, direction = line.timestamp, line.station, line.direction
            frame, protocol = line.frame, line.protocol
        else:
            parts = text.split(None, 3)
            if len(parts) < 4:
                raise ValueError("expected TIMESTAMP STATION DIRECTION FRAME")
            timestamp, station, raw_direction, frame = parts
            if raw_direction not in _DIRECTIONS:
                raise ValueError(f"direction {raw_direction!r} is neither 'in' nor 'out'")
            direction, protocol = raw_direction, None
        if not station:
            raise ValueError("empty station")
        return Line(number, _instant(timestamp), station, direction, frame, protocol)
    except (msgspec.DecodeError, ValueError) as exc:
        return LineError(number, str(exc))


def detect_format(path: Path) -> Format:
    """``jsonl`` for ``.jsonl``/``.ndjson`` files or when the first non-blank line is a JSON
    object, else ``text``."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.strip():
                return "jsonl" if line.lstrip().startswith("{") else "text"
    return "text"


def _lines(path: Path, fmt: Format, progress: Progress | None) -> Iterator[Line | LineError]:
    with path.open("rb") as raw:
        for number, data in enumerate(raw, 1):
            if progress is not None:
                progress.advance_to(raw.tell())
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield LineError(number, f"not UTF-8: {exc}")
                continue
            parsed = parse_line(text, number, fmt)
            if parsed is not None:
                yield parsed


def _protocol_of(line: Line) -> str | None:
    """The one protocol in which ``line`` is a valid station CALL, if exactly one."""
    valid = []
    for protocol in PROTOCOLS:
        try:
            frame = parse_frame(line.text, protocol)
            if not isinstance(frame, Call):
                return None
            if frame.request is None:  # decoded into its type already when it is valid
                validate_request(protocol, frame.action, frame.payload)
        except FrameError:
            continue
        valid.append(protocol)
    return valid[0] if len(valid) == 1 else None


class _Session:
    def __init__(self, station: str, protocol: str, at: float) -> None:
        self.id = str(uuid.uuid4())
        self.stream = session_stream(self.id)
        self.station = station
        self.protocol = protocol
        self.version = 0
        self.last_at = at


class _Importer:
    def __init__(self, store: Store, result: ImportResult, node: str, path: str) -> None:
        self.store = store
        self.result = result
        self.node = node
        self.path = path
        self.batch: list[tuple[str, int, Event]] = []
        self.heads: dict[str, bytes] = {}
        self.open: dict[str, _Session] = {}

    def add(self, session: _Session, event: Event) -> None:
        session.version += 1
        self.batch.append((session.stream, session.version, event))
        if len(self.batch) >= BATCH:
            self.flush()

    def frame(self, line: Line, protocol: str, session_gap: float) -> None:
        session = self.open.get(line.station)
        if session is not None and (
            session.protocol != protocol
            or (session_gap > 0 and line.at - session.last_at > session_gap)
        ):
            gap = line.at - session.last_at
            self.close(session, f"imported log: next frame {gap:.0f} s later or in {protocol}")
            session = None
        if session is None:
            session = self.open[line.station] = _Session(line.station, protocol, line.at)
            self.result.sessions += 1
            self.add(
                session,
                SessionOpened(
                    station=line.station,
                    session=session.id,
                    at=line.at,
                    protocol=protocol,
                    offered=[protocol],
                    path=self.path,
                    node=self.node,
                ),
            )
        session.last_at = max(session.last_at, line.at)
        self.add(
            session,
            FrameLogged(
                station=line.station,
                session=session.id,
                at=line.at,
                direction=line.direction,
                text=line.text,
            ),
        )

    def close(self, session: _Session, reason: str) -> None:
        del self.open[session.station]
        self.add(
            session,
            SessionClosed(
                station=session.station,
                session=session.id,
                at=session.last_at,
                code=_CLOSE_NOT_SEEN,
                reason=reason,
            ),
        )

    def flush(self) -> None:
        if not self.batch:
            return
        recorded = self.store.append(self.batch, self.heads)
        for committed in recorded:
            if committed.hash is not None:
                self.heads[committed.stream] = committed.hash
            if isinstance(committed.event, FrameLogged):
                self.result.frames += 1
        if self.result.first_position is None:
            self.result.first_position = recorded[0].position
        self.result.last_position = recorded[-1].position
        self.batch = []


def import_log(
    store: Store,
    path: Path,
    fmt: Format | None = None,
    *,
    protocol: str | None = None,
    session_gap: float = 3600.0,
    show_progress: bool | None = None,
    interrupt: Interrupt | None = None,
) -> ImportResult:
    """Import the log file at ``path`` into ``store`` (see the module doc).

    ``protocol`` is taken for stations whose lines do not name one and whose CALLs do not
    tell (default ``ocpp1.6``). ``session_gap`` (seconds; 0: never) splits a station's
    frames into sessions. Once ``interrupt`` is requested, the lines read so far are
    committed and their sessions closed. Raises ``OSError`` when the file cannot be read,
    ``StoreUnavailable`` when the store fails (batches committed before stay).
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected {OCPP16} or {OCPP201}")
    fmt = fmt or detect_format(path)
    result = ImportResult(file=str(path))
    size = path.stat().st_size
    inferred: dict[str, str] = {}
    with Progress(size, "reading", "B", show_progress) as progress:
        for line in _lines(path, fmt, progress):
            if interrupt is not None and interrupt.requested:
                break
            if isinstance(line, LineError):
                result.skipped.append(line)
            elif line.direction == "in" and line.station not in inferred:
                found = _protocol_of(line)
                if found is not None:
                    inferred[line.station] = found
    importer = _Importer(store, result, f"import:{path.name}", f"import:{path}")
    with Progress(size, "importing", "B", show_progress) as progress:
        for line in _lines(path, fmt, progress):
            if interrupt is not None and interrupt.requested:
                result.interrupted = True
                break
            result.lines = line.line
            if isinstance(line, Line):
                chosen = line.protocol or inferred.get(line.station) or protocol or OCPP16
                result.stations.add(line.station)
                result.protocols.setdefault(line.station, chosen)
                importer.frame(line, chosen, session_gap)
    for session in list(importer.open.values()):
        importer.close(session, END_OF_IMPORT)
    importer.flush()
    return result
