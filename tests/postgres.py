"""Test helpers for PostgreSQL stores: dropping the scratch schema a test or benchmark made."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql

__all__ = ["drop_postgres_schema"]


def drop_postgres_schema(url: str) -> None:
    """Drop the schema of the PostgreSQL store URL ``url`` and everything in it.

    ``url`` is a store URL as ``open_store`` takes it, naming its database and user
    (libpq's own URL form plus our ``schema`` parameter). Raises ``ValueError`` for a URL that
    is not PostgreSQL or names the ``public`` schema (refused: it is nobody's scratch space),
    ``psycopg.Error`` when the server cannot be reached.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL store URL: {parts._replace(netloc='...').geturl()!r}")
    schema = (parse_qs(parts.query).get("schema") or ["public"])[-1] or "public"
    if schema == "public":
        raise ValueError("refusing to drop the public schema")
    server = parts._replace(query="").geturl()  # libpq does not know our schema parameter
    user = unquote(parts.username or "postgres")  # open_store's default, not libpq's
    with psycopg.connect(server, user=user, connect_timeout=5, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
