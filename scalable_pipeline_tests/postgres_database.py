"""A database of one's own on a PostgreSQL server, for the tests and benchmarks that store Dagster's instance there.

``scratch_database`` creates a database under a new unique name and drops that database, and only that one,
when it ends (``WITH (FORCE)``: connections a run or daemon left open do not keep it).
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from sqlalchemy.engine import make_url


def connect(url: str, database: str | None = None):
    """A psycopg2 connection to the server of the SQLAlchemy or libpq ``url``, to ``database`` (default: the URL's)."""
    parts = make_url(url)
    return psycopg2.connect(
        host=parts.host,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname=database or parts.database or "postgres",
    )


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database ``<prefix>_<12 hex digits>`` on the server of ``server_url``; yields its SQLAlchemy URL
    (``postgresql+psycopg2://…``, as Dagster's ``postgres_url`` takes it) and drops it on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = connect(server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(server_url).set(drivername="postgresql+psycopg2", database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
