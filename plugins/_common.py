"""Small pure helpers shared by the built-in functional blocks."""

from __future__ import annotations

from typing import Any

from chargeledger.projections._frames import rfc3339

__all__ = ["options", "rfc3339"]


def options(settings: Any, plugin: str) -> dict[str, Any]:
    """The ``[plugins.<plugin>]`` table of the settings (empty when absent)."""
    table: dict[str, Any] = settings.plugins.get(plugin, {})
    return table
