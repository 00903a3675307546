"""The scaling resource (key ``scaling``): measures the machine, then asks the pure decision."""

import os

import dagster as dg
import psutil
from pydantic import Field

from scalable_pipeline.constants import CHUNK_POOL
from scalable_pipeline.decisions.scaling import ResourceSnapshot, ScalingLimits, ScalingStrategy, decide_strategy, worker_slots

CPU_SAMPLE_SECONDS = 0.2


class ScalingResource(dg.ConfigurableResource):
    """Pinned fields replace a measurement (drills, tests, reproducible runs); unset ones are measured."""

    cpu_usage_percent: float | None = Field(default=None, ge=0, le=100, description="Pin CPU use instead of measuring it.")
    memory_usage_percent: float | None = Field(default=None, ge=0, le=100, description="Pin memory use instead of measuring it.")
    available_workers: int | None = Field(default=None, ge=0, description="Pin worker slots instead of reading the executor.")
    queue_length: int | None = Field(default=None, ge=0, description="Pin queued runs instead of asking the instance.")
    chunk_count: int | None = Field(
        default=None, ge=1, description="Pin the number of chunks (free memory still bounds a chunk)."
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

    @property
    def limits(self) -> ScalingLimits:
        return ScalingLimits(
            min_batch_size=self.min_batch_size,
            max_batch_size=self.max_batch_size,
            max_chunks=self.max_chunks,
            memory_budget_fraction=self.memory_budget_fraction,
            pinned_chunk_count=self.chunk_count,
        )

    def snapshot(self, context: dg.OpExecutionContext) -> ResourceSnapshot:
        """The machine and the instance now, as ``context``'s run sees them (pinned fields as given)."""
        sources = []

        def pick(field: str, pinned, measure, how: str):
            if pinned is not None:
                sources.append((field, "pinned"))
                return pinned
            sources.append((field, how))
            return measure()

        memory = psutil.virtual_memory()
        cpu = pick("cpu_usage_percent", self.cpu_usage_percent, lambda: psutil.cpu_percent(interval=CPU_SAMPLE_SECONDS), "psutil")
        mem = pick("memory_usage_percent", self.memory_usage_percent, lambda: memory.percent, "psutil")
        workers = pick("available_workers", self.available_workers, lambda: available_worker_slots(context), "executor and pool")
        queue = pick("queue_length", self.queue_length, lambda: queued_runs(context), "instance")
        return ResourceSnapshot(float(cpu), float(mem), int(memory.total), int(workers), int(queue), tuple(sources))

    def strategy(
        self, total_records: int, bytes_per_record: float, context: dg.OpExecutionContext
    ) -> tuple[ScalingStrategy, ResourceSnapshot]:
        snapshot = self.snapshot(context)
        return decide_strategy(total_records, snapshot, bytes_per_record, self.limits), snapshot


def available_worker_slots(context: dg.OpExecutionContext) -> int:
    """Chunk steps this run can run at once, from its executor and the chunk pool's limit."""
    execution = (context.run.run_config or {}).get("execution") or {}
    max_concurrent = (execution.get("config") or {}).get("max_concurrent")
    cpu_count = os.cpu_count() or 1
    return worker_slots(context.job_def.executor_def.name, max_concurrent, cpu_count, chunk_pool_limit(context.instance))


def chunk_pool_limit(instance: dg.DagsterInstance) -> int | None:
    """The slot limit of the chunk steps' pool: set for the pool, else the instance's default pool limit."""
    for pool in instance.event_log_storage.get_pool_limits():
        if pool.name == CHUNK_POOL:
            return pool.limit
    return instance.get_concurrency_config().pool_config.default_pool_limit


def queued_runs(context: dg.OpExecutionContext) -> int:
    return context.instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
