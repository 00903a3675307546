"""Checkpoints of the two fan-outs, keyed by partition and plan fingerprint.

Layout under ``checkpoints/<partition>/<plan fingerprint>/``::

    chunk-<k>/range-<r>.arrow   the chunk's rows that fall in order_id range r (Arrow IPC, the shuffle); not
                                written for a range the chunk alone feeds when its step processes it (the
                                range's checkpoint is then saved before the chunk's summary)
    chunk-<k>.json              the chunk's summary: written last, the commit marker of the chunk
    range-<r>.parquet           range r processed: its rows de-duplicated and judged, sorted by order_id
    range-<r>.valid.parquet     its valid rows, in the raw record's columns and types
    range-<r>.json              the range's summary: written last, the commit marker of the range
    range-<r>.claim.json        a chunk step that processes range r (fed by several chunks) claims it first

A step counts as done only when its summary exists. The shuffle files are scratch, derived from the raw
version: they are renamed into place without fsync (a process killed at any point leaves whole files) and
their sizes are recorded in the chunk's summary; a chunk whose files are missing or of another size after
a machine crash is computed again. Once ``processed_chunks`` publishes an hour, the
shuffle files of its plan and every checkpoint of the partition's other plans are deleted.
"""

import shutil
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from scalable_pipeline.core.atomic import atomic_write, atomic_write_json, create_json_exclusive, read_json
from scalable_pipeline.core.paths import partition_dirname
from scalable_pipeline.publishing.versioned_store import PARQUET_OPTIONS, ROW_GROUP_SIZE


@dataclass(frozen=True)
class RangeTask:
    """One range step's work: order_id range ``index`` of the plan's chunks that may hold its ids."""

    partition_key: str
    plan_fingerprint: str
    index: int
    sources: tuple[int, ...]  # the chunks whose rows of this range it reads
    raw_path: str  # the raw version: its schema is the valid rows' schema


@dataclass(frozen=True)
class ChunkTask:
    """One chunk step's work: a row range of the pinned raw version, split by the plan's order_id ranges;
    then the ranges in ``inline`` whose source chunks are all done (ranges.ready_ranges)."""

    partition_key: str
    plan_fingerprint: str
    raw_path: str
    index: int
    start_row: int
    stop_row: int
    range_cuts: tuple[int, ...]
    inline: tuple[RangeTask, ...] = ()


@dataclass(frozen=True)
class ChunkResult:
    index: int
    plan_fingerprint: str
    rows_in: int
    invalid: int  # rows breaking a validity rule (duplicates are found later, per range)
    seconds: float
    records_per_second: float
    range_rows: tuple[int, ...] = ()
    reused: bool = False
    ranges_done: tuple[int, ...] = ()  # ranges this step processed after its chunk (none when reused)
    range_seconds: float = 0.0  # their compute seconds

    def as_metadata(self) -> dict:
        """``seconds``: the step's compute, its chunk and the ranges it processed (throughput.step_overheads)."""
        return {
            "rows_in": self.rows_in,
            "invalid": self.invalid,
            "seconds": round(self.seconds + self.range_seconds, 6),
            "records_per_second": self.records_per_second,
            "ranges_processed": len(self.ranges_done),
        }


@dataclass(frozen=True)
class RangeResult:
    index: int
    plan_fingerprint: str
    path: str
    valid_path: str
    rows_in: int
    valid: int
    invalid: int
    duplicates: int
    seconds: float
    min_order_id: int | None = None
    max_order_id: int | None = None
    reused: bool = False

    def as_metadata(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ("rows_in", "valid", "invalid", "duplicates", "seconds")}


def feather_writer(table: pa.Table) -> Callable[[Path], None]:
    """Writes ``table`` as an uncompressed Arrow IPC file (fast to write and to read back)."""
    return lambda path: feather.write_feather(table, path, compression="uncompressed")


def parquet_writer(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, **PARQUET_OPTIONS)


class ChunkCheckpoints:
    def __init__(self, root: Path | str):
        self.root = Path(root) / "checkpoints"

    def plan_dir(self, partition_key: str, plan_fingerprint: str) -> Path:
        return self.root / partition_dirname(partition_key) / plan_fingerprint

    def shuffle_file(self, partition_key: str, plan_fingerprint: str, chunk: int, range_index: int) -> Path:
        return self.plan_dir(partition_key, plan_fingerprint) / f"chunk-{chunk:05d}" / f"range-{range_index:05d}.arrow"

    def _summary(self, partition_key: str, plan_fingerprint: str, kind: str, index: int) -> Path:
        return self.plan_dir(partition_key, plan_fingerprint) / f"{kind}-{index:05d}.json"

    def _chunk_summary(self, partition_key: str, plan_fingerprint: str, index: int) -> dict | None:
        """The chunk's summary if the chunk is done and its shuffle files are whole."""
        path = self._summary(partition_key, plan_fingerprint, "chunk", index)
        summary = read_json(path) if path.exists() else None
        if summary is None:
            return None
        for range_index, size in enumerate(summary.get("shuffle_bytes", [])):
            if size is None:  # processed by the chunk's step, not written: its range must be done
                if self._range_summary(partition_key, plan_fingerprint, range_index) is None:
                    return None
                continue
            shuffle = self.shuffle_file(partition_key, plan_fingerprint, index, range_index)
            if not shuffle.exists() or shuffle.stat().st_size != size:
                return None
        return summary

    def load_chunk(self, task: ChunkTask) -> ChunkResult | None:
        """The finished result of exactly this chunk (same rows), or None."""
        summary = self._chunk_summary(task.partition_key, task.plan_fingerprint, task.index)
        if summary is None or (summary["start_row"], summary["stop_row"]) != (task.start_row, task.stop_row):
            return None
        result = {key: value for key, value in summary["result"].items() if key not in ("ranges_done", "range_seconds")}
        return ChunkResult(**{**result, "range_rows": tuple(result["range_rows"]), "reused": True})

    def chunks_done(self, partition_key: str, plan_fingerprint: str, indexes: Iterable[int]) -> set[int]:
        return {i for i in indexes if self._chunk_summary(partition_key, plan_fingerprint, i) is not None}

    def save_chunk(self, task: ChunkTask, parts: list[pa.Table], result: ChunkResult, kept: Collection[int] = ()) -> ChunkResult:
        """Write the chunk's rows of each range (``parts[r]``), but those of the ranges in ``kept`` (already
        processed and saved from memory), then its summary."""
        sizes: list[int | None] = []
        for range_index, part in enumerate(parts):
            path = self.shuffle_file(task.partition_key, task.plan_fingerprint, task.index, range_index)
            written = None if range_index in kept else atomic_write(path, feather_writer(part), durable=False)
            sizes.append(None if written is None else written.stat().st_size)
        document = {"start_row": task.start_row, "stop_row": task.stop_row, "result": asdict(result), "shuffle_bytes": sizes}
        atomic_write_json(self._summary(task.partition_key, task.plan_fingerprint, "chunk", task.index), document)
        return result

    def claim_range(self, task: RangeTask, owner: str) -> bool:
        """True for exactly one caller per range and plan: the one that processes it inside a chunk step."""
        path = self.plan_dir(task.partition_key, task.plan_fingerprint) / f"range-{task.index:05d}.claim.json"
        return create_json_exclusive(path, {"owner": owner})

    def read_range_parts(self, task: RangeTask) -> pa.Table:
        """The source chunks' rows of the range, in chunk order (so in raw order within equal order_ids)."""
        parts = [
            feather.read_table(self.shuffle_file(task.partition_key, task.plan_fingerprint, chunk, task.index))
            for chunk in task.sources
        ]
        return pa.concat_tables(parts)

    def _range_summary(self, partition_key: str, plan_fingerprint: str, index: int) -> dict | None:
        """The range's summary if the range is done and both its files are there."""
        path = self._summary(partition_key, plan_fingerprint, "range", index)
        summary = read_json(path) if path.exists() else None
        if summary is None or not (Path(summary["path"]).exists() and Path(summary["valid_path"]).exists()):
            return None
        return summary

    def load_range(self, task: RangeTask) -> RangeResult | None:
        summary = self._range_summary(task.partition_key, task.plan_fingerprint, task.index)
        return None if summary is None else RangeResult(**{**summary, "reused": True})

    def save_range(self, task: RangeTask, table: pa.Table, valid: pa.Table, result: RangeResult) -> RangeResult:
        """Write the processed range and its valid rows as Parquet, then its summary."""
        base = self.plan_dir(task.partition_key, task.plan_fingerprint) / f"range-{task.index:05d}"
        path, valid_path = base.with_suffix(".parquet"), base.with_suffix(".valid.parquet")
        with ThreadPoolExecutor(2) as pool:  # Parquet encoding releases the GIL: both files at once
            list(pool.map(atomic_write, [path, valid_path], [parquet_writer(table), parquet_writer(valid)]))
        result = RangeResult(**{**asdict(result), "path": str(path), "valid_path": str(valid_path)})
        atomic_write_json(self._summary(task.partition_key, task.plan_fingerprint, "range", task.index), asdict(result))
        return result

    def drop_shuffle(self, partition_key: str, plan_fingerprint: str) -> None:
        """Delete the plan's shuffle files (every range is processed and the hour published)."""
        for chunk_dir in self.plan_dir(partition_key, plan_fingerprint).glob("chunk-*/"):
            shutil.rmtree(chunk_dir, ignore_errors=True)

    def prune(self, partition_key: str, keep_fingerprint: str) -> list[str]:
        """Delete the partition's checkpoints of every other plan (called once a plan's hour is published)."""
        partition_dir = self.root / partition_dirname(partition_key)
        stale = (
            [d for d in partition_dir.iterdir() if d.is_dir() and d.name != keep_fingerprint] if partition_dir.exists() else []
        )
        for plan_dir in stale:
            shutil.rmtree(plan_dir, ignore_errors=True)
        return [d.name for d in stale]
