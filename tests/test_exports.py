"""The core's public surface and layers, frozen: what ``chargeledger/core/__init__.py`` says.

A new module of the core fails here until it is given a layer (and, if code outside the
core may use it, a place among the public modules) both below and in the package docstring.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import chargeledger.core
import chargeledger.plugins
import chargeledger.projections

__all__: list[str] = []

LAYERS = {
    "errors": 1,
    "events": 1,
    "frames": 1,
    "commands": 1,
    "settings": 1,
    "times": 1,
    "tariff": 1,
    "usecase_base": 2,
    "usecases_tariffs": 2,
    "usecases": 2,
    "usecases_display": 2,
    "usecases_diagnostics": 2,
    "usecases_smart_charging": 2,
    "usecases_pnc": 2,
    "plugin": 2,
    "hookspec": 2,
    "plugin_host": 2,
    "decide": 2,
    "security": 2,
    "tokens": 2,
    "usecases_firmware": 2,
    "firmware": 2,
    "site_decisions": 2,
    "store": 3,
    "writer": 3,
    "allocator": 3,
    "archive": 3,
    "gateway": 4,
    "nodes": 4,
    "feed": 4,
    "dispatcher": 4,
    "follower": 4,
    "cluster": 4,
    "worker": 4,
    "ocsp": 4,
    "drain": 4,
    "api": 4,
    "server": 4,
    "http": 4,
    "startup": 4,
    "cli": 5,
    "remote": 5,
    "station_cli": 5,
    "lists_cli": 5,
    "tokens_cli": 5,
    "diagnostics_cli": 5,
    "tariffs_cli": 5,
    "profiles_cli": 5,
    "sites_cli": 5,
    "firmware_cli": 5,
    "jsonlines": 5,
    "audit": 5,
    "console": 5,
    "simulator": 5,
}
"""Each module (or subpackage) of the core and its layer, as the package docstring says."""

PROJECTIONS_LAYER = 2

PUBLIC = {
    "errors",
    "events",
    "frames",
    "commands",
    "settings",
    "times",
    "tariff",
    "usecase_base",
    "usecases_tariffs",
    "usecases",
    "usecases_display",
    "usecases_diagnostics",
    "usecases_smart_charging",
    "usecases_pnc",
    "usecases_firmware",
    "firmware",
    "site_decisions",
    "plugin",
    "hookspec",
    "plugin_host",
    "security",
    "tokens",
    "store",
    "api",
    "server",
    "simulator",
}

CORE = Path(chargeledger.core.__file__).parent
PLUGINS = Path(chargeledger.plugins.__file__).parent
PROJECTIONS = Path(chargeledger.projections.__file__).parent
DOC = chargeledger.core.__doc__ or ""


def _top_level_of_core() -> set[str]:
    names = {path.stem for path in CORE.glob("*.py") if path.stem != "__init__"}
    return names | {path.parent.name for path in CORE.glob("*/__init__.py")}


def _imports(path: Path) -> Iterator[tuple[str, str, int]]:
    """``(module, name, line)`` of every ``from module import name`` and ``import module``
    (name ``""``) in ``path``, wherever it sits (functions and TYPE_CHECKING blocks too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            for alias in node.names:
                yield node.module or "", alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, "", node.lineno


def _core_module(module: str, name: str) -> str | None:
    """The top-level core module an import reaches, ``None`` when not the core."""
    if module == "chargeledger.core":
        return name
    if module.startswith("chargeledger.core."):
        return module.split(".")[2]
    return None


def _layer(module: str) -> int:
    assert module in LAYERS, f"the core module {module} has no layer in LAYERS"
    return LAYERS[module]


def _own(path: Path) -> str:
    return path.relative_to(CORE).parts[0].removesuffix(".py")


def test_every_module_of_the_core_has_a_layer() -> None:
    assert _top_level_of_core() == set(LAYERS), (
        "give a new module its layer in LAYERS (and PUBLIC if plugins may use it) and a "
        "place in core/__init__.py's docstring; drop a removed one from both"
    )
    assert set(PUBLIC) <= set(LAYERS)


def test_the_package_docstring_says_the_same() -> None:
    for layer in sorted(set(LAYERS.values())):
        section = DOC.split(f"\n{layer}. ", 1)[1].split(f"\n{layer + 1}. ", 1)[0]
        section = section.split("\nPublic modules", 1)[0]
        named = set(re.findall(r"``(\w+)``", section)) & set(LAYERS)
        assert named == {m for m, n in LAYERS.items() if n == layer}, f"layer {layer}"
    public = DOC.split("\nPublic modules", 1)[1].split("Import their", 1)[0]
    assert set(re.findall(r"``(\w+)``", public)) == PUBLIC


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_imports_never_reach_a_higher_layer(path: Path) -> None:
    if path.parent == CORE and path.stem == "__init__":
        return
    own = _layer(_own(path))
    for module, name, line in _imports(path):
        target = _core_module(module, name)
        if target is not None:
            assert _layer(target) <= own, f"{path.name}:{line} imports {target} from above"
        elif module.startswith("chargeledger.projections"):
            assert own >= PROJECTIONS_LAYER, f"{path.name}:{line} imports the projections"


@pytest.mark.parametrize(
    "path",
    sorted([*PLUGINS.rglob("*.py"), *PROJECTIONS.rglob("*.py")]),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_plugins_and_projections_use_only_public_modules(path: Path) -> None:
    projection = path.is_relative_to(PROJECTIONS)
    for module, name, line in _imports(path):
        target = _core_module(module, name)
        if target is None:
            continue
        assert target in PUBLIC, f"{path.name}:{line} imports the internal {target}"
        if projection:  # views fold events: nothing above the values
            assert _layer(target) < PROJECTIONS_LAYER, f"{path.name}:{line} imports {target}"


@pytest.mark.parametrize(
    "path",
    sorted([*CORE.rglob("*.py"), *PLUGINS.rglob("*.py"), *PROJECTIONS.rglob("*.py")]),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_nobody_imports_a_private_name_of_a_core_module(path: Path) -> None:
    for module, name, line in _imports(path):
        if _core_module(module, name) is not None:
            assert not name.startswith("_"), f"{path.name}:{line} imports {module}.{name}"
            assert not any(part.startswith("_") for part in module.split(".")), (
                f"{path.name}:{line} imports the private module {module}"
            )


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_a_public_module_exports_public_names_it_has(module: str) -> None:
    imported = importlib.import_module(f"chargeledger.core.{module}")
    exported = getattr(imported, "__all__", None)
    if exported is None:  # every public name is its surface
        exported = [n for n in vars(imported) if not n.startswith("_")]
    assert exported, module
    for name in exported:
        assert not name.startswith("_"), f"{module}.{name}"
        assert hasattr(imported, name), f"{module}.__all__ names the missing {name}"
