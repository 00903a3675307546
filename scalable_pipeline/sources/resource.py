"""The order source (resource key ``source``): synthetic by default, files in a landing folder, or a
PostgreSQL table."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field, field_validator

from scalable_pipeline.core.settings import from_fields
from scalable_pipeline.sources.errors import SourceUnavailableError
from scalable_pipeline.sources.landing_files import DEFAULT_PATTERN, FILE_TYPES, check_pattern, landing_blocks, landing_path
from scalable_pipeline.sources.postgres_tables import BATCH_ROWS, check_table_name
from scalable_pipeline.sources.synthetic_orders import SyntheticOrdersSpec, hour_volume, order_blocks


class OrderSource(dg.ConfigurableResource):
    """What ``raw_volume`` needs of a source: the records of one hour, block by block, and a line saying
    where from.

    ``iter_hour`` raises an ``OSError`` (e.g. ``SourceUnavailableError``) when the source cannot be
    reached, before the first block or in the middle: only those count towards the source's circuit
    breaker. Any other error is not an outage.
    """

    def iter_hour(self, hour_start: pd.Timestamp) -> Iterator[pd.DataFrame]:
        """The hour's records in raw order, in blocks of bounded size with the same columns and dtypes;
        at least one block (an empty hour is one empty block)."""
        raise NotImplementedError

    def check_available(self) -> None:
        """Raise ``SourceUnavailableError`` when the source cannot be reached now (a cheap health check, no
        data read): the trial call that closes an open circuit. A generator is always there."""

    def fetch_hour(self, hour_start: pd.Timestamp) -> pd.DataFrame:
        """The whole hour as one frame (the blocks concatenated): for small hours, tests and ``land``."""
        return pd.concat(list(self.iter_hour(hour_start)), ignore_index=True)

    def describe(self) -> str:
        raise NotImplementedError


class SyntheticOrderSource(OrderSource):
    """Simulated orders: volume follows the day profile times ``scale``, with injected defects."""

    scale: float = Field(
        default=SyntheticOrdersSpec.scale, ge=0, description="Volume multiplier (100 gives about a million records at peak)."
    )
    duplicate_rate: float = Field(
        default=SyntheticOrdersSpec.duplicate_rate, ge=0, le=1, description="Share of rows that resend an earlier order."
    )
    invalid_rate: float = Field(
        default=SyntheticOrdersSpec.invalid_rate, ge=0, le=1, description="Share of rows with an injected defect."
    )
    seed: int = Field(default=SyntheticOrdersSpec.seed, description="Same seed, hour and settings give the same records.")

    @property
    def spec(self) -> SyntheticOrdersSpec:
        return from_fields(SyntheticOrdersSpec, self)

    def describe(self) -> str:
        return f"synthetic orders (scale={self.scale}, seed={self.seed})"

    def expected_records(self, hour_start: pd.Timestamp) -> int:
        return hour_volume(hour_start, self.spec)

    def iter_hour(self, hour_start: pd.Timestamp) -> Iterator[pd.DataFrame]:
        return order_blocks(hour_start, self.spec)


class LandingFileSource(OrderSource):
    """Real files: one Parquet or CSV file per hour under ``landing_dir`` (``pattern`` names it)."""

    landing_dir: str = Field(description="Folder where the hourly files land.")
    pattern: str = Field(
        default=DEFAULT_PATTERN,
        description="File of an hour inside landing_dir, with {date} (YYYY-MM-DD) and {hour}; .csv or .parquet.",
    )
    min_bytes: int = Field(default=1, ge=0, description="The landing sensor rejects a smaller file (rule min_size).")
    max_age_seconds: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="The landing sensor rejects a file modified longer ago (rule max_age)."
    )

    @field_validator("pattern")
    @classmethod
    def _inside_landing_dir(cls, pattern: str) -> str:
        return check_pattern(pattern)

    def path_for(self, hour_start: pd.Timestamp) -> Path:
        """The pattern's file of the hour, or the same name as the other file type when only that one landed."""
        named = landing_path(self.landing_dir, hour_start, self.pattern)
        landed = [path for path in (named, *(named.with_suffix(s) for s in FILE_TYPES)) if path.exists() or path.is_symlink()]
        return landed[0] if landed else named

    def describe(self) -> str:
        return f"landing files {Path(self.landing_dir) / self.pattern}"

    def check_available(self) -> None:
        if not Path(self.landing_dir).is_dir():
            raise SourceUnavailableError(f"landing folder {self.landing_dir} is not there (not mounted?)")

    def iter_hour(self, hour_start: pd.Timestamp) -> Iterator[pd.DataFrame]:
        return landing_blocks(self.landing_dir, self.path_for(hour_start))


class PostgresOrderSource(OrderSource):
    """Rows of ``table`` whose hour has a marker in ``<table>_ready`` (see ``sources/postgres_orders.py``)."""

    url: str = Field(
        description="Server URL, e.g. postgresql://user:password@host:5432/db; give it as an environment variable "
        "(dg.EnvVar), it is never logged."
    )
    table: str = Field(description="Table of the orders (table or schema.table); its markers are in <table>_ready.")
    batch_rows: int = Field(default=BATCH_ROWS, ge=1, description="Rows fetched per batch.")

    @field_validator("table")
    @classmethod
    def _identifier(cls, table: str) -> str:
        return check_table_name(table)

    def describe(self) -> str:
        return f"PostgreSQL table {self.table}"

    def check_available(self) -> None:
        from scalable_pipeline.sources.postgres_orders import connect  # psycopg2 loads only for this source

        connect(self.url).close()

    def iter_hour(self, hour_start: pd.Timestamp) -> Iterator[pd.DataFrame]:
        from scalable_pipeline.sources.postgres_orders import hour_rows

        return hour_rows(self.url, self.table, hour_start, self.batch_rows)
