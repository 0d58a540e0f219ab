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
