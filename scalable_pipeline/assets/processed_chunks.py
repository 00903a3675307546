"""processed_chunks: fan the chunk plan out, process each chunk in its own step, collect the results.

Each chunk step validates its own row range of the pinned raw version and checkpoints the result.
The collector applies de-duplication across chunks (first row in raw order wins), so the outcome
equals the whole-hour computation whatever the chunking, and stores every raw row with its verdict.
"""

import time

import dagster as dg
import pandas as pd

from scalable_pipeline.assets.gate_history import ratio_gate
from scalable_pipeline.assets.gate_results import LINEAGE_GATE_DESCRIPTION, audit_then_publish, gate_spec, lineage_gate
from scalable_pipeline.constants import CHUNK_POOL, GROUP_NAME, HOURLY_PARTITIONS
from scalable_pipeline.decisions.chunk_plan import ChunkPlan
from scalable_pipeline.decisions.gates import all_true
from scalable_pipeline.decisions.order_rules import (
    DUPLICATE,
    RAW_ROW_COLUMN,
    REASON_COLUMN,
    classify,
    final_reasons,
    reason_counts,
)
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.faults import FaultInjectionResource
from scalable_pipeline.resources.quality import QualityResource
from scalable_pipeline.storage.checkpoints import ChunkCheckpoints, ChunkResult, ChunkTask
from scalable_pipeline.storage.versioned_store import read_row_range

ASSET = "processed_chunks"
GATES = [
    gate_spec(
        ASSET, "invalid_ratio", "Share of de-duplicated rows that break a validity rule, at most quality.max_invalid_ratio."
    ),
    gate_spec(
        ASSET, "duplicate_ratio", "Share of raw rows that repeat an earlier order_id, at most quality.max_duplicate_ratio."
    ),
    gate_spec(
        ASSET, "chunks_complete", "Every chunk of the plan processed, each under the plan's fingerprint; rows in = raw rows."
    ),
    gate_spec(ASSET, "chunks_lineage", LINEAGE_GATE_DESCRIPTION),
]
# Transient errors in a chunk step are retried by Dagster, with exponential backoff and jitter.
CHUNK_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=0.2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
GATE_OUTPUTS = {spec.get_python_identifier(): dg.Out(is_required=False) for spec in GATES}


def hour_window(partition_key: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    window = HOURLY_PARTITIONS.time_window_for_partition_key(partition_key)
    return pd.Timestamp(window.start), pd.Timestamp(window.end)


def chunk_tasks(chunk_plan: ChunkPlan) -> list[ChunkTask]:
    return [
        ChunkTask(chunk_plan.partition_key, chunk_plan.fingerprint, chunk_plan.raw_path, c.index, c.start_row, c.stop_row)
        for c in chunk_plan.chunks
    ]


@dg.op(out=dg.DynamicOut(ChunkTask))
def fan_out_chunks(context: dg.OpExecutionContext, chunk_plan: ChunkPlan, data_store: DataStoreResource):
    """One dynamic output per chunk still to compute; chunks already checkpointed for this plan start no step."""
    data_store.hold_partition(context, chunk_plan.partition_key)
    checkpoints = ChunkCheckpoints(data_store.root)
    pending = [task for task in chunk_tasks(chunk_plan) if checkpoints.load(task) is None]
    context.log.info(f"{len(pending)} of {len(chunk_plan.chunks)} chunks to compute; the rest are checkpointed")
    for task in pending:
        yield dg.DynamicOutput(task, mapping_key=f"chunk_{task.index:05d}")


def validate_chunk(task: ChunkTask) -> pd.DataFrame:
    """Read only the chunk's rows, tag each with its raw position and its verdict within the chunk."""
    frame = read_row_range(task.raw_path, task.start_row, task.stop_row)
    frame[RAW_ROW_COLUMN] = pd.RangeIndex(task.start_row, task.stop_row, dtype="int64")
    frame[REASON_COLUMN] = classify(frame, *hour_window(task.partition_key))
    return frame


def checkpointed_chunk(task: ChunkTask, checkpoints: ChunkCheckpoints) -> ChunkResult:
    """The chunk's checkpoint when one exists for exactly this task, else validate and checkpoint it."""
    result = checkpoints.load(task)
    if result is not None:
        return result
    started = time.perf_counter()
    frame = validate_chunk(task)
    seconds = time.perf_counter() - started
    valid, invalid, duplicates = reason_counts(frame[REASON_COLUMN])
    return checkpoints.save(
        task,
        frame,
        ChunkResult(
            index=task.index,
            plan_fingerprint=task.plan_fingerprint,
            path="",
            rows_in=len(frame),
            rows_out=valid,
            invalid=invalid,
            duplicates=duplicates,
            seconds=round(seconds, 6),
            records_per_second=round(len(frame) / seconds, 1) if seconds else 0.0,
        ),
    )


def chunk_failure_message(task: ChunkTask, attempts: int, error: Exception, checkpoint_dir: str) -> str:
    return (
        f"chunk {task.index} (rows {task.start_row}-{task.stop_row}) of partition {task.partition_key} failed after "
        f"{attempts} attempt(s): {type(error).__name__}: {error}. The other chunks are not affected: they finish and "
        f"are checkpointed under {checkpoint_dir}; nothing is published for this hour until every chunk succeeds. "
        "Resume: re-execute this run from failure (UI: Re-execute > From failure; Python: "
        "dg.ReexecutionOptions.from_failure), which re-runs only the failed chunks and what follows them, "
        f"or launch a new run of partition {task.partition_key}, which reuses every finished chunk."
    )


@dg.op(pool=CHUNK_POOL, retry_policy=CHUNK_RETRY_POLICY)
def process_chunk(
    context: dg.OpExecutionContext, task: ChunkTask, data_store: DataStoreResource, faults: FaultInjectionResource
) -> ChunkResult:
    """Validate one chunk or reuse its checkpoint; errors are retried (RetryPolicy), the last attempt says how to resume."""
    data_store.hold_partition(context, task.partition_key)
    checkpoints = ChunkCheckpoints(data_store.root)
    try:
        faults.before_chunk(context, task.index)
        result = checkpointed_chunk(task, checkpoints)
    except Exception as error:
        if context.retry_number < CHUNK_RETRY_POLICY.max_retries:
            raise
        plan_dir = str(checkpoints.plan_dir(task.partition_key, task.plan_fingerprint))
        raise dg.Failure(
            description=chunk_failure_message(task, context.retry_number + 1, error, plan_dir),
            metadata={"chunk": task.index, "attempts": context.retry_number + 1, "checkpoints": plan_dir},
            allow_retries=False,
        ) from error
    context.add_output_metadata(result.as_metadata())
    return result


def with_checkpointed_chunks(plan: ChunkPlan, computed: list[ChunkResult], checkpoints: ChunkCheckpoints) -> list[ChunkResult]:
    """``computed`` plus the checkpoint of every other chunk of the plan that has one."""
    done = {result.index for result in computed}
    reused = [checkpoints.load(task) for task in chunk_tasks(plan) if task.index not in done]
    return [*computed, *(result for result in reused if result is not None)]


def combine_chunks(results: list[ChunkResult]) -> pd.DataFrame:
    """Every raw row, in raw order, with its final verdict (cross-chunk duplicates applied)."""
    ordered = sorted(results, key=lambda r: r.index)
    frame = pd.concat([pd.read_parquet(r.path) for r in ordered], ignore_index=True)
    validity = frame[REASON_COLUMN].mask(frame[REASON_COLUMN] == DUPLICATE)
    frame[REASON_COLUMN] = final_reasons(frame["order_id"], validity)
    return frame


def chunk_problems(plan: ChunkPlan, results: list[ChunkResult]) -> list[str]:
    done = {r.index for r in results}
    missing = [c.index for c in plan.chunks if c.index not in done]
    problems = [f"chunks {missing} have no result"] if missing else []
    foreign = [r.index for r in results if r.plan_fingerprint != plan.fingerprint]
    if foreign:
        problems.append(f"chunks {foreign} were computed for another plan than {plan.fingerprint}")
    rows_in = sum(r.rows_in for r in results)
    if rows_in != plan.total_records:
        problems.append(f"chunks hold {rows_in} rows, the raw hour has {plan.total_records}")
    return problems


@dg.op(out={"result": dg.Out(io_manager_key="versioned_store_io_manager"), **GATE_OUTPUTS})
def collect_chunks(
    context: dg.OpExecutionContext,
    chunk_plan: ChunkPlan,
    results: list[ChunkResult],
    quality: QualityResource,
    data_store: DataStoreResource,
):
    """Fan-in: the computed chunks plus the checkpointed ones of this run's plan, combined, audited, published."""
    started = time.perf_counter()
    partition = data_store.hold_partition(context, chunk_plan.partition_key)
    checkpoints = ChunkCheckpoints(data_store.root)
    results = with_checkpointed_chunks(chunk_plan, results, checkpoints)
    frame = combine_chunks(results)
    valid, invalid, duplicates = reason_counts(frame[REASON_COLUMN])
    store = data_store.store()
    staged = store.write_table(ASSET, partition, frame, context.run.run_id, chunk_plan.raw_digest)
    verdicts = [
        ratio_gate(
            context, quality, ASSET, "invalid_ratio", invalid, len(frame) - duplicates, quality.max_invalid_ratio, "invalid rows"
        ),
        ratio_gate(
            context, quality, ASSET, "duplicate_ratio", duplicates, len(frame), quality.max_duplicate_ratio, "duplicate rows"
        ),
        all_true("chunks_complete", chunk_problems(chunk_plan, results), "chunk completeness"),
        lineage_gate("chunks_lineage", store, staged),
    ]
    computed = [r for r in results if not r.reused]  # throughput from this run's work only
    computed_seconds = sum(r.seconds for r in computed)
    metadata = {
        "rows_in": len(frame),
        "valid": valid,
        "invalid": invalid,
        "duplicates": duplicates,
        "chunks": len(results),
        "chunks_reused": len(results) - len(computed),
        "chunk_seconds_total": round(computed_seconds, 3),
        "collect_seconds": round(time.perf_counter() - started, 3),
        "records_per_second": round(sum(r.rows_in for r in computed) / computed_seconds, 1) if computed_seconds else None,
        "plan_fingerprint": chunk_plan.fingerprint,
    }
    yield from audit_then_publish(context, store, staged, verdicts, quality)
    yield dg.Output(staged, "result", metadata=metadata)
    checkpoints.prune(partition, chunk_plan.fingerprint)  # the hour is published: other plans are stale


@dg.graph_asset(
    partitions_def=HOURLY_PARTITIONS,
    group_name=GROUP_NAME,
    check_specs=GATES,
    kinds={"pandas", "parquet"},
)
def processed_chunks(chunk_partitions: ChunkPlan):
    """Every raw row with its verdict (rejection_reason empty = valid), chunk by chunk."""
    results = fan_out_chunks(chunk_partitions).map(process_chunk).collect()
    collected = collect_chunks(chunk_partitions, results)
    return {"result": collected.result, **{name: getattr(collected, name) for name in GATE_OUTPUTS}}
