"""Prototype (not part of the package): the hour's processing out of core with DuckDB under a memory limit.

The same result as ``bench/plain_pandas.py``: de-duplicate on ``order_id`` (first in raw order wins,
raw order = file name, then the row's position in its Parquet file), keep the rows that break no rule,
sort by ``order_id``, write Parquet.

- whole hour: one query, one sorted file;
- ``--ranges K``: K queries, each over one ``order_id`` range (near-equal row counts, from approximate
  quantiles of the raw order_id column), writing ``OUT/part-00000.parquet`` ...: a sorted Parquet dataset
  whose files in name order are the whole sorted output. Every copy of an ``order_id`` falls in the same
  range, so each range de-duplicates on its own; the range filter reaches the Parquet reader, which
  skips row groups whose statistics lie outside it (effective when raw order follows ``order_id``,
  as the synthetic source's does; otherwise each range scans the whole hour).

    python bench/prototype_duckdb.py RAW OUT --partition 2026-01-05-10:00 [--ranges 8] [--memory-limit 1GB] [--threads 2]
"""

import argparse
import itertools
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

VALID_STATUSES = ("placed", "paid", "shipped", "cancelled")


def raw_files(raw: Path) -> list[str]:
    return sorted(str(path) for path in raw.glob("*.parquet")) if raw.is_dir() else [str(raw)]


def range_bounds(connection: duckdb.DuckDBPyConnection, files: list[str], ranges: int) -> list[int]:
    """Inner boundaries of ``ranges`` order_id ranges with near-equal rows: approximate quantiles, one pass over
    the order_id column. (Row-group min/max statistics are no good here: a resent row carries an old, small
    order_id into a later row group, so minimums say little about where a group's rows lie.)"""
    fractions = [index / ranges for index in range(1, ranges)]
    row = connection.execute(f"SELECT approx_quantile(order_id, {fractions}) FROM read_parquet({files!r})").fetchone()
    return sorted(set(row[0] or [])) if row else []


def range_filters(bounds: list[int]) -> list[str]:
    """SQL conditions of the ranges [-inf, b0), [b0, b1), ..., [bn, +inf)."""
    edges = [None, *bounds, None]
    return [
        " AND ".join([f"order_id >= {low}" if low is not None else "TRUE", f"order_id < {high}" if high is not None else "TRUE"])
        for low, high in itertools.pairwise(edges)
    ]


def query(files: list[str], hour_start: datetime, where: str = "TRUE") -> str:
    start, end = hour_start.isoformat(), (hour_start + timedelta(hours=1)).isoformat()
    statuses = ", ".join(f"'{status}'" for status in VALID_STATUSES)
    several = len(files) > 1  # then raw order is the file's name first
    return f"""
        SELECT order_id, event_time, customer_id, region, amount, status FROM (
            SELECT * FROM read_parquet({files!r}, file_row_number = true, filename = {several})
            WHERE {where}
            QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY {"filename, " if several else ""}file_row_number) = 1
        )
        WHERE customer_id IS NOT NULL AND isfinite(amount) AND amount > 0 AND status IN ({statuses})
          AND event_time >= TIMESTAMPTZ '{start}' AND event_time < TIMESTAMPTZ '{end}'
        ORDER BY order_id"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="the raw hour: a Parquet file or a directory of them")
    parser.add_argument("out", type=Path, help="output file, or directory with --ranges")
    parser.add_argument("--partition", required=True, help="hourly partition key, e.g. 2026-01-05-10:00")
    parser.add_argument("--ranges", type=int, help="write one sorted file per order_id range")
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    hour_start = datetime.strptime(args.partition, "%Y-%m-%d-%H:%M").replace(tzinfo=timezone.utc)
    files = raw_files(args.raw)
    with tempfile.TemporaryDirectory(prefix="duckdb-spill-") as spill, duckdb.connect() as connection:
        connection.execute(f"SET memory_limit = '{args.memory_limit}'; SET threads = {args.threads}; SET TimeZone = 'UTC'")
        connection.execute(f"SET temp_directory = '{spill}'")
        if args.ranges:
            args.out.mkdir(parents=True, exist_ok=True)
            filters = range_filters(range_bounds(connection, files, args.ranges))
            for index, where in enumerate(filters):
                target = args.out / f"part-{index:05d}.parquet"
                connection.execute(f"COPY ({query(files, hour_start, where)}) TO '{target}' (FORMAT parquet)")
            chunks = len(filters)
        else:
            connection.execute(f"COPY ({query(files, hour_start)}) TO '{args.out}' (FORMAT parquet)")
            chunks = 1
        rows = connection.execute(
            f"SELECT count(*) FROM read_parquet('{args.out / '*.parquet' if args.ranges else args.out}')"
        ).fetchone()
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows[0] if rows else 0, "chunks": chunks}))


if __name__ == "__main__":
    main()
