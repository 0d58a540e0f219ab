"""The one RFC 3339 formatter (core/times.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeledger.core.times import rfc3339

REPO = Path(__file__).resolve().parents[1]

TIMES = st.floats(min_value=-2e9, max_value=2.5e11, allow_nan=False) | st.integers(
    0, 4_000_000_000
).map(lambda second: second + 0.9995)


@given(TIMES)
def test_same_text_as_datetime(at: float) -> None:
    moment = datetime.fromtimestamp(at, UTC)
    for digits, timespec in ((3, "milliseconds"), (6, "microseconds")):
        expected = moment.isoformat(timespec=timespec).replace("+00:00", "Z")
        assert rfc3339(at, digits) == expected


def test_examples_and_refusals() -> None:
    assert rfc3339(1714557600.0) == "2024-05-01T10:00:00.000Z"
    assert rfc3339(1714557600.9999996) == "2024-05-01T10:00:01.000Z", "rounded to the µs"
    assert rfc3339(1714557600.25, 6) == "2024-05-01T10:00:00.250000Z"
    with pytest.raises(ValueError):
        rfc3339(0.0, 4)


def test_there_is_one_formatter() -> None:
    formatting = re.compile(r"strftime\(|(?<!from)isoformat\(|\.replace\(\"\+00:00\"")
    found = [
        str(path.relative_to(REPO))
        for folder in ("core", "plugins", "projections")
        for path in sorted((REPO / folder).rglob("*.py"))
        if formatting.search(path.read_text())
    ]
    assert found == ["core/times.py"]
