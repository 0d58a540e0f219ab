"""The install ships every package of the source tree (pyproject lists them explicitly), and
building it is quiet."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
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


def test_the_build_is_quiet_and_ships_the_json_schemas(tmp_path: Path) -> None:
    """Building the wheel (what ``make setup`` does) warns about nothing of ours: each
    directory of package data is declared (setuptools printed ~90 lines per undeclared one)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    for top in TOP_LEVEL:
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-W", "always", "-c", _BUILD],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Warning" not in built.stderr, built.stderr
    with zipfile.ZipFile(tmp_path / "dist" / built.stdout.splitlines()[-1]) as wheel:
        names = set(wheel.namelist())
    assert "chargeledger/schemas/json/v16/BootNotification.json" in names
    assert "chargeledger/schemas/json/v201/BootNotificationRequest.json" in names


_BUILD = "from setuptools import build_meta; print(build_meta.build_wheel('dist'))"
