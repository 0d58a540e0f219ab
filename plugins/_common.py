"""Small pure helpers shared by the built-in functional blocks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["options", "rfc3339"]


def rfc3339(at: float) -> str:
    """``at`` (UNIX seconds) as the RFC 3339 UTC text OCPP uses, millisecond precision."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def options(settings: Any, plugin: str) -> dict[str, Any]:
    """The ``[plugins.<plugin>]`` table of the settings (empty when absent)."""
    table: dict[str, Any] = settings.plugins.get(plugin, {})
    return table
