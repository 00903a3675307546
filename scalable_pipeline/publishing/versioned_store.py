"""Versioned, published tables and documents on the local filesystem.

Layout under the data root::

    tables/<asset>/<partition>/versions/<version>.parquet|.json   every written version
    tables/<asset>/<partition>/published.json                       pointer to the published version
    tables/<asset>/<partition>/history.jsonl                        append-only log of pointer changes

The table assets (``processed_chunks``, ``consolidated_output``) are Delta tables instead (see
``delta_table``): their hour folder is ``tables/<asset>/partition=<hour>/`` and the table's log, not a
pointer file, says which version each hour publishes.

Writers add a version (staging) and publish it (the pointer replaced atomically, or one Delta transaction);
readers only ever follow the pointer or the log, so they see the last published version whole, never a
half-written one. A version that was ever published (in the history, or published now) is "good". Each
publish applies retention to its partition: for documents and raw tables it keeps the published version and
the newest good ones (``keep_versions`` in all); stale never-published (staged) versions go in both. A Delta
table is vacuumed on its own (``vacuum_table``, the ``vacuum_tables`` job), never on the publish path: vacuum
deletes the files the table stopped using more than ``retention_hours`` ago, and the versions left without data.
"""

import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scalable_pipeline.core.atomic import atomic_write_json, read_json
from scalable_pipeline.core.jsonl import append_record, read_records
from scalable_pipeline.core.paths import partition_dirname, safe_name, under_root
from scalable_pipeline.publishing.delta_table import RETENTION_HOURS, TABLE_ASSETS, HourTable, hive_dirname
from scalable_pipeline.publishing.retention import abandoned_versions, versions_to_delete

# Tables are written in row groups of this size unless the writer names another (raw_volume does), so a
# step reads a row range without reading the whole table (see read_row_range).
ROW_GROUP_SIZE = 10_000


# How every table is written: dictionary encoding only for the few-valued text columns (on ids it costs
# time and falls back anyway): about half the write time of pyarrow's defaults and smaller files.
# Row-group statistics only where they prune: order_id (the plan's range sources, readers' lookups) and
# event_time (rises with it); every row group holds every region, status and kind of amount or customer,
# so their min/max skip nothing and cost 15% of the write time. The ids are stored as deltas (they ascend,
# or nearly do in raw order): a tenth of the time and a fiftieth of the bytes of snappy-compressed plain ids.
TEXT_COLUMNS = ["region", "status", "rejection_reason"]
PARQUET_OPTIONS = {
    "use_dictionary": TEXT_COLUMNS,
    "write_statistics": ["order_id", "event_time"],
    "column_encoding": {"order_id": "DELTA_BINARY_PACKED", "raw_row": "DELTA_BINARY_PACKED"},
}

# Retention defaults (the data_store resource's fields refer to these).
KEEP_VERSIONS = 5
STAGING_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class StoredVersion:
    """A version of one asset partition, by reference (what steps pass around instead of data)."""

    asset: str
    partition: str
    version: str
    path: str
    raw_digest: str = ""  # content lineage: digest of the raw version this data derives from (raw: its own)
    table_version: int | None = None  # the Delta table version whose commit published it (set by ``publish``)


class VersionNotFound(LookupError):
    """A version that does not exist, or was never published (so never passed its gates)."""


class VersionedStore:
    def __init__(
        self,
        root: Path | str,
        keep_versions: int = KEEP_VERSIONS,
        staging_grace_seconds: float = STAGING_GRACE_SECONDS,
        retention_hours: float = RETENTION_HOURS,
    ):
        self.root = Path(root)
        self.keep_versions = keep_versions
        self.staging_grace_seconds = staging_grace_seconds
        self.retention_hours = retention_hours

    def partition_dir(self, asset: str, partition: str) -> Path:
        if asset in TABLE_ASSETS:
            return under_root(self.root, "tables", asset) / hive_dirname(partition)
        return under_root(self.root, "tables", asset, partition_dirname(partition))

    def hour_table(self, asset: str) -> HourTable:
        """The Delta table of a table asset (``TABLE_ASSETS``)."""
        return HourTable(under_root(self.root, "tables", asset))

    def write_table(
        self, asset: str, partition: str, frame: pd.DataFrame, run_id: str = "", raw_digest: str = ""
    ) -> StoredVersion:
        """Stage ``frame`` as a new version; ``raw_digest`` names the raw content it derives from (empty for raw
        itself: its digest is computed from the written file)."""
        with self.stage_table(asset, partition, run_id, raw_digest) as stage:
            stage.write(frame)
            return stage.commit()

    def stage_table(
        self, asset: str, partition: str, run_id: str = "", raw_digest: str = "", row_group_size: int = ROW_GROUP_SIZE
    ) -> "TableStage":
        """A new table version written block by block (use it in ``with``: removed unless committed)."""
        version = new_version_id(run_id)
        path = self.partition_dir(asset, partition) / "versions" / f"{version}.parquet"
        return TableStage(StoredVersion(asset, partition, version, str(path), raw_digest), row_group_size)

    def stage_dataset(self, asset: str, partition: str, run_id: str, raw_digest: str) -> "DatasetStage":
        """A new version written part by part (a folder of Parquet files, read in name order)."""
        version = new_version_id(run_id)
        target = self.partition_dir(asset, partition) / "versions" / f"{version}.parquet"
        return DatasetStage(StoredVersion(asset, partition, version, str(target), raw_digest))

    def write_document(self, asset: str, partition: str, document: dict, run_id: str, raw_digest: str) -> StoredVersion:
        version = new_version_id(run_id)
        path = self.partition_dir(asset, partition) / "versions" / f"{version}.json"
        atomic_write_json(path, document)
        return StoredVersion(asset, partition, version, str(path), raw_digest)

    def publish(self, stored: StoredVersion, run_id: str = "", action: str = "publish") -> StoredVersion:
        """Log the change, point readers at ``stored``, delete the hour's abandoned staged versions; returns ``stored``
        as published (for a table asset with the table version of its commit).

        The history line goes first: a crash before the pointer swap leaves a good version that is not
        published, never a published one that is not recorded as good.
        """
        previous = self.published(stored.asset, stored.partition)
        folder = self.partition_dir(stored.asset, stored.partition)
        change = {
            "version": stored.version,
            "raw_digest": stored.raw_digest,
            "previous": previous.version if previous else None,
            "run_id": run_id,
            "at": time.time(),
        }
        append_record(folder / "history.jsonl", {"action": action, **change})
        if stored.asset in TABLE_ASSETS:
            commit = {"published_version": stored.version, "action": action, "run_id": run_id, "raw_digest": stored.raw_digest}
            table_version = self.hour_table(stored.asset).replace_hour(stored.partition, dataset_parts(stored.path), commit)
            stored = replace(stored, table_version=table_version)
        else:
            reference = {"asset": stored.asset, "partition": stored.partition, "version": stored.version, "path": stored.path}
            atomic_write_json(folder / "published.json", {**reference, **change})
        self.clean_around(stored.asset, stored.partition, stored.version)
        return stored

    def history(self, asset: str, partition: str) -> list[dict]:
        """Every pointer change of the partition, oldest first."""
        return read_records(self.partition_dir(asset, partition) / "history.jsonl")

    def good_versions(self, asset: str, partition: str) -> list[str]:
        """Versions that were published once (in the history, or the pointer's) and are still stored, oldest first."""
        published = self.published(asset, partition)
        return sorted(
            self.ever_published(asset, partition, published.version if published else None) & set(self.versions(asset, partition))
        )

    def ever_published(self, asset: str, partition: str, published: str | None) -> set[str]:
        """The versions the partition's history names, and ``published`` (the published one, when known)."""
        return {change["version"] for change in self.history(asset, partition)} | ({published} if published else set())

    def version(self, asset: str, partition: str, version: str) -> StoredVersion:
        """A good version by id; ``VersionNotFound`` if it is not stored or never passed its gates."""
        if version not in self.good_versions(asset, partition):
            known = ", ".join(self.good_versions(asset, partition)) or "none"
            raise VersionNotFound(f"{asset} partition {partition} has no published-good version {version!r} (known: {known})")
        return self.stored(asset, partition, version)

    def stored(self, asset: str, partition: str, version: str) -> StoredVersion:
        """A stored version by id, published or staged, with its lineage (from the pointer or the history)."""
        path = next((self.partition_dir(asset, partition) / "versions").glob(f"{safe_name(version, 'version')}.*"), None)
        if path is None:
            raise VersionNotFound(f"{asset} partition {partition} has no stored version {version!r} (deleted by retention?)")
        pointer = None if asset in TABLE_ASSETS else self.published(asset, partition)
        known = [pointer] if pointer and pointer.version == version else []
        digests = [change.get("raw_digest", "") for change in self.history(asset, partition) if change["version"] == version]
        raw_digest = known[0].raw_digest if known else (digests[-1] if digests else "")
        return StoredVersion(asset, partition, version, str(path), raw_digest)

    def discard(self, stored: StoredVersion) -> bool:
        """Delete a staged version that is not published; True if a file was deleted."""
        published = self.published(stored.asset, stored.partition)
        if published and published.version == stored.version:
            return False
        path = Path(stored.path)
        existed = path.exists()
        remove(path)
        return existed

    def clean(self, asset: str, partition: str) -> list[str]:
        """Apply retention to one asset partition; returns the deleted versions."""
        published = self.published(asset, partition)
        return self.clean_around(asset, partition, published.version if published else None)

    def clean_around(self, asset: str, partition: str, published: str | None) -> list[str]:
        """``clean`` with the published version known (``publish`` knows it: no pointer or table log read again).

        Documents and raw tables: ``versions_to_delete``. Delta tables: the good versions left without data (their
        files vacuumed) and the abandoned staged ones; the table's own files are vacuum's (``vacuum_table``)."""
        stored, folder = self.versions(asset, partition), self.partition_dir(asset, partition) / "versions"
        good = self.ever_published(asset, partition, published) & set(stored)
        now_ns, grace_ns = time.time_ns(), int(self.staging_grace_seconds * 1e9)
        if asset in TABLE_ASSETS:
            without_data = [v for v in stored if v in good and v != published and not has_data(folder / f"{v}.parquet")]
            doomed = without_data + abandoned_versions(stored, good, published, now_ns, grace_ns)
        else:
            doomed = versions_to_delete(stored, good, published, self.keep_versions, now_ns, grace_ns)
        for version in doomed:
            for path in folder.glob(f"{version}.*"):
                remove(path)
        return doomed

    def vacuum_table(self, asset: str) -> list[str]:
        """Vacuum the asset's Delta table: delete the files it stopped using more than ``retention_hours`` ago (never
        a staged version's: not in the log), then the versions those files leave without data; returns the files."""
        table = self.hour_table(asset)
        files = table.vacuum(self.retention_hours)
        for version in {table.path / version_path(file) for file in files}:
            if not has_data(version):
                remove(version)
        return files

    def published(self, asset: str, partition: str) -> StoredVersion | None:
        if asset in TABLE_ASSETS:
            files = self.hour_table(asset).hour_files(partition)
            return self.stored(asset, partition, version_of_file(files[0])) if files else None
        pointer_path = self.partition_dir(asset, partition) / "published.json"
        if not pointer_path.exists():
            return None
        pointer = read_json(pointer_path)
        return StoredVersion(
            pointer["asset"], pointer["partition"], pointer["version"], pointer["path"], pointer.get("raw_digest", "")
        )

    def require_published(self, asset: str, partition: str) -> StoredVersion:
        stored = self.published(asset, partition)
        if stored is None:
            raise FileNotFoundError(f"{asset} has no published version for partition {partition} under {self.root}")
        return stored

    def read_published_table(self, asset: str, partition: str) -> pd.DataFrame:
        return read_table(self.require_published(asset, partition).path).to_pandas()

    def read_published_document(self, asset: str, partition: str) -> dict:
        return read_json(Path(self.require_published(asset, partition).path))

    def versions(self, asset: str, partition: str) -> list[str]:
        """All stored versions, oldest first."""
        folder = self.partition_dir(asset, partition) / "versions"
        if not folder.exists():
            return []
        return sorted(p.stem for p in folder.iterdir() if not p.name.startswith("."))


class TableStage:
    """One Parquet file written block by block beside its version path, in row groups of at most
    ``row_group_size`` rows (a block's tail makes a shorter one); every block is cast to the first block's
    schema. ``commit`` moves it into place (readers never see half a file); leaving the ``with`` block
    without a commit removes it."""

    def __init__(self, stored: StoredVersion, row_group_size: int):
        self.stored, self.row_group_size, self.committed = stored, row_group_size, False
        target = Path(stored.path)
        self.tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        self.writer: pq.ParquetWriter | None = None

    def __enter__(self) -> "TableStage":
        return self

    def __exit__(self, *_exc) -> None:
        if not self.committed:
            if self.writer is not None:
                self.writer.close()
            self.tmp.unlink(missing_ok=True)

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, table.schema, **PARQUET_OPTIONS)
        self.writer.write_table(table.cast(self.writer.schema), row_group_size=self.row_group_size)

    def commit(self) -> StoredVersion:
        """Close the file and move it into place; a raw table's ``raw_digest`` is its file's digest."""
        if self.writer is None:
            raise ValueError(f"{self.stored.asset} partition {self.stored.partition}: no block was written")
        self.writer.close()
        with open(self.tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.stored.path)
        self.committed = True
        return replace(self.stored, raw_digest=self.stored.raw_digest or file_digest(self.stored.path))


class DatasetStage:
    """Parts of a dataset version in a hidden folder; ``commit`` renames it into place in one step.

    A version may carry a view of its data in a subfolder (``view``), with parts of its own.
    """

    def __init__(self, stored: StoredVersion):
        self.stored = stored
        target = Path(stored.path)
        self.folder = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        self.folder.mkdir(parents=True)
        self.parts: dict[str, int] = {}

    def add_file(self, path: Path | str, view: str = "") -> None:
        """Add a finished Parquet file as the next part (of ``view``): a hard link (no copy) where the file system allows."""
        index = self.parts[view] = self.parts.get(view, -1) + 1
        folder = self.folder / safe_name(view, "view") if view else self.folder
        folder.mkdir(exist_ok=True)
        target = folder / f"part-{index:05d}.parquet"
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)

    def commit(self) -> StoredVersion:
        os.rename(self.folder, self.stored.path)
        return self.stored


def remove(path: Path) -> None:
    """Delete a version: a file, or a dataset folder."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def dataset_parts(path: Path | str, view: str = "") -> list[Path]:
    """The Parquet files of a version (or of its ``view``) in read order: the file itself, or the parts by name."""
    path = Path(path) / view if view else Path(path)
    return sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]


def version_path(path: str) -> Path:
    """The version a table file belongs to, relative to the table (``partition=<hour>/versions/<version>.parquet``
    of ``partition=<hour>/versions/<version>.parquet[/part-*.parquet]``)."""
    return Path(*Path(path).parts[:3])


def version_of_file(path: str) -> str:
    """The version id a table file belongs to."""
    return version_path(path).name.removesuffix(".parquet")


def has_data(path: Path) -> bool:
    """Whether any Parquet file of a version (file or dataset folder) is still there."""
    return any(part.exists() for part in dataset_parts(path))


def read_table(path: Path | str, columns: list[str] | None = None) -> pa.Table:
    """A whole version (file or dataset folder) as one Arrow table."""
    return pa.concat_tables([pq.read_table(part, columns=columns) for part in dataset_parts(path)])


def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's bytes: the same records written the same way give the same digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version_id(run_id: str = "") -> str:
    """Sortable by write time; names the run that wrote it."""
    return f"v{time.time_ns()}-{(run_id or uuid.uuid4().hex)[:8]}"


LOCAL_FILES = pafs.LocalFileSystem()


def row_groups_holding(group_rows: list[int], start_row: int, stop_row: int) -> tuple[list[int], int]:
    """The row groups (by their row counts) that hold rows ``[start_row, stop_row)``, and the first one's first row."""
    wanted: list[int] = []
    first_row = group_start = 0
    for group, rows in enumerate(group_rows):
        if group_start + rows > start_row and group_start < stop_row:
            first_row = group_start if not wanted else first_row
            wanted.append(group)
        group_start += rows
    return wanted, first_row


def read_row_range(path: str, start_row: int, stop_row: int) -> pa.Table:
    """Rows ``[start_row, stop_row)`` of a Parquet file, reading only the row groups that hold them, several at once
    (Arrow's dataset reader: a third faster than ``ParquetFile.read_row_groups`` on a 10M-record hour); its text
    columns as dictionaries (moving rows around moves small integers instead of strings)."""
    metadata = pq.read_metadata(path)
    dictionaries = [c for c in TEXT_COLUMNS if c in metadata.schema.names]
    parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=dictionaries))
    group_rows = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
    wanted, first_row = row_groups_holding(group_rows, start_row, stop_row)
    file = parquet.make_fragment(path, filesystem=LOCAL_FILES)
    table = file.subset(row_group_ids=wanted).to_table(use_threads=True)  # no group: the empty table, same types
    return table.slice(start_row - first_row, stop_row - start_row) if wanted else table
