"""The rollback record and its append-only log: ``<data root>/logs/rollback.jsonl``, one JSON line each."""

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scalable_pipeline.core.jsonl import append_record, read_records


@dataclass(frozen=True)
class RollbackRecord:
    """One asset partition whose published version was kept or restored instead of a new one."""

    kind: str  # "automatic" (an ERROR gate failed) or "manual" (the rollback_partition job)
    asset: str
    partition: str
    run_id: str
    restored_version: str | None  # what readers get now (None: nothing was ever published)
    replaced_version: str | None  # automatic: the staged version discarded; manual: the version unpublished
    cause_asset: str  # the asset whose gate failed (the asset itself for a manual rollback)
    gate: str | None = None
    score: float | None = None
    threshold: float | None = None
    failed_gates: list[dict] = field(default_factory=list)
    reason: str = ""
    at: float = field(default_factory=time.time)
    table_version: int | None = None  # manual, of a Delta table: the version of the commit that restored it

    def as_metadata(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None and key != "failed_gates"}


def rollback_log_path(root: Path | str) -> Path:
    return Path(root) / "logs" / "rollback.jsonl"


def append_rollback(root: Path | str, record: RollbackRecord) -> None:
    append_record(rollback_log_path(root), asdict(record))


def read_rollbacks(root: Path | str) -> list[RollbackRecord]:
    return [RollbackRecord(**line) for line in read_records(rollback_log_path(root))]
