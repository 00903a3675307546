"""The chunk plan: contiguous row ranges of the raw hour, covering every record exactly once, and the
``order_id`` ranges the chunks' rows are shuffled into (each range is de-duplicated and sorted on its own).
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from scalable_pipeline.processing.order_rules import RULES_VERSION


@dataclass(frozen=True)
class ChunkSpec:
    index: int
    start_row: int
    stop_row: int

    @property
    def rows(self) -> int:
        return self.stop_row - self.start_row


@dataclass(frozen=True)
class ChunkPlan:
    partition_key: str
    raw_version: str
    raw_path: str
    total_records: int
    chunks: tuple[ChunkSpec, ...]
    raw_digest: str = ""  # content hash of the raw file: a new run re-fetching the same records keeps the fingerprint
    # Cut points of the order_id ranges: range r holds ids in [cuts[r-1], cuts[r]) (open-ended at both ends).
    range_cuts: tuple[int, ...] = ()
    # Per range, the chunks that may hold its ids (from the raw Parquet statistics; empty: every chunk).
    range_sources: tuple[tuple[int, ...], ...] = ()
    # The ranges a chunk step processes itself once their sources are done (see ranges.inline_ranges).
    inline_ranges: tuple[int, ...] = ()

    @property
    def range_count(self) -> int:
        return len(self.range_cuts) + 1

    def sources_of(self, range_index: int) -> tuple[int, ...]:
        return self.range_sources[range_index] if self.range_sources else tuple(range(len(self.chunks)))

    @property
    def fingerprint(self) -> str:
        """Identifies the plan's input content, boundaries, ranges and the rules version; part of every checkpoint's key."""
        boundaries = [(c.start_row, c.stop_row) for c in self.chunks]
        body = json.dumps([self.partition_key, self.raw_digest, boundaries, list(self.range_cuts), RULES_VERSION])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return {"type": "ChunkPlan", **asdict(self), "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, data: dict) -> "ChunkPlan":
        chunks = tuple(ChunkSpec(**chunk) for chunk in data["chunks"])
        return cls(
            data["partition_key"],
            data["raw_version"],
            data["raw_path"],
            data["total_records"],
            chunks,
            data.get("raw_digest", ""),
            tuple(data.get("range_cuts", ())),
            tuple(tuple(chunks) for chunks in data.get("range_sources", ())),
            tuple(data.get("inline_ranges", ())),
        )


def split_rows(total_records: int, chunk_count: int, align: int = 1) -> tuple[ChunkSpec, ...]:
    """``chunk_count`` near-equal contiguous ranges; at least one (possibly empty) chunk. Boundaries fall on
    multiples of ``align`` (the raw row group size) when every chunk still gets at least one group: a chunk
    then reads only its own row groups, and their statistics bound its order_ids tightly."""
    count = max(1, min(chunk_count, total_records) if total_records else 1)
    step = align if align > 1 and total_records // count >= align else 1
    bounds = [(i * total_records // count) // step * step for i in range(count)] + [total_records]
    return tuple(ChunkSpec(i, bounds[i], bounds[i + 1]) for i in range(count))


def coverage_problems(plan: ChunkPlan) -> list[str]:
    """What is wrong with the plan's coverage of rows 0..total_records (empty when it is exact)."""
    problems = []
    expected_start = 0
    for chunk in plan.chunks:
        if chunk.start_row != expected_start:
            problems.append(f"chunk {chunk.index} starts at row {chunk.start_row}, expected {expected_start}")
        if chunk.stop_row < chunk.start_row:
            problems.append(f"chunk {chunk.index} ends before it starts")
        expected_start = chunk.stop_row
    if expected_start != plan.total_records:
        problems.append(f"chunks end at row {expected_start}, the hour has {plan.total_records}")
    return problems


def range_cuts(sample: Sequence[int] | np.ndarray, range_count: int) -> tuple[int, ...]:
    """``range_count - 1`` order_id cut points that split the rows into near-equal ranges: quantiles of a
    sample of the hour's ids (ids spread anyhow: sorted, random, resent). Equal cuts collapse."""
    ids = np.sort(np.asarray(sample, dtype=np.int64))
    if range_count <= 1 or not len(ids):
        return ()
    cuts = {int(ids[min(len(ids) - 1, (len(ids) * r) // range_count)]) for r in range(1, range_count)}
    return tuple(sorted(cut for cut in cuts if cut > ids[0]))
