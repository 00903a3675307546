"""Orders loaded into a PostgreSQL table: the hour's rows, read in batches, checked against the load marker.

The loader writes an hour's rows into ``<table>`` (the order columns plus ``delivered_hour timestamptz``),
then one marker row into ``<table>_ready`` (``delivered_hour timestamptz primary key, row_count bigint,
ready_at timestamptz default now()``). Reading an hour happens in one read-only, repeatable-read
transaction: the marker, the row count (an incomplete load fails before anything is read), then the rows
through a server-side cursor, ``batch_rows`` at a time, in physical (load) order. Values are always query
parameters; table names are checked identifiers quoted by ``psycopg2.sql.Identifier``. The URL is never
logged or put in an error: an unreachable server is a ``SourceUnavailableError`` (an outage) naming only
the server's own first line of error.
"""

import re
from collections.abc import Iterator
from datetime import datetime

import pandas as pd
import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from scalable_pipeline.core.constants import ORDER_COLUMNS
from scalable_pipeline.sources.errors import SourceUnavailableError
from scalable_pipeline.sources.landing_files import order_records, whole_int64
from scalable_pipeline.sources.postgres_tables import BATCH_ROWS, READY_SUFFIX, Marker, check_table_name

CONNECT_TIMEOUT_SECONDS = 10


class IncompleteLoadError(ValueError):
    """The hour's rows do not match its marker (or it has none): bad data, not an outage."""


def table_sql(name: str, suffix: str = "") -> sql.Composable:
    """The quoted (schema.)table, with ``suffix`` on the table's own name."""
    *schema, table = check_table_name(name).split(".")
    return sql.Identifier(*schema, table + suffix)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg2://``) as libpq reads it."""
    return re.sub(r"^postgresql\+[a-z0-9_]+://", "postgresql://", url)


def connect(url: str) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(libpq_url(url), connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg2.OperationalError as error:
        first = next(iter(str(error).strip().splitlines()), "")
        raise SourceUnavailableError(f"PostgreSQL source unreachable: {first}") from None


LOST = (psycopg2.OperationalError, psycopg2.InterfaceError)  # the server went away mid-read


def _outage(error: psycopg2.Error) -> SourceUnavailableError:
    first = next(iter(str(error).strip().splitlines()), "")
    return SourceUnavailableError(f"PostgreSQL source lost: {type(error).__name__}: {first}")


def hour_rows(url: str, table: str, hour_start: pd.Timestamp, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The hour's orders in blocks of at most ``batch_rows`` (at least one block), after checking that the
    table holds exactly the marker's ``row_count`` rows for it."""
    rows_sql, ready_sql = table_sql(table), table_sql(table, READY_SUFFIX)
    hour = hour_start.to_pydatetime()
    connection = connect(url)
    try:
        connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT row_count FROM {} WHERE delivered_hour = %s").format(ready_sql), (hour,))
            marker = cursor.fetchone()
            if marker is None:
                raise IncompleteLoadError(
                    f"{table}: no marker in {table}{READY_SUFFIX} for hour {hour_start}: the load has not finished"
                )
            cursor.execute(sql.SQL("SELECT count(*) FROM {} WHERE delivered_hour = %s").format(rows_sql), (hour,))
            (found,) = cursor.fetchone() or (0,)
        if found != marker[0]:
            raise IncompleteLoadError(
                f"{table}: incomplete load of hour {hour_start}: {found} rows, but {table}{READY_SUFFIX} says {marker[0]}"
            )
        columns = sql.SQL(", ").join(sql.Identifier(column) for column in ORDER_COLUMNS)
        with connection.cursor(name="scalable_pipeline_hour") as cursor:
            cursor.itersize = batch_rows
            cursor.execute(
                sql.SQL("SELECT {} FROM {} WHERE delivered_hour = %s ORDER BY ctid").format(columns, rows_sql), (hour,)
            )
            empty = True
            while batch := cursor.fetchmany(batch_rows):
                empty = False
                yield order_block(batch)
            if empty:
                yield order_block([])
        connection.rollback()
    except LOST as error:
        raise _outage(error) from None
    finally:
        connection.close()


def order_block(rows: list[tuple]) -> pd.DataFrame:
    """Rows of the order columns as an order record block (the landing files' types and coercions)."""
    raw = pd.DataFrame.from_records(rows, columns=ORDER_COLUMNS)
    order_ids = whole_int64(raw["order_id"])
    if order_ids.isna().any():
        raise ValueError(f"{int(order_ids.isna().sum())} row(s) whose order_id is null or not an int64")
    return order_records(raw, order_ids)


def markers_after(url: str, table: str, after: datetime | None) -> list[Marker]:
    """Markers with ``ready_at`` after ``after`` (every marker when None), oldest first."""
    query = sql.SQL(
        "SELECT delivered_hour, row_count, ready_at FROM {} WHERE %s IS NULL OR ready_at > %s ORDER BY ready_at, delivered_hour"
    )
    connection = connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(query.format(table_sql(table, READY_SUFFIX)), (after, after))
            return [Marker(*row) for row in cursor.fetchall()]
    except LOST as error:
        raise _outage(error) from None
    finally:
        connection.close()
