"""What earlier runs measured, read from the Dagster instance: chunk compute throughput and Dagster's
overhead per chunk step under each executor.

History is per pipeline: each reads its own assets' materializations (its ``key_prefix``; ``()`` is the
unprefixed pipeline), so pipelines on different sources, scales or pools never plan from each other's runs.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from statistics import median

import dagster as dg

from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.core.metadata import metadata_number
from scalable_pipeline.execution.executors import run_executor_mode
from scalable_pipeline.scaling.decision import executor_kind

HISTORY_RUNS = 10
# Step overheads come from the newest HISTORY_RUNS runs under the executor in use, among this many times as
# many materializations (runs under other executors are skipped).
OVERHEAD_LOOKBACK = 3
THROUGHPUT_KEY = "records_per_second"
EXECUTOR_KEY = "executor"  # chunk_partitions and processed_chunks metadata: the run's executor kind
OVERHEAD_KEY = "chunk_step_overhead_seconds"  # processed_chunks metadata: its run's median (run_step_overhead)
CHUNK_STEP_OP = "process_chunk"  # its output metadata reports the chunk's compute `seconds` and `reused`
STEP_EVENTS = {
    dg.DagsterEventType.STEP_WORKER_STARTING,  # out-of-process executors: the process start counts as overhead
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_OUTPUT,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
    dg.DagsterEventType.STEP_SUCCESS,
}


def pipeline_key_prefix(context: StepContext) -> tuple[str, ...]:
    """The key prefix of the pipeline whose asset ``context``'s step belongs to (``()`` outside an asset)."""
    return tuple(next(iter(context.assets_def.keys)).path[:-1]) if context.has_assets_def else ()


def processed_history(instance: dg.DagsterInstance, limit: int, key_prefix: Sequence[str] = ()) -> list[Mapping]:
    """Metadata of the pipeline's last ``limit`` processed_chunks materializations, newest first (one query)."""
    records = instance.fetch_materializations(dg.AssetKey([*key_prefix, "processed_chunks"]), limit=limit).records
    return [record.asset_materialization.metadata if record.asset_materialization else {} for record in records]


def throughputs_in(history: Sequence[Mapping], limit: int = HISTORY_RUNS) -> list[float]:
    """records/s of the newest ``limit`` materializations of ``history``."""
    return [value for metadata in history[:limit] if (value := metadata_number(metadata, THROUGHPUT_KEY))]


def measured_throughputs(instance: dg.DagsterInstance, limit: int = HISTORY_RUNS, key_prefix: Sequence[str] = ()) -> list[float]:
    """records/s of the last ``limit`` materializations of the pipeline's processed_chunks, newest first."""
    return throughputs_in(processed_history(instance, limit, key_prefix), limit)


def estimated_processing_seconds(
    instance: dg.DagsterInstance, total_records: int, key_prefix: Sequence[str] = ()
) -> float | None:
    """Seconds to process ``total_records`` at the pipeline's median measured throughput; None before any history."""
    throughputs = measured_throughputs(instance, key_prefix=key_prefix)
    if not throughputs:
        return None
    return round(total_records / median(throughputs), 3)


def is_chunk_step(step_key: str) -> bool:
    """A fan-out chunk step of any pipeline: node ``process_chunk``, or ``<pipeline>__process_chunk``."""
    node = step_key.split("[")[0].split(".")[-1]
    return node == CHUNK_STEP_OP or node.endswith(f"__{CHUNK_STEP_OP}")


def step_overheads(instance: dg.DagsterInstance, run_id: str) -> list[float]:
    """Per chunk step of the run that computed its chunk in one attempt: wall (first event of the step to
    STEP_SUCCESS) minus the compute seconds it reported."""
    events: dict[str, list[dg.EventLogEntry]] = defaultdict(list)
    for record in instance.get_records_for_run(run_id, of_type=STEP_EVENTS).records:
        entry = record.event_log_entry
        if entry.step_key and is_chunk_step(entry.step_key):
            events[entry.step_key].append(entry)
    overheads = []
    for entries in events.values():
        by_type = {e.dagster_event.event_type: e for e in entries if e.dagster_event}
        output, success = by_type.get(dg.DagsterEventType.STEP_OUTPUT), by_type.get(dg.DagsterEventType.STEP_SUCCESS)
        if output is None or success is None or dg.DagsterEventType.STEP_UP_FOR_RETRY in by_type:
            continue
        metadata = output.dagster_event.step_output_data.metadata if output.dagster_event else {}
        seconds, reused = metadata_number(metadata, "seconds"), metadata.get("reused")
        if seconds is None or (reused is not None and reused.value):
            continue
        wall = success.timestamp - min(e.timestamp for e in entries)
        overheads.append(max(0.0, wall - seconds))
    return overheads


def step_overheads_in(history: Sequence[Mapping], executor: str, limit: int = HISTORY_RUNS) -> list[float]:
    """The median chunk-step overhead (``OVERHEAD_KEY``, recorded by processed_chunks from its run's events) of
    the newest ``limit`` materializations of ``history`` under ``executor`` that ran chunk steps."""
    values = []
    for metadata in history:
        kind, overhead = metadata.get(EXECUTOR_KEY), metadata_number(metadata, OVERHEAD_KEY)
        if kind is not None and kind.value == executor and overhead is not None:
            values.append(overhead)
    return values[:limit]


def run_step_overhead(instance: dg.DagsterInstance, run_id: str) -> float | None:
    """The median overhead of the run's chunk steps so far (None when it ran none in one attempt)."""
    overheads = step_overheads(instance, run_id)
    return median(overheads) if overheads else None


def run_rate(records: float | None, run: dg.RunRecord | None) -> float | None:
    """``records`` per second of the run's wall time (start to end); None unless the run has ended."""
    if run is None or records is None or not run.start_time or not run.end_time or run.end_time <= run.start_time:
        return None
    return records / (run.end_time - run.start_time)


def end_to_end_rates(instance: dg.DagsterInstance, key_prefix: Sequence[str] = (), limit: int = 10) -> list[float]:
    """End-to-end records/s of the runs behind the pipeline's last ``limit`` outputs (its ``key_prefix``):
    their ``raw_records`` over the run's wall time."""
    outputs = instance.fetch_materializations(dg.AssetKey([*key_prefix, "consolidated_output"]), limit=limit).records
    if not outputs:
        return []
    runs = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=[o.run_id for o in outputs]))}
    rates = []
    for output in outputs:
        materialization = output.asset_materialization
        rate = run_rate(
            metadata_number(materialization.metadata if materialization else None, "raw_records"), runs.get(output.run_id)
        )
        rates += [] if rate is None else [rate]
    return rates


def run_executor_kind(context: StepContext) -> str:
    """The executor kind the step's run runs on (``in_process``, ``multiprocess``, ``celery``): for the ``auto``
    executor, the mode the run picked."""
    name = context.job_def.executor_def.name
    return executor_kind(name, run_executor_mode(name, context.run.run_config, context.run.tags))
