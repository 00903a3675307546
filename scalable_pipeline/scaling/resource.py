"""The scaling resource (key ``scaling``): measures the machine and reads what earlier runs measured, then
asks the pure decision."""

import os
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.core.constants import CHUNK_POOL
from scalable_pipeline.scaling.cgroups import CGROUP_V2_DIR
from scalable_pipeline.scaling.decision import (
    CostTarget,
    ExecutionProfile,
    ResourceSnapshot,
    ScalingLimits,
    ScalingStrategy,
    decide_strategy,
    execution_profile,
    worker_slots,
)
from scalable_pipeline.scaling.history import (
    HISTORY_RUNS,
    OVERHEAD_LOOKBACK,
    pipeline_key_prefix,
    processed_history,
    run_executor_kind,
    step_overheads_in,
    throughputs_in,
)
from scalable_pipeline.scaling.machine import CpuMark, Machine, Measured

CPU_SAMPLE_SECONDS = 0.2
# A CPU reading serves the plans made within this many seconds of it (the hours of one range step).
CPU_READING_SECONDS = 5


class CpuReadings:
    """The machine's CPU use for the plans of this process: each reading covers the time since the previous one
    (the first, since the definitions loaded or the run's scaling resource was set up), at least
    ``CPU_SAMPLE_SECONDS``, and serves every plan made within ``CPU_READING_SECONDS`` of it. A plan made long
    enough after the mark reads at once; one made sooner waits out the rest of the sample. A mark serves only
    the process that took it: a forked step process inherits its parent's, whose own CPU seconds are not its own."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        pid: Callable[[], int] = os.getpid,
    ):
        self.clock, self.sleep, self.pid = clock, sleep, pid
        self.marks: dict[Machine, tuple[int, CpuMark]] = {}
        self.readings: dict[Machine, tuple[float, Measured]] = {}

    def own_mark(self, machine: Machine) -> CpuMark | None:
        """The last mark of ``machine``, if this process took it."""
        taken = self.marks.get(machine)
        return taken[1] if taken and taken[0] == self.pid() else None

    def mark(self, machine: Machine, keep_younger_than: float = 0.0) -> None:
        """Start measuring from now, unless this process's last mark is younger than ``keep_younger_than``
        seconds: a run's resources, set up just after its process loaded the definitions, keep the mark taken then."""
        last = self.own_mark(machine)
        if last is not None and self.clock() - last.at < keep_younger_than:
            return
        self.marks[machine] = (self.pid(), machine.cpu_mark())
        self.readings.pop(machine, None)

    def read(self, machine: Machine) -> Measured:
        now = self.clock()
        reading = self.readings.get(machine)
        if reading and now - reading[0] < CPU_READING_SECONDS:
            return reading[1]
        mark = self.own_mark(machine) or machine.cpu_mark()
        if (waited := now - mark.at) < CPU_SAMPLE_SECONDS:
            self.sleep(CPU_SAMPLE_SECONDS - waited)
        after = machine.cpu_mark()  # the end of this reading is where the next one starts
        measured = machine.cpu_usage_between(mark, after)
        self.marks[machine], self.readings[machine] = (self.pid(), after), (self.clock(), measured)
        return measured


CPU_READINGS = CpuReadings()


class ScalingResource(dg.ConfigurableResource):
    """Pinned fields replace a measurement (drills, tests, reproducible runs); unset ones are measured."""

    cpu_usage_percent: float | None = Field(default=None, ge=0, le=100, description="Pin CPU use instead of measuring it.")
    memory_usage_percent: float | None = Field(default=None, ge=0, le=100, description="Pin memory use instead of measuring it.")
    available_workers: int | None = Field(default=None, ge=0, description="Pin worker slots instead of reading the executor.")
    queue_length: int | None = Field(default=None, ge=0, description="Pin queued runs instead of asking the instance.")
    step_overhead_seconds: float | None = Field(
        default=None, ge=0, description="Pin Dagster's overhead per chunk step instead of reading earlier runs."
    )
    throughput_records_per_second: float | None = Field(
        default=None, gt=0, description="Pin the chunk compute throughput (records/s per worker) instead of reading earlier runs."
    )
    chunk_count: int | None = Field(
        default=ScalingLimits.chunk_count, ge=1, description="Pin the number of chunks (free memory still bounds a chunk)."
    )
    min_batch_size: int = Field(default=ScalingLimits.min_batch_size, ge=1, description="Fewest rows per chunk.")
    max_batch_size: int = Field(
        default=ScalingLimits.max_batch_size, ge=1, description="Most rows per chunk (memory may lower it)."
    )
    max_chunks: int = Field(
        default=ScalingLimits.max_chunks, ge=1, description="Keep runs to a few hundred steps (UI and event log stay fast)."
    )
    memory_budget_fraction: float = Field(
        default=ScalingLimits.memory_budget_fraction, gt=0, le=1, description="Share of free memory the chunks may use."
    )
    max_overhead_share: float = Field(
        default=ScalingLimits.max_overhead_share,
        gt=0,
        le=1,
        description="Most of the run's time Dagster's step overhead may take.",
    )
    cost_per_worker_hour: float | None = Field(
        default=CostTarget.cost_per_worker_hour, ge=0, description="Price of one worker for an hour (estimated_cost)."
    )
    deadline_seconds: float | None = Field(
        default=CostTarget.deadline_seconds, gt=0, description="Pick the cheapest parallelism that processes the chunks in time."
    )
    cgroup_dir: str = Field(default=CGROUP_V2_DIR, description="Where the container's cgroup v2 limits are read.")
    single_step_below: int | None = Field(
        default=None, ge=0, description="An hour with fewer records runs as one step, without fan-out (single_step)."
    )
    priority_above: int | None = Field(
        default=None, ge=0, description="An hour with more records runs its chunk steps at priority (fan_out_priority)."
    )
    pool: str = Field(default=CHUNK_POOL, description="Pool of the chunk steps (set from the pipeline entry).")
    reserved_pool: str | None = Field(default=None, description="The pipeline's reserved pool (set from the pipeline entry).")

    @property
    def limits(self) -> ScalingLimits:
        return ScalingLimits(**self._by_name(ScalingLimits))

    @property
    def cost(self) -> CostTarget:
        return CostTarget(**self._by_name(CostTarget))

    def _by_name(self, dataclass_type: type) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(dataclass_type)}

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """The run's CPU reading measures from here, or from the definitions' load if that was just now (unless pinned)."""
        if self.cpu_usage_percent is None:
            CPU_READINGS.mark(Machine(Path(self.cgroup_dir)), keep_younger_than=CPU_READING_SECONDS)

    def snapshot(self, context: StepContext) -> ResourceSnapshot:
        """The machine and the instance now, as ``context``'s run sees them (pinned fields as given)."""
        machine = Machine(Path(self.cgroup_dir))
        sources: list[tuple[str, str]] = []

        def pick(field: str, pinned: float | None, measure: Callable[[], Measured]) -> float:
            if pinned is not None:
                sources.append((field, "pinned"))
                return pinned
            measured: Measured = measure()
            sources.append((field, measured.source))
            return measured.value

        total_memory, memory_use = machine.memory()
        sources.append(("memory_total_bytes", total_memory.source))
        cpu = pick("cpu_usage_percent", self.cpu_usage_percent, lambda: CPU_READINGS.read(machine))
        mem = pick("memory_usage_percent", self.memory_usage_percent, lambda: memory_use)
        workers = pick(
            "available_workers", self.available_workers, lambda: available_worker_slots(context, machine.cpus(), self.pool)
        )
        queue = pick("queue_length", self.queue_length, lambda: Measured(queued_runs(context), "instance"))
        return ResourceSnapshot(float(cpu), float(mem), int(total_memory.value), int(workers), int(queue), tuple(sources))

    def profile(self, context: StepContext) -> ExecutionProfile:
        """Step overhead of this run's executor and chunk throughput, from the pipeline's earlier runs unless pinned."""
        executor = run_executor_kind(context)
        prefix = pipeline_key_prefix(context)  # the pipeline's own history
        pinned = self.step_overhead_seconds is not None and self.throughput_records_per_second is not None
        history = [] if pinned else processed_history(context.instance, OVERHEAD_LOOKBACK * HISTORY_RUNS, prefix)
        overheads = step_overheads_in(history, executor) if self.step_overhead_seconds is None else []
        throughputs = throughputs_in(history) if self.throughput_records_per_second is None else []
        measured = execution_profile(executor, overheads, throughputs)
        if self.step_overhead_seconds is not None:
            measured = replace(measured, step_overhead_seconds=self.step_overhead_seconds, step_overhead_source="pinned")
        if self.throughput_records_per_second is not None:
            measured = replace(
                measured, throughput_records_per_second=self.throughput_records_per_second, throughput_source="pinned"
            )
        return measured

    def free_slots(self, instance: dg.DagsterInstance) -> list[tuple[str, int | None]]:
        """Free slots of this pipeline's pools now, reserved pool first (None: the pool has no limit)."""
        return [(pool, free_pool_slots(instance, pool)) for pool in (self.reserved_pool, self.pool) if pool]

    def strategy(
        self, total_records: int, bytes_per_record: float, context: StepContext
    ) -> tuple[ScalingStrategy, ResourceSnapshot]:
        snapshot = self.snapshot(context)
        strategy = decide_strategy(total_records, snapshot, bytes_per_record, self.limits, self.profile(context), self.cost)
        return strategy, snapshot


def available_worker_slots(context: StepContext, cpus: Measured, pool: str = CHUNK_POOL) -> Measured:
    """Chunk steps this run can run at once, from its executor, the CPUs and the chunk pool's limit."""
    execution = context.run.run_config.get("execution")
    config = execution.get("config") if isinstance(execution, dict) else None
    max_concurrent = config.get("max_concurrent") if isinstance(config, dict) else None
    limit = chunk_pool_limit(context.instance, pool)
    slots = worker_slots(run_executor_kind(context), max_concurrent, int(cpus.value), limit)
    return Measured(slots, f"executor and pool; {int(cpus.value)} CPU(s) from {cpus.source}")


def chunk_pool_limit(instance: dg.DagsterInstance, pool_name: str = CHUNK_POOL) -> int | None:
    """The slot limit of the chunk steps' pool: set for the pool, else the instance's default pool limit."""
    for pool in instance.event_log_storage.get_pool_limits():
        if pool.name == pool_name:
            return pool.limit
    return instance.get_concurrency_config().pool_config.default_pool_limit


def free_pool_slots(instance: dg.DagsterInstance, pool: str) -> int | None:
    """Slots of ``pool`` no step holds now; None when the pool has no limit."""
    if chunk_pool_limit(instance, pool) is None:
        return None
    info = instance.event_log_storage.get_concurrency_info(pool)
    return max(info.slot_count - len(info.claimed_slots), 0)


def queued_runs(context: StepContext) -> int:
    return context.instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
