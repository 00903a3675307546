"""The published hours of a table asset as one Delta Lake table, read by any engine from its path alone.

Layout (``tables/<asset>/``, a Delta table partitioned by the string column ``partition``)::

    _delta_log/                                             the table's log: which files make each hour
    partition=<hour, %-encoded>/versions/<version>.parquet  the versioned store's versions of the hour
                                                            (staged ones too: no reader sees a file the log
                                                            does not list)

The data files carry no ``partition`` column: readers take it from the log (Delta's partition values).
Publishing an hour is one transaction that removes the hour's files and adds the new version's, so a
reader sees the old hour or the new one, and its table version is the one after the version it read: a
transaction that lost a race with another hour's commit commits nothing and is retried on the new table
version (the same hour is never written by two runs: see ``partition_lease``).
"""

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from scalable_pipeline.core.paths import require_partition_key

PARTITION_COLUMN = "partition"
# The assets published as Delta tables (raw_volume stays the versioned store's single file per version: the
# source's records, read only by this pipeline's own steps).
TABLE_ASSETS = ("processed_chunks", "consolidated_output")
# Files an hour no longer uses stay this long (time travel and rollback within it), then vacuum deletes them.
RETENTION_HOURS = 168.0
COMMIT_ATTEMPTS = 30


def hive_dirname(partition: str) -> str:
    """The hour's folder in the table, ``partition=<key>`` %-encoded as Delta writers name it (readers such as
    Polars take the partition value from it)."""
    return f"{PARTITION_COLUMN}={quote(require_partition_key(partition), safe='')}"


class HourTable:
    """One asset's Delta table at ``path``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / "_delta_log").is_dir()

    def table(self, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.path, version=version)

    def hour_files(self, partition: str, version: int | None = None) -> list[str]:
        """The files (paths relative to the table, as on disk) that make the hour at ``version`` (default: now)."""
        if not self.exists():
            return []
        actions = pa.table(self.table(version).get_add_actions(flatten=True))
        column = f"{PARTITION_COLUMN}.{PARTITION_COLUMN}"
        if actions.num_rows == 0 or column not in actions.column_names:
            return []
        paths = actions["path"].to_pylist()
        hours = actions[column].to_pylist()
        return sorted(log_path_to_file(path) for path, hour in zip(paths, hours, strict=True) if hour == partition)

    def replace_hour(self, partition: str, files: Sequence[Path], metadata: dict[str, str]) -> int | None:
        """One transaction: the hour is ``files`` (inside the table folder) and nothing else; returns the table version
        it committed (None when there is nothing to commit: no file and no table yet). ``metadata`` goes into the commit."""
        if not files and not self.exists():
            return None
        adds: list[AddAction | RemoveAction] = [add_action(self.path, Path(file), partition) for file in files]
        schema = table_schema(files[0]) if files else None
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                table = self.open_or_create(schema)
                table.create_write_transaction(
                    adds,
                    mode="overwrite",
                    schema=schema or table.schema(),
                    partition_by=[PARTITION_COLUMN],
                    partition_filters=[(PARTITION_COLUMN, "=", partition)],
                    commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=0),
                )
                return table.version() + 1  # no retry inside delta-rs: the commit is the version after the one read
            except CommitFailedError:  # another commit landed after the version read: nothing committed, try again
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def open_or_create(self, schema: pa.Schema | None) -> DeltaTable:
        try:
            return self.table()
        except TableNotFoundError:
            if schema is None:
                raise
        try:
            return DeltaTable.create(self.path, schema, mode="ignore", partition_by=[PARTITION_COLUMN])
        except DeltaError:  # another writer created it at the same moment
            return self.table()

    def vacuum(self, retention_hours: float) -> list[str]:
        """Delete files the table stopped using more than ``retention_hours`` ago (only those: staged versions and
        everything else not in the log stay); returns them (paths relative to the table, as on disk)."""
        if not self.exists():
            return []
        table = self.table()
        hours = int(retention_hours)
        # Vacuum lists every expired file the log still names, deleted already or not, and commits twice each time.
        expired = table.vacuum(hours, dry_run=True, enforce_retention_duration=False)
        present = [file for file in expired if (self.path / file).exists()]
        if present:
            table.vacuum(hours, dry_run=False, enforce_retention_duration=False)
        return present


def log_path_to_file(path: str) -> str:
    """A log path (``get_add_actions`` gives it %-encoded) as the file's path relative to the table."""
    return unquote(path)


def table_schema(file: Path) -> pa.Schema:
    """The table's schema: a data file's columns (text as ``string``) and the partition column."""
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f.remove_metadata()
        for f in pq.read_schema(file).remove_metadata()
    ]
    return pa.schema([*fields, pa.field(PARTITION_COLUMN, pa.string())])


def add_action(root: Path, file: Path, partition: str) -> AddAction:
    metadata = pq.read_metadata(file)
    stat = file.stat()
    return AddAction(
        str(file.relative_to(root)),
        stat.st_size,
        {PARTITION_COLUMN: partition},
        int(stat.st_mtime * 1000),
        True,
        json.dumps({"numRecords": metadata.num_rows}),
    )
