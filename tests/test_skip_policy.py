"""The suite's skip policy (``tests/conftest.py``): a skip fails the run, PostgreSQL being
unreachable fails its tests, and ``CHARGELEDGER_TEST_ALLOW_SKIPS=1`` lets a developer off.

Each case runs pytest in a subprocess on a small test file using the suite's conftest as a
plugin, so the exit status checked is the one ``make test`` would get.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1

SKIPPING = """
import pytest

def test_runs():
    assert True

def test_skips():
    pytest.skip("no reason good enough")
"""

NEEDS_POSTGRES = """
def test_needs_postgres(postgres_url):
    assert postgres_url
"""


def run_pytest(
    tmp_path: Path, tests: str, *, allow_skips: bool
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    (tmp_path / "test_case.py").write_text(tests)
    env = {**os.environ, "CHARGELEDGER_TEST_POSTGRES": UNREACHABLE}
    env.pop("CHARGELEDGER_TEST_ALLOW_SKIPS", None)
    if allow_skips:
        env["CHARGELEDGER_TEST_ALLOW_SKIPS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=REPOSITORY,  # where `tests.conftest` imports from
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_the_run_and_is_listed(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, SKIPPING, allow_skips=False)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert "SKIPPED [1] " in run.stdout and "no reason good enough" in run.stdout
    assert "1 test(s) skipped: a skip fails this run" in run.stdout


def test_unreachable_postgres_fails_its_tests(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, NEEDS_POSTGRES, allow_skips=False)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert f"PostgreSQL at {UNREACHABLE} unreachable" in run.stdout
    assert "1 error" in run.stdout


def test_the_opt_out_allows_skips_and_skips_unreachable_postgres(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, SKIPPING + NEEDS_POSTGRES, allow_skips=True)
    assert run.returncode == pytest.ExitCode.OK, run.stdout
    assert "1 passed, 2 skipped" in run.stdout
    assert f"PostgreSQL at {UNREACHABLE} unreachable" in run.stdout
