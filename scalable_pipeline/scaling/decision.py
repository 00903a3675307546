"""Resource-aware scaling: from volume, a machine snapshot and what earlier runs measured to a processing strategy.

- Parallel tasks: every worker slot (shared with queued runs) while the machine is free; when it is busy,
  the seed table's mode (aggressive when CPU < 50% and workers > 8; moderate when CPU < 70% and workers > 4;
  else conservative) keeps its share of them.
- Chunks: whole waves of the parallel tasks, each chunk the smallest that keeps orchestration overhead at
  most ``max_overhead_share`` of the run (per-step overhead and throughput from earlier runs, else defaults),
  within free memory and the configured limits; at least two waves, so that the chunk steps also process
  the order_id ranges (``ranges_inline``) and no second fan-out of range steps re-reads the hour.
- Cost: with a price or a deadline, the fewest workers whose estimated time meets the deadline.
"""

import math
from dataclasses import asdict, dataclass
from statistics import median

# Chunk steps process the order_id ranges themselves only in plans of at least this many waves of chunk
# steps, so that the ranges' work still spreads over every slot (with one wave, each slot's chunk would wait
# for its neighbours to finish).
INLINE_WAVES = 2


def ranges_inline(chunk_count: int, parallel_tasks: int) -> bool:
    """Whether a plan of ``chunk_count`` chunks over ``parallel_tasks`` slots has its chunk steps process the
    order_id ranges (when ids arrive roughly in order), instead of a second fan-out of range steps."""
    return chunk_count >= INLINE_WAVES * max(1, parallel_tasks)


MODE_SHARE_OF_WORKERS = {"aggressive": 1.0, "moderate": 0.5, "conservative": 0.25}
# At or above either, the machine is busy and the mode's share of workers applies.
BUSY_CPU_PERCENT = 50.0
BUSY_MEMORY_PERCENT = 80.0
# In-memory working set of a chunk step relative to the rows it holds (copies made by cleaning,
# validation and the Parquet round trip); measured on the synthetic orders, see bench/.
CHUNK_MEMORY_OVERHEAD = 4.0
# Before any history: Dagster's cost per step (seconds) measured on a 2-core machine with a SQLite
# instance (in process: events and IO manager; otherwise also a forkserver process start), and a chunk
# compute throughput (records/s per worker) below what the synthetic orders measure at scale 100 and up.
DEFAULT_STEP_OVERHEAD_SECONDS = {"in_process": 0.15, "multiprocess": 1.0}
DEFAULT_THROUGHPUT_RECORDS_PER_SECOND = 1_000_000.0


@dataclass(frozen=True)
class ResourceSnapshot:
    """What the machine and the Dagster instance look like right now."""

    cpu_usage_percent: float
    memory_usage_percent: float
    memory_total_bytes: int
    available_workers: int
    queue_length: int
    sources: tuple[tuple[str, str], ...] = ()  # (field, "pinned" | how it was read, e.g. "psutil", "cgroup v2 memory.max")

    def as_metadata(self) -> dict:
        data = asdict(self)
        data["sources"] = dict(self.sources)
        return data


@dataclass(frozen=True)
class ScalingLimits:
    min_batch_size: int = 1_000
    # About 0.9 GB of working set per chunk step at 4 x 36 bytes per synthetic record.
    max_batch_size: int = 6_000_000
    max_chunks: int = 256
    memory_budget_fraction: float = 0.5
    max_overhead_share: float = 0.10
    chunk_count: int | None = None  # pinned: exactly this many chunks (drills, tests); memory still bounds


@dataclass(frozen=True)
class CostTarget:
    cost_per_worker_hour: float | None = None
    deadline_seconds: float | None = None

    @property
    def is_set(self) -> bool:
        return self.cost_per_worker_hour is not None or self.deadline_seconds is not None


@dataclass(frozen=True)
class ExecutionProfile:
    """What a chunk step costs under one executor: Dagster's overhead per step and the compute throughput."""

    executor: str
    step_overhead_seconds: float
    step_overhead_source: str
    throughput_records_per_second: float
    throughput_source: str


def executor_kind(executor_name: str, mode: str | None = None) -> str:
    """The ``mode`` an ``auto`` executor ran in; else ``in_process`` for Dagster's in-process executors, else the
    executor's name (e.g. ``multiprocess``)."""
    if mode:
        return mode
    return "in_process" if "in_process" in executor_name else executor_name


# A chunk step keeps two cores busy itself (threads judge the rules, reorder the columns, judge and save ranges), so
# a process per step pays for its start only where the machine has more cores than that.
CORES_PER_STEP = 2


def executor_mode(cpus: float) -> str:
    """The ``auto`` executor's mode for a machine of ``cpus`` (cgroup-aware) when a run names none."""
    return "multiprocess" if cpus > CORES_PER_STEP else "in_process"


def execution_profile(executor: str, step_overheads: list[float], throughputs: list[float]) -> ExecutionProfile:
    """Medians of what earlier runs measured (one value per run); safe defaults without history."""
    if step_overheads:
        overhead, overhead_source = median(step_overheads), f"history: median of {len(step_overheads)} run(s)"
    else:
        default = DEFAULT_STEP_OVERHEAD_SECONDS["in_process" if executor == "in_process" else "multiprocess"]
        overhead, overhead_source = default, f"default for {executor} (no history)"
    if throughputs:
        throughput, throughput_source = median(throughputs), f"history: median of {len(throughputs)} run(s)"
    else:
        throughput, throughput_source = DEFAULT_THROUGHPUT_RECORDS_PER_SECOND, "default (no history)"
    return ExecutionProfile(executor, overhead, overhead_source, throughput, throughput_source)


DEFAULT_PROFILE = execution_profile("in_process", [], [])


@dataclass(frozen=True)
class RunEstimate:
    """The chunk stage of a run: ``waves`` rounds of (step overhead + one chunk's compute)."""

    seconds: float
    overhead_share: float


def estimate_run(total_records: int, chunk_count: int, parallel_tasks: int, profile: ExecutionProfile) -> RunEstimate:
    """Waves of chunks, each its step overhead and one chunk's compute; when the chunk steps do not process the
    ranges themselves, as many waves of range steps again (a range holds about a chunk's worth of rows)."""
    waves = math.ceil(chunk_count / max(1, parallel_tasks))
    step_waves = waves if ranges_inline(chunk_count, parallel_tasks) else 2 * waves
    compute = math.ceil(total_records / chunk_count) / profile.throughput_records_per_second
    overhead = step_waves * profile.step_overhead_seconds
    seconds = overhead + waves * compute
    return RunEstimate(seconds, overhead / seconds if seconds else 0.0)


@dataclass(frozen=True)
class ScalingStrategy:
    processing_mode: str
    parallel_tasks: int
    batch_size: int
    chunk_count: int
    memory_bound_rows: int
    reason: str
    profile: ExecutionProfile
    expected_overhead_share: float
    estimated_seconds: float
    estimated_cost: float | None
    cost_choice: str

    def as_metadata(self) -> dict:
        """The chunk_partitions metadata of the decision (what it chose, what it assumed and from where)."""
        return {
            "parallel_tasks": self.parallel_tasks,
            "batch_size": self.batch_size,
            "processing_mode": self.processing_mode,
            "chunk_count": self.chunk_count,
            "strategy_reason": self.reason,
            "memory_bound_rows": self.memory_bound_rows,
            "executor": self.profile.executor,
            "step_overhead_seconds": round(self.profile.step_overhead_seconds, 4),
            "step_overhead_source": self.profile.step_overhead_source,
            "throughput_records_per_second": round(self.profile.throughput_records_per_second, 1),
            "throughput_source": self.profile.throughput_source,
            "expected_overhead_share": round(self.expected_overhead_share, 4),
            "estimated_seconds": round(self.estimated_seconds, 3),
            "estimated_cost": None if self.estimated_cost is None else round(self.estimated_cost, 6),
            "cost_choice": self.cost_choice,
        }


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


def is_busy(snapshot: ResourceSnapshot) -> bool:
    return snapshot.cpu_usage_percent >= BUSY_CPU_PERCENT or snapshot.memory_usage_percent >= BUSY_MEMORY_PERCENT


def parallel_tasks(snapshot: ResourceSnapshot, mode: str) -> int:
    """The worker slots left by queued runs (workers / (1 + queue)); the mode's share of them only when busy."""
    shared_workers = max(1, snapshot.available_workers) // (1 + max(0, snapshot.queue_length))
    share = MODE_SHARE_OF_WORKERS[mode] if is_busy(snapshot) else 1.0
    return max(1, math.floor(max(1, shared_workers) * share))


def memory_bound_rows(snapshot: ResourceSnapshot, bytes_per_record: float, limits: ScalingLimits) -> int:
    """Rows one chunk may hold so that chunks in every worker slot at once fit the free-memory budget (the
    executor runs as many chunk steps as it has slots, whatever the plan's parallel tasks)."""
    free_bytes = snapshot.memory_total_bytes * max(0.0, 100.0 - snapshot.memory_usage_percent) / 100.0
    per_slot_bytes = free_bytes * limits.memory_budget_fraction / max(1, snapshot.available_workers)
    per_row_bytes = max(1.0, bytes_per_record) * CHUNK_MEMORY_OVERHEAD
    return max(1, int(per_slot_bytes // per_row_bytes))


def smallest_efficient_chunk(profile: ExecutionProfile, max_overhead_share: float) -> int:
    """Rows per chunk whose compute is long enough that the step overhead is at most ``max_overhead_share``
    of a step (one step per chunk, its ranges processed in it): overhead / (overhead + rows / throughput) <= share."""
    share = min(max(max_overhead_share, 1e-6), 1.0)
    return max(1, math.ceil(profile.step_overhead_seconds * profile.throughput_records_per_second * (1 - share) / share))


def chunk_count(
    total_records: int, tasks: int, profile: ExecutionProfile, memory_rows: int, limits: ScalingLimits
) -> tuple[int, str]:
    """How many chunks, and why (see the module docstring); at least one, never more than records."""
    if limits.chunk_count:
        count = max(1, min(limits.chunk_count, total_records))
        fewest_for_memory = math.ceil(total_records / memory_rows)
        return (
            (fewest_for_memory, "bounded by free memory") if fewest_for_memory > count else (count, f"pinned to {count} chunks")
        )
    if total_records == 0:
        return 1, "empty hour: one empty chunk"
    share = f"{limits.max_overhead_share:.0%}"
    target_rows = smallest_efficient_chunk(profile, limits.max_overhead_share)
    waves = total_records // (tasks * target_rows)
    if waves >= INLINE_WAVES:
        count, reason = (
            tasks * waves,
            f"{tasks * waves} chunks in {waves} waves of {tasks}: at least {target_rows:,} rows each keep overhead <= {share}",
        )
    else:  # as many steps as one wave of chunks and one of range steps, without re-reading the hour for the ranges
        count = tasks * INLINE_WAVES
        reason = f"{count} chunks in {INLINE_WAVES} waves of {tasks}: too few records to keep overhead <= {share}"

    # Hard bounds, strongest first: free memory, then max_chunks, then max_batch_size and min_batch_size.
    for_memory = math.ceil(total_records / memory_rows)
    for_batch = math.ceil(total_records / limits.max_batch_size)
    fewest = max(for_memory, min(for_batch, limits.max_chunks))
    for_min_batch = max(1, total_records // limits.min_batch_size)
    most = max(fewest, min(total_records, limits.max_chunks, for_min_batch))
    if count < fewest:
        whole_waves = math.ceil(fewest / tasks) * tasks
        count = whole_waves if whole_waves <= most else fewest
        if for_memory >= min(for_batch, limits.max_chunks):
            reason = "bounded by free memory"
        elif for_batch > limits.max_chunks:
            reason = f"max_chunks ({limits.max_chunks}) wins over max_batch_size"
        else:
            reason = f"capped at max_batch_size ({limits.max_batch_size:,} rows)"
    elif count > most:
        whole_waves = most // tasks * tasks
        count = whole_waves if whole_waves >= max(1, fewest) else most
        if most == for_min_batch:
            reason = f"fewer chunks: each holds at least min_batch_size ({limits.min_batch_size:,} rows)"
        else:
            reason = f"kept to at most {most} chunks (max_chunks, or one per record)"
    return count, reason


def choose_workers(estimates: dict[int, RunEstimate], cost: CostTarget) -> tuple[int, str]:
    """The cheapest number of workers (cost = workers x estimated time) whose estimate meets the deadline;
    without a deadline every option meets it. When none meets it: the fastest."""
    most = max(estimates)
    if not cost.is_set:
        return most, f"no cost_per_worker_hour or deadline_seconds set: all {most} parallel task(s)"
    deadline = cost.deadline_seconds
    meeting = [w for w, e in estimates.items() if deadline is None or e.seconds <= deadline]
    if not meeting:
        fastest = min(estimates, key=lambda w: (estimates[w].seconds, w))
        return fastest, (
            f"no parallelism meets the {deadline:g} s deadline: the fastest, {fastest} worker(s), "
            f"est. {estimates[fastest].seconds:.1f} s"
        )
    cheapest = min(meeting, key=lambda w: (w * estimates[w].seconds, w))
    if deadline is None:
        return cheapest, f"no deadline_seconds set: the cheapest, {cheapest} worker(s), est. {estimates[cheapest].seconds:.1f} s"
    return cheapest, (
        f"{cheapest} of {most} worker(s): the cheapest that meets the {deadline:g} s deadline "
        f"(est. {estimates[cheapest].seconds:.1f} s)"
    )


def decide_strategy(
    total_records: int,
    snapshot: ResourceSnapshot,
    bytes_per_record: float,
    limits: ScalingLimits = ScalingLimits(),
    profile: ExecutionProfile = DEFAULT_PROFILE,
    cost: CostTarget = CostTarget(),
) -> ScalingStrategy:
    """Mode, parallelism and chunks for an hour of ``total_records`` on this snapshot and profile."""
    mode = processing_mode(snapshot.cpu_usage_percent, snapshot.available_workers)
    memory_rows = memory_bound_rows(snapshot, bytes_per_record, limits)
    plans = {w: chunk_count(total_records, w, profile, memory_rows, limits) for w in range(1, parallel_tasks(snapshot, mode) + 1)}
    estimates = {w: estimate_run(total_records, count, w, profile) for w, (count, _) in plans.items()}
    tasks, cost_choice = choose_workers(estimates, cost)
    (count, reason), estimate = plans[tasks], estimates[tasks]
    workers_cost = None
    if cost.cost_per_worker_hour is not None:
        workers_cost = cost.cost_per_worker_hour * tasks * estimate.seconds / 3600
    return ScalingStrategy(
        processing_mode=mode,
        parallel_tasks=tasks,
        batch_size=max(1, math.ceil(total_records / count)),
        chunk_count=count,
        memory_bound_rows=memory_rows,
        reason=reason,
        profile=profile,
        expected_overhead_share=estimate.overhead_share,
        estimated_seconds=estimate.seconds,
        estimated_cost=workers_cost,
        cost_choice=cost_choice,
    )
