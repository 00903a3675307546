"""Resource-aware scaling: from volume and a machine snapshot to a processing strategy.

The seed rule picks the mode (aggressive when CPU < 50% and workers > 8; moderate when CPU < 70% and
workers > 4; else conservative). Fixed here: no division by zero for empty hours or zero workers,
chunks always cover every record (ceil, not floor), and free memory bounds the batch size.
"""

import math
from dataclasses import asdict, dataclass

MODE_SHARE_OF_WORKERS = {"aggressive": 1.0, "moderate": 0.5, "conservative": 0.25}
# In-memory working set of a chunk step relative to the rows it holds (copies made by cleaning,
# validation and the Parquet round trip); measured on the synthetic orders, see bench/.
CHUNK_MEMORY_OVERHEAD = 4.0


@dataclass(frozen=True)
class ResourceSnapshot:
    """What the machine and the Dagster instance look like right now."""

    cpu_usage_percent: float
    memory_usage_percent: float
    memory_total_bytes: int
    available_workers: int
    queue_length: int
    sources: tuple[tuple[str, str], ...] = ()  # (field, "measured" | "pinned" | how it was read)

    def as_metadata(self) -> dict:
        data = asdict(self)
        data["sources"] = dict(self.sources)
        return data


@dataclass(frozen=True)
class ScalingLimits:
    min_batch_size: int = 1_000
    max_batch_size: int = 100_000
    max_chunks: int = 256
    memory_budget_fraction: float = 0.5
    pinned_chunk_count: int | None = None  # a fixed number of chunks (drills, tests); memory still bounds


@dataclass(frozen=True)
class ScalingStrategy:
    processing_mode: str
    parallel_tasks: int
    batch_size: int
    chunk_count: int
    memory_bound_rows: int
    reason: str


def worker_slots(executor_name: str, max_concurrent: int | None, cpu_count: int, pool_limit: int | None) -> int:
    """Steps that can run at once: 1 in process, else the executor's ``max_concurrent`` or the CPU count,
    capped by the chunk pool's slot limit when one is set."""
    slots = 1 if "in_process" in executor_name else (max_concurrent or cpu_count)
    return max(0, min(slots, pool_limit)) if pool_limit is not None else slots


def processing_mode(cpu_usage_percent: float, available_workers: int) -> str:
    """The seed table."""
    if cpu_usage_percent < 50 and available_workers > 8:
        return "aggressive"
    if cpu_usage_percent < 70 and available_workers > 4:
        return "moderate"
    return "conservative"


def memory_bound_rows(snapshot: ResourceSnapshot, bytes_per_record: float, parallel_tasks: int, limits: ScalingLimits) -> int:
    """Rows one chunk may hold so that all parallel chunks fit the free-memory budget."""
    free_bytes = snapshot.memory_total_bytes * max(0.0, 100.0 - snapshot.memory_usage_percent) / 100.0
    per_task_bytes = free_bytes * limits.memory_budget_fraction / max(1, parallel_tasks)
    per_row_bytes = max(1.0, bytes_per_record) * CHUNK_MEMORY_OVERHEAD
    return max(1, int(per_task_bytes // per_row_bytes))


def decide_strategy(
    total_records: int, snapshot: ResourceSnapshot, bytes_per_record: float, limits: ScalingLimits = ScalingLimits()
) -> ScalingStrategy:
    """Mode, parallelism and batch size for an hour of ``total_records`` on this snapshot."""
    mode = processing_mode(snapshot.cpu_usage_percent, snapshot.available_workers)
    workers = max(1, snapshot.available_workers)
    # Queued runs will want the same workers: share them.
    shared_workers = max(1, workers // (1 + max(0, snapshot.queue_length)))
    parallel_tasks = max(1, math.floor(shared_workers * MODE_SHARE_OF_WORKERS[mode]))

    memory_rows = memory_bound_rows(snapshot, bytes_per_record, parallel_tasks, limits)
    if limits.pinned_chunk_count:
        # Exactly the pinned count (no more chunks than records), unless memory needs more.
        chunk_count = max(1, min(limits.pinned_chunk_count, total_records))
        batch_size, reason = max(1, math.ceil(total_records / chunk_count)), f"pinned to {chunk_count} chunks"
    else:
        batch_size, reason = _batch_size_for_volume(total_records, parallel_tasks, limits)
        chunk_count = max(1, math.ceil(total_records / batch_size))
    if memory_rows < batch_size:
        batch_size, reason = memory_rows, "bounded by free memory"
        chunk_count = math.ceil(total_records / batch_size)
    return ScalingStrategy(mode, parallel_tasks, batch_size, chunk_count, memory_rows, reason)


def _batch_size_for_volume(total_records: int, parallel_tasks: int, limits: ScalingLimits) -> tuple[int, str]:
    """One wave of ``parallel_tasks`` chunks, clamped to the batch limits and the chunk-count cap."""
    batch_size, reason = math.ceil(total_records / parallel_tasks), "one chunk per parallel task"
    if batch_size < limits.min_batch_size:
        batch_size, reason = limits.min_batch_size, "raised to min_batch_size"
    if batch_size > limits.max_batch_size:
        batch_size, reason = limits.max_batch_size, "capped at max_batch_size"
    fewest = math.ceil(total_records / limits.max_chunks)
    if fewest > batch_size:
        batch_size, reason = fewest, f"raised to keep at most {limits.max_chunks} chunks"
    return batch_size, reason
