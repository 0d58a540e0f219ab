"""Shared fixtures and the suite's skip policy: store URLs for every backend, each test getting
a fresh, private store, and no test passing by not running.

PostgreSQL comes from ``CHARGELEDGER_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``); every test gets its own schema, dropped
afterwards. When the server cannot be reached, every test that needs it fails (not skips):
``make test`` and CI must not pass by testing less.

No silent skips: a run in which any test is skipped exits with a failure status, after the
skip summary (``-ra``) says which and why. A developer without PostgreSQL, or running a subset
that skips on purpose, sets ``CHARGELEDGER_TEST_ALLOW_SKIPS=1``: then an unreachable PostgreSQL
skips its tests and skips do not fail the run. Selecting tests (``-k``, ``-m "not postgres"``,
a file name) deselects rather than skips, and needs no opt-out.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chargeledger.core.store import Store, open_store
from tests.postgres import drop_postgres_schema

__all__: list[str] = []

POSTGRES_BASE_URL = os.environ.get(
    "CHARGELEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        with psycopg.connect(POSTGRES_BASE_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {POSTGRES_BASE_URL} unreachable: {exc}"


ALLOW_SKIPS = os.environ.get("CHARGELEDGER_TEST_ALLOW_SKIPS", "") not in ("", "0")
"""The developer's opt-out of the skip policy (see the module docstring)."""


def _require_postgres() -> None:
    """The one PostgreSQL rule: fail the test when it is unreachable (skip with the opt-out)."""
    problem = _postgres_unreachable()
    if problem is not None:
        if ALLOW_SKIPS:
            pytest.skip(problem)
        pytest.fail(f"{problem} (CHARGELEDGER_TEST_ALLOW_SKIPS=1 skips instead)")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A store URL on a fresh PostgreSQL schema (created on open, dropped after the test).

    Fails the test when PostgreSQL is unreachable (skips it only with the opt-out)."""
    _require_postgres()
    url = f"{POSTGRES_BASE_URL}?schema=test_{uuid.uuid4().hex[:16]}"
    yield url
    drop_postgres_schema(url)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store, once per backend: ``memory://``, an SQLite file, PostgreSQL."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store at ``store_url``, opened for the test and closed after it."""
    opened = open_store(store_url)
    yield opened
    opened.close()


SERVER_STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""The durable backends a server runs on, as fixture parameters: ``server_store`` takes them
indirectly (``@on_sqlite_and_postgres``), ``module_server_store`` always."""

on_sqlite_and_postgres = pytest.mark.parametrize("server_store", SERVER_STORES, indirect=True)
"""Run the test once on SQLite and once on PostgreSQL (a fresh schema), through ``server_store``."""


@pytest.fixture
def server_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store for a server: an SQLite file, unless the test is parametrized
    with ``@on_sqlite_and_postgres``, which adds a run on a fresh PostgreSQL schema."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="module", params=SERVER_STORES)
def module_server_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``server_store`` for a module's shared server: an SQLite file, then a fresh PostgreSQL
    schema (dropped after the module); each test of the module runs on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'events.db'}"
        return
    _require_postgres()
    url = f"{POSTGRES_BASE_URL}?schema=test_{uuid.uuid4().hex[:16]}"
    yield url
    drop_postgres_schema(url)


# -- the skip policy -----------------------------------------------------------------------

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember every skipped test (an expected failure, ``xfail``, ran and is not one)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Remember every module skipped whole (``pytest.importorskip`` and the like)."""
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Turn a run that passed but skipped tests into a failed one, unless skips are allowed."""
    if _skipped and not ALLOW_SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say why the run failed when skips were its only fault."""
    if _skipped and not ALLOW_SKIPS:
        terminalreporter.section("skip policy", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"{len(_skipped)} test(s) skipped: a skip fails this run (see the skip summary "
            "above; CHARGELEDGER_TEST_ALLOW_SKIPS=1 allows skips)",
            red=True,
        )
