"""JSON Lines on standard output: what every command's ``--json`` prints."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = ["print_json_lines"]

_encode = msgspec.json.Encoder().encode


def print_json_lines(objects: Iterable[Any]) -> None:
    """Write each of ``objects`` (anything msgspec encodes: dicts, structs, lists) as one
    compact JSON line on stdout, then flush.

    Objects are written as the iterable yields them, so a long listing streams. Raises
    ``TypeError`` for an object msgspec cannot encode, and ``BrokenPipeError`` when the
    reader went away (``chargeledger ... | head``): the command's caller decides what that
    means.
    """
    out = sys.stdout.buffer
    for obj in objects:
        out.write(_encode(obj) + b"\n")
    out.flush()
