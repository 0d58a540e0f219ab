"""The install ships every package of the source tree (pyproject lists them explicitly)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("core", "plugins", "schemas", "projections", "tests")


def test_every_source_package_is_installed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        "chargeledger." + ".".join(init.parent.relative_to(REPO).parts)
        for top in TOP_LEVEL
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_console_script_points_at_the_cli() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["chargeledger"] == "chargeledger.core.cli:main"
