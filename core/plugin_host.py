"""The plugin host: finds plugins, registers the enabled ones with pluggy, and asks them.

Plugins come from three places: the modules of :mod:`chargeledger.plugins` (named in
``BUILTIN_PLUGINS``), the ``chargeledger.plugins`` entry-point group of installed
distributions, and the importable modules named in ``Settings.plugin_modules``. A plugin's
name is its entry-point name or, otherwise, its module name (the last dotted part for
built-ins, the full dotted path for ``plugin_modules``); ``Settings.disabled_plugins`` names
the ones not to register.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import msgspec
import pluggy

from chargeledger.core import hookspec
from chargeledger.core.commands import Command
from chargeledger.core.events import Recorded
from chargeledger.core.settings import Settings
from chargeledger.projections import Views

__all__ = ["BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "InboundCall", "PluginHost", "discover"]

ENTRY_POINT_GROUP = "chargeledger.plugins"

BUILTIN_PLUGINS = (
    "provisioning",
    "authorization",
    "transactions",
    "availability",
    "data_transfer",
    "notifications",
    "device_model",
    "diagnostics",
)
"""The functional blocks shipped with ChargeLedger, in :mod:`chargeledger.plugins`."""


class InboundCall(msgspec.Struct, frozen=True, kw_only=True):
    """A valid CALL from a station, as plugins see it."""

    station: str
    session: str
    protocol: str
    message_id: str
    action: str
    payload: Any
    """The typed request (a :mod:`chargeledger.schemas` struct for ``protocol``/``action``)."""
    at: float


def discover(modules: Iterable[str] = ()) -> dict[str, object]:
    """Every plugin that can be enabled, by name: built-ins, entry points, then ``modules``.

    Raises ``ImportError`` when a named module or an entry point cannot be imported: a
    platform team's block that silently failed to load would be worse than no server."""
    found: dict[str, object] = {
        name: importlib.import_module(f"chargeledger.plugins.{name}") for name in BUILTIN_PLUGINS
    }
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        found[entry_point.name] = entry_point.load()
    for module in modules:
        found[module] = importlib.import_module(module)
    return found


class PluginHost:
    """Holds the pluggy manager and asks the registered plugins.

    Raises ``ValueError`` when ``settings.disabled_plugins`` names a plugin that does not exist
    (a typo there would silently leave a block enabled).
    """

    def __init__(self, settings: Settings, plugins: dict[str, object] | None = None) -> None:
        self.settings = settings
        available = discover(settings.plugin_modules) if plugins is None else plugins
        unknown = set(settings.disabled_plugins) - set(available)
        if unknown:
            raise ValueError(f"unknown plugin(s) in disabled_plugins: {sorted(unknown)}")
        self.manager = pluggy.PluginManager(hookspec.PROJECT)
        self.manager.add_hookspecs(hookspec)
        for name, plugin in available.items():
            if name not in settings.disabled_plugins:
                self.manager.register(plugin, name=name)

    @property
    def enabled(self) -> list[str]:
        """Names of the registered plugins."""
        return [name for name, _ in self.manager.list_name_plugin()]

    def answer_call(self, call: InboundCall, views: Views) -> list[Command] | None:
        """The first plugin answer for ``call`` (``None`` when no plugin answered)."""
        result: list[Command] | None = self.manager.hook.chargeledger_answer_call(
            call=call, views=views, settings=self.settings
        )
        return result

    def react(self, recorded: Recorded, views: Views) -> list[Command]:
        """All plugins' commands in reaction to a committed event."""
        results: Iterable[list[Command]] = self.manager.hook.chargeledger_react(
            recorded=recorded, views=views, settings=self.settings
        )
        return [command for commands in results for command in (commands or [])]
