"""What the console's templates show, computed: use-case forms from the table, frame rows,
the meter-value curve of a transaction."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec import inspect

from chargeledger.core.api import Caller
from chargeledger.core.events import FrameLogged, Recorded
from chargeledger.core.store import Store
from chargeledger.core.times import rfc3339
from chargeledger.core.usecases import USE_CASES
from chargeledger.projections.exchanges import decode_frame
from chargeledger.projections.transactions import TransactionState, energy_register_wh

__all__ = [
    "FormField",
    "event_row",
    "instant",
    "meter_curve",
    "recent_frames",
    "use_case_forms",
]

RECENT_FRAMES = 50
"""Frames a station page shows."""
RECENT_BUDGET = 20_000
"""Events read back from the end of the log, at most, to find them."""
_PAGE = 1000
_POWER = "Power.Active.Import"


def instant(text: str | None) -> datetime | None:
    """A query's RFC 3339 time (or date); UTC without an offset. Raises ``ValueError``."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- use-case forms ----------------------------------------------------------------------


class FormField(msgspec.Struct, frozen=True, kw_only=True):
    """One input of a use case's form. ``kind`` tells console.js how to read it: ``str``,
    ``int``, ``float``, ``bool``, ``choice`` (one of ``choices``), ``id`` (a number or a
    string), ``lines`` (a list of strings, one a line), ``pairs`` (``key=value`` lines, an
    object) or ``json`` (any JSON value)."""

    name: str
    kind: str
    required: bool
    default: str = ""
    choices: list[str] = []
    minimum: float | None = None
    maximum: float | None = None


def _field(field: inspect.Field) -> FormField:
    kind, choices = "json", []
    lo = hi = None
    found: inspect.Type = field.type
    if isinstance(found, inspect.UnionType):
        rest = [t for t in found.types if not isinstance(t, inspect.NoneType)]
        found = rest[0] if len(rest) == 1 else found
    if isinstance(found, inspect.UnionType):
        names = {type(t).__name__ for t in found.types if not isinstance(t, inspect.NoneType)}
        kind = "id" if names == {"IntType", "StrType"} else "json"
    elif isinstance(found, inspect.StrType):
        kind = "str"
    elif isinstance(found, inspect.BoolType):
        kind = "bool"
    elif isinstance(found, inspect.IntType | inspect.FloatType):
        kind = "int" if isinstance(found, inspect.IntType) else "float"
        lo, hi = found.ge, found.le
    elif isinstance(found, inspect.LiteralType):
        kind, choices = "choice", [str(value) for value in found.values]
    elif isinstance(found, inspect.ListType) and isinstance(found.item_type, inspect.StrType):
        kind = "lines"
    elif isinstance(found, inspect.DictType) and isinstance(found.value_type, inspect.StrType):
        kind = "pairs"
    default = field.default
    shown = (
        ""
        if default in (inspect.NODEFAULT, None)
        else str(default).lower()
        if isinstance(default, bool)
        else str(default)
    )
    return FormField(
        name=field.name,
        kind=kind,
        required=field.required,
        default=shown,
        choices=choices,
        minimum=lo,
        maximum=hi,
    )


def use_case_forms(caller: Caller) -> list[dict[str, Any]]:
    """A form per use case of the table the caller's role may run: name, what it does (its
    docstring), role and fields. Empty for a caller who may send no command."""
    forms = []
    for use_case in USE_CASES.values():
        if not caller.may(use_case.role):
            continue
        info = inspect.type_info(use_case.args)
        assert isinstance(info, inspect.StructType)
        forms.append(
            {
                "name": use_case.name,
                "summary": use_case.summary,
                "role": use_case.role,
                "fields": [_field(field) for field in info.fields],
            }
        )
    return forms


# -- frames --------------------------------------------------------------------------------


def _ids(payload: Any) -> str | None:
    """The transaction id a payload names (1.6 ``transactionId``, 2.0.1
    ``transactionInfo.transactionId`` or ``transactionId``)."""
    if type(payload) is not dict:
        return None
    found = payload.get("transactionId")
    info = payload.get("transactionInfo")
    if found is None and type(info) is dict:
        found = info.get("transactionId")
    return None if found is None else str(found)


def event_row(recorded: Recorded) -> dict[str, Any]:
    """An event as a row of a frame list: position, time, kind, station, and for a frame its
    direction, verbatim text, action and the transaction it names (when it names one)."""
    event = recorded.event
    at = getattr(event, "at", None)
    row: dict[str, Any] = {
        "position": recorded.position,
        "at": None if at is None else rfc3339(at),
        "kind": type(event).__name__,
        "station": getattr(event, "station", None),
        "direction": None,
        "text": "",
        "action": None,
        "transaction": None,
        "note": getattr(event, "note", None),
    }
    if isinstance(event, FrameLogged):
        frame = decode_frame(event.text)
        row["direction"] = event.direction
        row["text"] = event.text or event.binary or ""
        if frame is not None and frame[0] == 2 and len(frame) > 3:
            row["action"] = frame[2] if type(frame[2]) is str else None
            row["transaction"] = _ids(frame[3])
        elif frame is not None and len(frame) > 2:
            row["transaction"] = _ids(frame[2])
    return row


def recent_frames(
    store: Store, station: str, limit: int = RECENT_FRAMES, budget: int = RECENT_BUDGET
) -> list[dict[str, Any]]:
    """The station's newest ``limit`` frames as :func:`event_row` rows, newest first, found
    by reading back from the end of the log (at most ``budget`` events); blocking."""
    found: list[dict[str, Any]] = []
    upto = store.max_position()
    examined = 0
    while upto > 0 and examined < budget and len(found) < limit:
        start = max(0, upto - _PAGE)
        page = store.read(start, upto - start, stop=upto)
        for recorded in reversed(page):
            event = recorded.event
            if isinstance(event, FrameLogged) and event.station == station:
                found.append(event_row(recorded))
                if len(found) == limit:
                    break
        examined += upto - start
        upto = start
    return found


# -- the meter-value curve -----------------------------------------------------------------


def _number(value: Any) -> float | None:
    with contextlib.suppress(TypeError, ValueError):
        return float(value)
    return None


def power_w(meter_value: Any) -> float | None:
    """The active import power (W) of one ``meterValue``: its reading without ``phase``, or
    the sum of its per-phase readings; unit W or kW (1.6 ``unit``, 2.0.1
    ``unitOfMeasure``)."""
    samples = meter_value.get("sampledValue") if type(meter_value) is dict else None
    total, phases = None, 0.0
    for sample in samples if type(samples) is list else ():
        if type(sample) is not dict or sample.get("measurand") != _POWER:
            continue
        value = _number(sample.get("value"))
        unit = sample.get("unit")
        measure = sample.get("unitOfMeasure")
        scale = 1.0
        if type(measure) is dict:
            unit = measure.get("unit", "W")
            scale = 10.0 ** (_number(measure.get("multiplier")) or 0)
        if value is None or unit not in (None, "W", "kW"):
            continue
        watts = value * scale * (1000.0 if unit == "kW" else 1.0)
        if sample.get("phase") is None:
            total = watts
        elif sample.get("phase") != "N":
            phases += watts
    return total if total is not None else (phases or None)


def _samples(transaction: TransactionState, frames: list[Recorded]) -> list[tuple[float, Any]]:
    """``(time, meterValue)`` of every meter value the transaction's CALLs carried, and its
    start reading, in time order."""
    found: list[tuple[float, Any]] = []
    for recorded in frames:
        event = recorded.event
        frame = decode_frame(event.text) if isinstance(event, FrameLogged) else None
        if frame is None or frame[0] != 2 or len(frame) < 4 or type(frame[3]) is not dict:
            continue
        payload = frame[3]
        if frame[2] == "StartTransaction":
            at = instant_or_none(payload.get("timestamp"))
            start = payload.get("meterStart")
            if at is not None and start is not None:
                found.append((at, {"energy": start}))
        for key in ("meterValue", "transactionData"):
            for meter_value in payload.get(key) or ():
                at = instant_or_none(meter_value.get("timestamp"))
                if at is not None:
                    found.append((at, meter_value))
    return sorted(found, key=lambda item: item[0])


def instant_or_none(timestamp: Any) -> float | None:
    """A station's RFC 3339 timestamp as UNIX seconds, ``None`` when it is not one."""
    if type(timestamp) is not str:
        return None
    try:
        moment = instant(timestamp)
    except ValueError:
        return None
    return None if moment is None else moment.timestamp()


_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 720.0, 260.0, 64.0, 64.0, 16.0, 36.0


def _scale(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    return (low, high) if high > low else (low - 1, high + 1)


def meter_curve(transaction: TransactionState, frames: list[Recorded]) -> dict[str, Any]:
    """The transaction's energy (Wh) and power (W) over time as the SVG coordinates the
    transaction page draws: ``energy`` and ``power`` polylines, axis ticks, and the points
    as a table (``rows``). ``points`` is 0 when no meter value has a time."""
    rows: list[dict[str, Any]] = []
    for at, meter_value in _samples(transaction, frames):
        wh = (
            _number(meter_value["energy"])
            if "energy" in meter_value
            else energy_register_wh([meter_value])
        )
        rows.append({"at": at, "time": rfc3339(at), "energy": wh, "power": power_w(meter_value)})
    if not rows:
        return {"points": 0, "rows": []}
    t0, t1 = _scale([row["at"] for row in rows])
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(at: float) -> float:
        return round(_LEFT + (at - t0) / (t1 - t0) * plot_w, 1)

    def line(name: str) -> tuple[str, list[dict[str, Any]]]:
        values = [row[name] for row in rows if row[name] is not None]
        if not values:
            return "", []
        low, high = _scale(values if name == "energy" else [0.0, *values])

        def y(value: float) -> float:
            return round(_TOP + plot_h - (value - low) / (high - low) * plot_h, 1)

        points = " ".join(f"{x(r['at'])},{y(r[name])}" for r in rows if r[name] is not None)
        ticks = [{"y": y(v), "label": f"{v:,.0f}"} for v in (low, (low + high) / 2, high)]
        return points, ticks

    energy, energy_ticks = line("energy")
    power, power_ticks = line("power")
    return {
        "points": len(rows),
        "width": _WIDTH,
        "height": _HEIGHT,
        "left": _LEFT,
        "right": _WIDTH - _RIGHT,
        "top": _TOP,
        "bottom": _HEIGHT - _BOTTOM,
        "energy": energy,
        "power": power,
        "energy_ticks": energy_ticks,
        "power_ticks": power_ticks,
        "time_ticks": [{"x": x(at), "label": rfc3339(at)[11:19]} for at in (t0, (t0 + t1) / 2, t1)],
        "rows": rows,
    }
