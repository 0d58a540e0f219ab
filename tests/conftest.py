"""Shared fixtures: store URLs for every backend, each test getting a fresh, private store.

PostgreSQL comes from ``CHARGELEDGER_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``); every test gets its own schema, dropped
afterwards. When the server cannot be reached the PostgreSQL tests are skipped, except under
CI (``CI`` set), where they fail: CI must not pass by testing less.
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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A store URL on a fresh PostgreSQL schema (created on open, dropped after the test)."""
    problem = _postgres_unreachable()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
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


def _require_postgres() -> None:
    """Skip the test (fail it under ``CI``) when PostgreSQL cannot be reached, as
    ``postgres_url`` does."""
    problem = _postgres_unreachable()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


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
