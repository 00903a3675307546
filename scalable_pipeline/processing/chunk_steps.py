"""processed_chunks: two fan-outs over the hour, no step holding more than its own share of it.

1. A chunk step reads its row range of the raw version, judges every row by the validity rules and
   splits the rows by the plan's order_id ranges (the shuffle), checkpointing one Arrow file per range.
2. A range step reads its range from every chunk, sorts it by (order_id, raw row), marks later rows of
   an id as duplicates (first in raw order wins) and checkpoints the range as Parquet.
3. The collector audits the counts and publishes the ranges, in order, as one dataset version.

The result equals the whole-hour computation whatever the chunking: every row of an id lands in the
same range, so de-duplication inside a range is de-duplication across the hour.
"""

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalable_pipeline.checkpoints.checkpoints import ChunkCheckpoints, ChunkResult, ChunkTask, RangeResult, RangeTask
from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.core.constants import ORDER_COLUMNS
from scalable_pipeline.core.partition_keys import partition_start
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.processing.chunk_plan import ChunkPlan
from scalable_pipeline.processing.hours import HourPlans, each_hour, left_out_upstream, step_hours
from scalable_pipeline.processing.io_manager import stored_metadata
from scalable_pipeline.processing.order_rules import (
    DUPLICATE_CODE,
    RAW_ROW_COLUMN,
    REASON_COLUMN,
    reason_names,
    validity_codes,
)
from scalable_pipeline.processing.ranges import bounds_problems, range_split, ready_ranges, repeats_of_previous
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.versioned_store import read_row_range
from scalable_pipeline.quality.gate_history import ratio_gate
from scalable_pipeline.quality.gate_results import LINEAGE_GATE_DESCRIPTION, audit_then_publish, gate_spec, lineage_gate
from scalable_pipeline.quality.gates import all_true
from scalable_pipeline.scaling.history import EXECUTOR_KEY, OVERHEAD_KEY, run_executor_kind, run_step_overhead

ASSET = "processed_chunks"
GATES = [
    gate_spec(
        ASSET, "invalid_ratio", "Share of de-duplicated rows that break a validity rule, at most quality.max_invalid_ratio."
    ),
    gate_spec(
        ASSET, "duplicate_ratio", "Share of raw rows that repeat an earlier order_id, at most quality.max_duplicate_ratio."
    ),
    gate_spec(
        ASSET,
        "chunks_complete",
        "Every chunk and range of the plan processed, under the plan's fingerprint; rows in = raw rows; ranges hold only their ids.",
    ),
    gate_spec(ASSET, "chunks_lineage", LINEAGE_GATE_DESCRIPTION),
]
# Transient errors in a chunk or range step are retried by Dagster, with exponential backoff and jitter.
CHUNK_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=0.2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# The shuffle carries each row's validity code (see order_rules.REASONS); the range step turns it into the reason.
CODE_COLUMN = "reason_code"
# The published version also carries its valid rows, range by range, in this subfolder (consolidated_output's
# parts). Its leading "_" keeps dataset readers (pyarrow.dataset, DuckDB's globs) from reading it as more rows.
VALID_VIEW = "_valid"
# The ranges a step judges and saves at once (each on its own thread, each writing its two files on two more).
RANGE_THREADS = 2
Task = ChunkTask | RangeTask


def hour_window(partition_key: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(partition_start(partition_key))
    return start, start + pd.Timedelta(hours=1)


def range_tasks(plan: ChunkPlan) -> list[RangeTask]:
    return [
        RangeTask(plan.partition_key, plan.fingerprint, r, plan.sources_of(r), plan.raw_path) for r in range(plan.range_count)
    ]


def chunk_tasks(plan: ChunkPlan) -> list[ChunkTask]:
    ranges = range_tasks(plan)
    return [
        ChunkTask(
            plan.partition_key,
            plan.fingerprint,
            plan.raw_path,
            c.index,
            c.start_row,
            c.stop_row,
            plan.range_cuts,
            tuple(ranges[r] for r in plan.inline_ranges if c.index in ranges[r].sources),
        )
        for c in plan.chunks
    ]


def split_chunk(task: ChunkTask) -> tuple[list[pa.Table], ChunkResult]:
    """Read only the chunk's rows, judge each by the validity rules, split them by order_id range.

    The rules are judged on a second thread while this one sorts the rows; the columns are then reordered
    on both (Arrow's kernels release the GIL): a chunk step keeps both cores busy here too."""
    started = time.perf_counter()
    table = read_row_range(task.raw_path, task.start_row, task.stop_row)
    with ThreadPoolExecutor(2) as pool:
        judging = pool.submit(validity_codes, table, *hour_window(task.partition_key))
        order, counts = range_split(table["order_id"].to_numpy(), task.range_cuts, len(task.range_cuts) + 1)
        indices = pa.array(order)
        columns = list(pool.map(lambda column: column.take(indices), table.columns))
        codes = judging.result()
    grouped = (
        pa.Table.from_arrays(columns, schema=table.schema)
        .append_column(RAW_ROW_COLUMN, pa.array(order + task.start_row))
        .append_column(CODE_COLUMN, pa.array(codes[order]))
    )
    offsets = np.concatenate([[0], np.cumsum(counts)])
    parts = [grouped.slice(int(offsets[r]), int(counts[r])) for r in range(len(counts))]
    seconds = time.perf_counter() - started
    result = ChunkResult(
        index=task.index,
        plan_fingerprint=task.plan_fingerprint,
        rows_in=len(table),
        invalid=int(np.count_nonzero(codes)),
        seconds=round(seconds, 6),
        records_per_second=round(len(table) / seconds, 1) if seconds else 0.0,
        range_rows=tuple(int(count) for count in counts),
    )
    return parts, result


def decoded(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with its dictionary columns (text read as dictionaries) back in ``schema``'s types."""
    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type) and field.name in schema.names:
            table = table.set_column(index, field.name, table[field.name].cast(schema.field(field.name).type))
    return table


def judge_range(table: pa.Table, task: RangeTask) -> tuple[pa.Table, pa.Table, RangeResult]:
    """Sort the range by (order_id, raw row), mark repeats as duplicates, count and total it; also its valid
    rows in the raw record's columns and types."""
    started = time.perf_counter()
    # The parts arrive in chunk order, each sorted by (order_id, raw row), so a stable sort by id keeps raw order
    # within an id; a range of one chunk is already in order and is not moved.
    ids = table["order_id"].to_numpy()
    if np.any(ids[1:] < ids[:-1]):
        table = table.take(pa.array(np.argsort(ids, kind="stable")))
        ids = table["order_id"].to_numpy()
    repeated = repeats_of_previous(ids)
    codes = np.where(repeated, np.int8(DUPLICATE_CODE), table[CODE_COLUMN].to_numpy()).astype(np.int8)
    table = table.drop_columns([CODE_COLUMN]).append_column(REASON_COLUMN, reason_names(codes))
    raw_schema = pq.read_schema(task.raw_path)
    valid = decoded(table.filter(pa.array(codes == 0)).select(ORDER_COLUMNS), raw_schema).cast(raw_schema)
    table = decoded(table, raw_schema)
    duplicates = int(np.count_nonzero(repeated))
    result = RangeResult(
        index=task.index,
        plan_fingerprint=task.plan_fingerprint,
        path="",
        valid_path="",
        rows_in=len(table),
        valid=len(valid),
        invalid=len(table) - len(valid) - duplicates,
        duplicates=duplicates,
        seconds=round(time.perf_counter() - started, 6),
        min_order_id=int(ids[0]) if len(ids) else None,
        max_order_id=int(ids[-1]) if len(ids) else None,
    )
    return table, valid, result


def chunk_failure_message(what: str, partition: str, attempts: int, error: Exception, checkpoint_dir: str) -> str:
    return (
        f"{what} of partition {partition} failed after {attempts} attempt(s): {type(error).__name__}: {error}. "
        f"The other steps are not affected: they finish and are checkpointed under {checkpoint_dir}; nothing is "
        "published for this hour until every chunk and range succeeds. Resume: re-execute this run from failure "
        "(UI: Re-execute > From failure; Python: dg.ReexecutionOptions.from_failure), which re-runs only the failed "
        f"steps and what follows them, or launch a new run of partition {partition}, which reuses every finished step."
    )


def final_attempt(context: dg.OpExecutionContext, what: str, partition: str, error: Exception, checkpoint_dir: str) -> Exception:
    """The error to raise: the original one while RetryPolicy has attempts left, else a descriptive Failure."""
    if context.retry_number < CHUNK_RETRY_POLICY.max_retries:
        return error
    attempts = context.retry_number + 1
    return dg.Failure(
        description=chunk_failure_message(what, partition, attempts, error, checkpoint_dir),
        metadata={"step": what, "attempts": attempts, "checkpoints": checkpoint_dir},
        allow_retries=False,
    )


def mapping_key(kind: str, task: Task, by_hour: bool) -> str:
    """A step's mapping key: ``chunk_00003``, or ``chunk_2026010510_00003`` in a run of several hours."""
    hour = "".join(c for c in task.partition_key if c.isdigit())[:10]
    return f"{kind}_{hour}_{task.index:05d}" if by_hour else f"{kind}_{task.index:05d}"


def pending_steps(
    context: dg.OpExecutionContext,
    data_store: DataStoreResource,
    plans: Sequence[ChunkPlan],
    tasks_of: Callable[[ChunkPlan], Sequence[Task]],
    load: Callable,
    kind: str,
) -> Iterator[dg.DynamicOutput]:
    """One dynamic output per task of the plans still to compute (every hour's tasks fanned out together);
    tasks already checkpointed for their plan start no step."""
    for plan in plans:
        data_store.hold_partition(context, plan.partition_key)
    tasks = [task for plan in plans for task in tasks_of(plan)]
    pending = [task for task in tasks if load(task) is None]
    context.log.info(f"{len(pending)} of {len(tasks)} {kind} steps to compute; the rest are checkpointed")
    for task in pending:
        yield dg.DynamicOutput(task, mapping_key=mapping_key(kind, task, len(plans) > 1))


def fan_out_chunks_op(pipeline: PipelineBuild, **op_args: Any) -> dg.OpDefinition:
    @dg.op(name=pipeline.node("fan_out_chunks"), required_resource_keys=pipeline.resource_keys("data_store"), **op_args)
    def fan_out_chunks(context: dg.OpExecutionContext, plans: list[ChunkPlan]):
        """One dynamic output per chunk still to compute, of every hour on this path."""
        data_store = pipeline.resources(context).data_store
        load = ChunkCheckpoints(data_store.root).load_chunk
        yield from pending_steps(context, data_store, plans, chunk_tasks, load, "chunk")

    return fan_out_chunks


def judge_and_save_ranges(
    checkpoints: ChunkCheckpoints, tasks: Sequence[RangeTask], read: Callable[[RangeTask], pa.Table] | None = None
) -> list[RangeResult]:
    """Judge and save each range (its rows from ``read``, by default its shuffle files), RANGE_THREADS ranges at
    once: Arrow's kernels and Parquet encoding release the GIL, so one step keeps the cores busy and holds at
    most RANGE_THREADS ranges read."""
    read = read or checkpoints.read_range_parts

    def judge_and_save(task: RangeTask) -> RangeResult:
        return checkpoints.save_range(task, *judge_range(read(task), task))

    with ThreadPoolExecutor(RANGE_THREADS) as pool:
        return list(pool.map(judge_and_save, tasks))


def compute_ranges(checkpoints: ChunkCheckpoints, tasks: Sequence[RangeTask]) -> list[RangeResult]:
    """Each range's checkpoint, or the range judged and saved (``judge_and_save_ranges``), in ``tasks``' order."""
    results = {task.index: checkpoints.load_range(task) for task in tasks}
    fresh = judge_and_save_ranges(checkpoints, [task for task in tasks if results[task.index] is None])
    results.update((result.index, result) for result in fresh)
    return [result for result in results.values() if result is not None]


def shuffle_chunk(checkpoints: ChunkCheckpoints, task: ChunkTask) -> tuple[ChunkResult, list[RangeResult]]:
    """The chunk's checkpoint, or: split the chunk by range, judge and save straight from memory the inline
    ranges it alone feeds (no shuffle file written and read back), then checkpoint its parts of the others.
    Those ranges are saved before the chunk's checkpoint, so a done chunk never lacks a part still needed."""
    done = checkpoints.load_chunk(task)
    if done is not None:
        return done, []
    parts, result = split_chunk(task)
    own = [r for r in task.inline if r.sources == (task.index,)]
    ranges = judge_and_save_ranges(checkpoints, [r for r in own if checkpoints.load_range(r) is None], lambda r: parts[r.index])
    return checkpoints.save_chunk(task, parts, result, kept={r.index for r in own}), ranges


def ranges_after_chunk(context: dg.OpExecutionContext, checkpoints: ChunkCheckpoints, task: ChunkTask) -> list[RangeResult]:
    """Process the chunk's inline ranges whose source chunks are now all done, each claimed first: a range
    is processed by one chunk step, or (claim left by a crashed step) by the range fan-out."""
    sources = {r.index: r.sources for r in task.inline}
    wanted = {chunk for chunks in sources.values() for chunk in chunks} - {task.index}
    done = checkpoints.chunks_done(task.partition_key, task.plan_fingerprint, wanted)
    ready = set(ready_ranges(task.index, sources, done))
    claimed = [  # not checkpointed: checked just before the claim
        r
        for r in task.inline
        if r.index in ready and checkpoints.load_range(r) is None and checkpoints.claim_range(r, context.run.run_id)
    ]
    return judge_and_save_ranges(checkpoints, claimed)


def process_chunk_op(pipeline: PipelineBuild, name: str = "process_chunk", **op_args: Any) -> dg.OpDefinition:
    @dg.op(name=pipeline.node(name), required_resource_keys=pipeline.resource_keys("data_store", "faults"), **op_args)
    def process_chunk(context: dg.OpExecutionContext, task: ChunkTask) -> ChunkResult:
        """Judge one chunk's rows and shuffle them into ranges (or reuse its checkpoint); then process the
        ranges it completes, when the plan lets chunk steps do so."""
        resources = pipeline.resources(context)
        data_store, faults = resources.data_store, resources.faults
        data_store.hold_partition(context, task.partition_key)
        checkpoints = ChunkCheckpoints(data_store.root)
        try:
            faults.before_chunk(context, task.index)
            result, own = shuffle_chunk(checkpoints, task)
            ranges = own + ranges_after_chunk(context, checkpoints, task)
            result = replace(result, ranges_done=tuple(r.index for r in ranges), range_seconds=sum(r.seconds for r in ranges))
        except Exception as error:
            what = f"chunk {task.index} (rows {task.start_row}-{task.stop_row})"
            plan_dir = str(checkpoints.plan_dir(task.partition_key, task.plan_fingerprint))
            raise final_attempt(context, what, task.partition_key, error, plan_dir) from error
        context.add_output_metadata(result.as_metadata())
        return result

    return process_chunk


def fan_out_ranges_op(pipeline: PipelineBuild, **op_args: Any) -> dg.OpDefinition:
    @dg.op(name=pipeline.node("fan_out_ranges"), required_resource_keys=pipeline.resource_keys("data_store"), **op_args)
    def fan_out_ranges(context: dg.OpExecutionContext, plans: list[ChunkPlan], results: list[ChunkResult]):
        """Once every chunk is shuffled: one dynamic output per order_id range still to process.

        A chunk of the plan without its checkpoint is shuffled here first, one at a time: its step left no event
        in the run (its process or the instance failed before STEP_START was recorded), so a re-execution from
        failure does not run it again and ``results`` lacks it."""
        data_store = pipeline.resources(context).data_store
        checkpoints = ChunkCheckpoints(data_store.root)
        for task in (task for plan in plans for task in chunk_tasks(plan)):
            if checkpoints.load_chunk(task) is None:
                context.log.warning(
                    f"chunk {task.index} has no checkpoint (hour {task.partition_key}; its step recorded no result): shuffling it here"
                )
                shuffle_chunk(checkpoints, task)
        yield from pending_steps(context, data_store, plans, range_tasks, checkpoints.load_range, "range")

    return fan_out_ranges


def process_range_op(pipeline: PipelineBuild, **op_args: Any) -> dg.OpDefinition:
    @dg.op(name=pipeline.node("process_range"), required_resource_keys=pipeline.resource_keys("data_store"), **op_args)
    def process_range(context: dg.OpExecutionContext, task: RangeTask) -> RangeResult:
        """De-duplicate and sort one order_id range of the hour (or reuse its checkpoint)."""
        data_store = pipeline.resources(context).data_store
        data_store.hold_partition(context, task.partition_key)
        checkpoints = ChunkCheckpoints(data_store.root)
        try:
            (result,) = compute_ranges(checkpoints, [task])
        except Exception as error:
            plan_dir = str(checkpoints.plan_dir(task.partition_key, task.plan_fingerprint))
            raise final_attempt(context, f"order_id range {task.index}", task.partition_key, error, plan_dir) from error
        context.add_output_metadata(result.as_metadata())
        return result

    return process_range


def completeness_problems(plan: ChunkPlan, chunks: list[ChunkResult], ranges: list[RangeResult]) -> list[str]:
    """What is missing, foreign or inconsistent among the plan's chunk and range results."""
    problems = []
    for kind, results, expected in (("chunks", chunks, len(plan.chunks)), ("ranges", ranges, plan.range_count)):
        missing = sorted(set(range(expected)) - {r.index for r in results})
        if missing:
            problems.append(f"{kind} {missing} have no result")
        foreign = [r.index for r in results if r.plan_fingerprint != plan.fingerprint]
        if foreign:
            problems.append(f"{kind} {foreign} were computed for another plan than {plan.fingerprint}")
        rows_in = sum(r.rows_in for r in results)
        if rows_in != plan.total_records:
            problems.append(f"{kind} hold {rows_in} rows, the raw hour has {plan.total_records}")
    for result in ranges:
        problems += bounds_problems(result.index, plan.range_cuts, result.min_order_id, result.max_order_id)
    return problems


def all_results(plan: ChunkPlan, chunks: list[ChunkResult], ranges: list[RangeResult], checkpoints: ChunkCheckpoints):
    """This run's results plus the checkpointed ones of every other chunk and range of the plan."""
    done_chunks, done_ranges = {r.index for r in chunks}, {r.index for r in ranges}
    reused_chunks = [checkpoints.load_chunk(t) for t in chunk_tasks(plan) if t.index not in done_chunks]
    reused_ranges = [checkpoints.load_range(t) for t in range_tasks(plan) if t.index not in done_ranges]
    return (
        sorted([*chunks, *(r for r in reused_chunks if r)], key=lambda r: r.index),
        sorted([*ranges, *(r for r in reused_ranges if r)], key=lambda r: r.index),
    )


@dataclass(frozen=True)
class PathResults:
    """What one processing path computed: its name, the plans (fingerprints) it took, every chunk and range
    result of this run."""

    path: str
    plans: tuple[str, ...]
    chunks: list[ChunkResult]
    ranges: list[RangeResult]

    def of_plan(self, plan: ChunkPlan) -> tuple[list[ChunkResult], list[RangeResult]]:
        """This run's chunk and range results of one plan."""
        mine = plan.fingerprint
        return [r for r in self.chunks if r.plan_fingerprint == mine], [r for r in self.ranges if r.plan_fingerprint == mine]


def path_results(path: str, plans: list[ChunkPlan], chunks: list[ChunkResult], ranges: list[RangeResult]) -> PathResults:
    return PathResults(path, tuple(plan.fingerprint for plan in plans), chunks, ranges)


def collect_ranges_op(pipeline: PipelineBuild, **op_args: Any) -> dg.OpDefinition:
    @dg.op(
        name=pipeline.node("collect_ranges"), required_resource_keys=pipeline.resource_keys("quality", "data_store"), **op_args
    )
    def collect_ranges(context: dg.AssetExecutionContext, chunk_plan: HourPlans, paths: list[PathResults]):
        """Fan-in of the paths that ran (the others were skipped): each hour's ranges audited and published."""
        hours = step_hours(context)
        store = pipeline.resources(context).data_store.store()
        overhead = run_step_overhead(context.instance, context.run.run_id)  # of every chunk step of the run: once
        yield from each_hour(
            context,
            pipeline.key(ASSET),
            hours,
            lambda hour_context, hour: collect_hour(hour_context, chunk_plan[hour], paths, overhead),
            missing=left_out_upstream(hours, chunk_plan, "chunk_partitions"),
            stored_metadata=partial(stored_metadata, store),
        )

    def collect_hour(context: StepContext, chunk_plan: ChunkPlan, paths: list[PathResults], overhead: float | None):
        """Every range of the hour's plan, audited, published in order as one dataset version."""
        resources = pipeline.resources(context)
        quality, data_store = resources.quality, resources.data_store
        started = time.perf_counter()
        ran = next(path for path in paths if chunk_plan.fingerprint in path.plans)
        processing_path, (chunk_results, range_results) = ran.path, ran.of_plan(chunk_plan)
        partition = data_store.hold_partition(context, chunk_plan.partition_key)
        checkpoints = ChunkCheckpoints(data_store.root)
        chunks, ranges = all_results(chunk_plan, chunk_results, range_results, checkpoints)
        rows, valid = sum(r.rows_in for r in ranges), sum(r.valid for r in ranges)
        invalid, duplicates = sum(r.invalid for r in ranges), sum(r.duplicates for r in ranges)
        store = data_store.store()
        stage = store.stage_dataset(ASSET, partition, context.run.run_id, chunk_plan.raw_digest)
        for result in ranges:
            stage.add_file(result.path)
            stage.add_file(result.valid_path, VALID_VIEW)
        staged = stage.commit()
        verdicts = [
            ratio_gate(
                context, quality, ASSET, "invalid_ratio", invalid, rows - duplicates, quality.max_invalid_ratio, "invalid rows"
            ),
            ratio_gate(
                context, quality, ASSET, "duplicate_ratio", duplicates, rows, quality.max_duplicate_ratio, "duplicate rows"
            ),
            all_true("chunks_complete", completeness_problems(chunk_plan, chunks, ranges), "chunk completeness"),
            lineage_gate("chunks_lineage", store, staged),
        ]
        computed = [r for r in chunks if not r.reused]  # throughput from this run's work only: chunk and range compute
        computed_seconds = sum(r.seconds for r in computed)
        fresh = {r.index for r in range_results} | {index for r in chunk_results for index in r.ranges_done}
        range_seconds = sum(r.seconds for r in ranges if r.index in fresh)
        compute_seconds = computed_seconds + range_seconds
        metadata = {
            "rows_in": rows,
            "valid": valid,
            "invalid": invalid,
            "duplicates": duplicates,
            "chunks": len(chunks),
            "chunks_reused": len(chunks) - len(computed),
            "ranges": len(ranges),
            "ranges_reused": len(ranges) - len(fresh),
            "ranges_in_chunk_steps": sum(len(r.ranges_done) for r in chunk_results),
            "chunk_seconds_total": round(computed_seconds, 3),
            "range_seconds_total": round(range_seconds, 3),
            "collect_seconds": round(time.perf_counter() - started, 3),
            "records_per_second": round(sum(r.rows_in for r in computed) / compute_seconds, 1) if compute_seconds else None,
            "plan_fingerprint": chunk_plan.fingerprint,
            "processing_path": processing_path,
            EXECUTOR_KEY: run_executor_kind(context),
            OVERHEAD_KEY: overhead,
            **resources.time_rule_metadata,
        }
        published = yield from audit_then_publish(context, store, staged, verdicts, quality)
        yield dg.Output(published, "result", metadata=metadata)
        checkpoints.drop_shuffle(partition, chunk_plan.fingerprint)  # the hour is published: the shuffle is spent
        checkpoints.prune(partition, chunk_plan.fingerprint)  # and other plans are stale

    return collect_ranges
