"""How the assets present themselves in the UI: Markdown descriptions that give every metadata key its
unit and one meaning, the chunk plan as a table, and end-to-end throughput named apart from chunk compute."""

import time
from collections.abc import Sequence
from statistics import median

import dagster as dg

from scalable_pipeline.processing.chunk_plan import ChunkPlan
from scalable_pipeline.scaling.history import end_to_end_rates

# Throughput has two meanings, always named apart:
#   chunk compute  (`records_per_second` of processed_chunks and of each chunk step): rows over the seconds
#                  spent inside chunk and range steps; no orchestration, no I/O between steps;
#   end to end     (`end_to_end_records_per_second`): raw records over the wall time of the whole run.


def metadata_table(rows: list[tuple[str, str, str]]) -> str:
    """A Markdown table of metadata keys: key, unit, meaning."""
    lines = ["| metadata key | unit | meaning |", "|---|---|---|"]
    return "\n".join(lines + [f"| `{key}` | {unit} | {meaning} |" for key, unit, meaning in rows])


# Every stage records where its version is and what raw content it derives from.
VERSION_ROWS = [
    ("version", "id", "the version written by this run (`v<time_ns>-<run id>`)"),
    ("path", "path", "where that version is stored"),
    ("raw_digest", "hash", "content digest of the raw version it derives from (lineage)"),
    ("table", "path", "the Delta table the hour is published in (processed_chunks and consolidated_output only)"),
    ("table_version", "version", "the table version whose commit published this version (time travel reads it)"),
    ("time_rule", "text", "the pipeline's time rule that applied to this hour (pipelines with `time_rules` only)"),
]


def describe(summary: str, rows: list[tuple[str, str, str]]) -> str:
    table = metadata_table(rows + [row for row in VERSION_ROWS if row[0] not in {key for key, _, _ in rows}])
    return f"{summary}\n\n{table}\n\nChecks: each check's description gives its severity (ERROR blocks, WARN reports)."


RAW_VOLUME = describe(
    "The hour's orders **exactly as the source delivered them** (raw order), one Parquet file written block by "
    "block from the `source` resource (behind its circuit breaker): no step holds the hour.",
    [
        ("total_records", "records", "rows the source delivered for the hour"),
        ("peak_hour", "true/false", "the hour is in the 09:00-16:59 UTC peak window"),
        (
            "estimated_processing_seconds",
            "seconds",
            "end to end: `total_records` / median end-to-end records/s of the last 10 finished runs (empty before any)",
        ),
        (
            "estimated_processing_time",
            "seconds",
            "chunk compute only (kept for compatibility): `total_records` / median chunk-compute records/s",
        ),
        ("source", "text", "which source and its settings"),
        ("raw_digest", "hash", "content digest of this raw version; every later stage carries it (lineage)"),
    ],
)

CHUNK_PARTITIONS = describe(
    "The **chunk plan**: contiguous row ranges (chunks) of the raw hour and the `order_id` cut points of the "
    "ranges, sized by the `scaling` resource from the hour's volume and the machine's free CPU, memory and workers.",
    [
        ("chunk_plan", "table", "every chunk: index, first row, end row (exclusive), rows"),
        ("chunk_count", "chunks", "chunks planned"),
        ("range_count", "ranges", "order_id ranges (the shuffle's partitions)"),
        ("ranges_in_chunk_steps", "ranges", "ranges the plan lets a chunk step process itself (no range step)"),
        ("parallel_tasks", "steps", "steps the plan is sized to run at once"),
        ("batch_size", "records", "rows of the largest chunk"),
        ("processing_mode", "text", "aggressive / moderate / conservative (from CPU and workers)"),
        ("strategy_reason", "text", "why this chunk count"),
        ("memory_bound_rows", "records", "most rows per chunk that fit the memory budget"),
        ("bytes_per_record", "bytes", "from the Parquet footer"),
        ("executor", "text", "the executor the plan was made for"),
        ("step_overhead_seconds", "seconds", "Dagster's cost per chunk step assumed by the plan"),
        ("step_overhead_source", "text", "history, default or pinned"),
        ("throughput_records_per_second", "records/s", "chunk compute throughput assumed by the plan"),
        ("throughput_source", "text", "history, default or pinned"),
        ("expected_overhead_share", "fraction 0-1", "share of the run expected outside chunk compute"),
        ("estimated_seconds", "seconds", "chunk steps' expected wall time"),
        ("estimated_cost", "price units", "workers x hours x `cost_per_worker_hour` (empty without a price)"),
        ("cost_choice", "text", "which parallelism the cost target chose, and why"),
        ("resource_snapshot", "JSON", "measured or pinned figures and their sources"),
        ("plan_fingerprint", "hash", "identifies the plan; part of every checkpoint's key"),
        ("raw_version", "id", "the raw version the plan splits"),
    ],
)

PROCESSED_CHUNKS = describe(
    "**Every raw row with its verdict** (`rejection_reason` empty = valid), sorted by `order_id`, one Parquet "
    "part per range: chunk steps judge and shuffle rows, range steps de-duplicate and sort.",
    [
        ("rows_in", "records", "raw rows judged"),
        ("valid", "records", "rows that pass every rule"),
        ("invalid", "records", "rows breaking a validity rule (duplicates not counted)"),
        ("duplicates", "records", "later rows of an order_id already seen"),
        ("processing_path", "text", "`single_step`, `fan_out` or `fan_out_priority` (chosen from the hour's records)"),
        ("chunks", "chunks", "chunks of the plan"),
        ("chunks_reused", "chunks", "chunks taken from checkpoints instead of recomputed"),
        ("ranges", "ranges", "order_id ranges"),
        ("ranges_reused", "ranges", "ranges taken from checkpoints"),
        ("ranges_in_chunk_steps", "ranges", "ranges processed inside chunk steps (no range step of their own)"),
        ("chunk_seconds_total", "seconds", "compute seconds summed over this run's chunk steps"),
        ("range_seconds_total", "seconds", "compute seconds summed over this run's range steps"),
        ("collect_seconds", "seconds", "wall time of the collecting step (audit and publish)"),
        ("plan_fingerprint", "hash", "the plan these rows were processed under"),
        ("records_per_second", "records/s", "**chunk compute**: rows / (chunk + range compute seconds); not end to end"),
        ("executor", "text", "the executor this run's steps ran under"),
        (
            "chunk_step_overhead_seconds",
            "seconds",
            "median of this run's chunk steps: step wall minus compute (the next plans' step overhead)",
        ),
    ],
)

CONSOLIDATED_OUTPUT = describe(
    "The hour's **valid, de-duplicated orders** in the raw record's columns and types, sorted by `order_id`, one "
    "part per range (linked from the processed version, not copied).",
    [
        ("raw_records", "records", "rows of the raw version this output derives from"),
        ("valid", "records", "rows published"),
        ("dagster/row_count", "records", "the same as `valid` (Dagster's standard key)"),
        ("invalid", "records", "rows breaking a validity rule"),
        ("duplicates", "records", "repeated order_ids dropped"),
        ("revenue", "currency units", "sum of `amount` over the valid rows"),
        ("region_totals", "table", "orders and revenue per region"),
        (
            "end_to_end_records_per_second",
            "records/s",
            "**end to end**: `raw_records` / seconds from the run's start to this output",
        ),
    ],
)


def chunk_plan_table(plan: ChunkPlan) -> dg.TableMetadataValue:
    """The chunk plan as a table: one row per chunk."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"chunk": c.index, "start_row": c.start_row, "stop_row": c.stop_row, "rows": c.rows})
            for c in plan.chunks
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("chunk", "int"),
                dg.TableColumn("start_row", "int", description="first raw row"),
                dg.TableColumn("stop_row", "int", description="end row, exclusive"),
                dg.TableColumn("rows", "int"),
            ]
        ),
    )


def end_to_end_records_per_second(instance: dg.DagsterInstance, run_id: str, records: int) -> float | None:
    """``records`` over the seconds from the run's start until now (None when the start is not recorded)."""
    record = instance.get_run_record_by_id(run_id)
    started = record.start_time if record else None
    return round(records / (time.time() - started), 1) if started and time.time() > started else None


def end_to_end_estimate(instance: dg.DagsterInstance, records: int, key_prefix: Sequence[str] = ()) -> float | None:
    """End to end: ``records`` at the median end-to-end rate of the pipeline's recent finished runs; None before any."""
    rates = end_to_end_rates(instance, key_prefix)
    return round(records / median(rates), 3) if rates else None
