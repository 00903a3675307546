"""Chunk checkpoints: each chunk's result, keyed by partition, plan fingerprint and chunk index.

Layout: ``checkpoints/<partition>/<plan fingerprint>/chunk-<index>.parquet`` and a ``.json`` summary
written after it. The summary is the commit marker: a chunk counts as done only when both exist.
Once processed_chunks publishes an hour, the partition's checkpoints of every other plan are deleted.
"""

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from scalable_pipeline.storage.atomic import atomic_write, atomic_write_json, read_json
from scalable_pipeline.storage.paths import partition_dirname


@dataclass(frozen=True)
class ChunkTask:
    """One mapped step's work: a row range of the pinned raw version."""

    partition_key: str
    plan_fingerprint: str
    raw_path: str
    index: int
    start_row: int
    stop_row: int


@dataclass(frozen=True)
class ChunkResult:
    index: int
    plan_fingerprint: str
    path: str
    rows_in: int
    rows_out: int
    invalid: int
    duplicates: int
    seconds: float
    records_per_second: float
    reused: bool = False

    def as_metadata(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("index", "plan_fingerprint")}


class ChunkCheckpoints:
    def __init__(self, root: Path | str):
        self.root = Path(root) / "checkpoints"

    def plan_dir(self, partition_key: str, plan_fingerprint: str) -> Path:
        return self.root / partition_dirname(partition_key) / plan_fingerprint

    def _paths(self, task: ChunkTask) -> tuple[Path, Path]:
        base = self.plan_dir(task.partition_key, task.plan_fingerprint) / f"chunk-{task.index:05d}"
        return base.with_suffix(".parquet"), base.with_suffix(".json")

    def load(self, task: ChunkTask) -> ChunkResult | None:
        """The finished result for exactly this task, or None."""
        data_path, summary_path = self._paths(task)
        if not (summary_path.exists() and data_path.exists()):
            return None
        summary = read_json(summary_path)
        if (summary.get("start_row"), summary.get("stop_row")) != (task.start_row, task.stop_row):
            return None
        return ChunkResult(**{**summary["result"], "reused": True})

    def save(self, task: ChunkTask, frame: pd.DataFrame, result: ChunkResult) -> ChunkResult:
        data_path, summary_path = self._paths(task)
        atomic_write(data_path, lambda tmp: frame.to_parquet(tmp, index=False))
        result = ChunkResult(**{**asdict(result), "path": str(data_path)})
        atomic_write_json(summary_path, {"start_row": task.start_row, "stop_row": task.stop_row, "result": asdict(result)})
        return result

    def prune(self, partition_key: str, keep_fingerprint: str) -> list[str]:
        """Delete the partition's checkpoints of every other plan (called once a plan's hour is published)."""
        partition_dir = self.root / partition_dirname(partition_key)
        stale = (
            [d for d in partition_dir.iterdir() if d.is_dir() and d.name != keep_fingerprint] if partition_dir.exists() else []
        )
        for plan_dir in stale:
            shutil.rmtree(plan_dir, ignore_errors=True)
        return [d.name for d in stale]
