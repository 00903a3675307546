"""chunk_partitions: the chunk plan for the hour, sized by the scaling resource."""

from functools import partial

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.processing.chunk_plan import ChunkPlan, ChunkSpec, coverage_problems, range_cuts, split_rows
from scalable_pipeline.processing.descriptions import CHUNK_PARTITIONS, chunk_plan_table
from scalable_pipeline.processing.hours import HourVersions, each_hour, left_out_upstream, step_hours
from scalable_pipeline.processing.io_manager import stored_metadata
from scalable_pipeline.processing.ranges import inline_ranges, range_count, range_sources
from scalable_pipeline.publishing.versioned_store import StoredVersion
from scalable_pipeline.quality.gate_results import LINEAGE_GATE_DESCRIPTION, audit_then_publish, gate_spec, lineage_gate
from scalable_pipeline.quality.gates import all_true

# Row groups whose order_ids are read to place the range cut points (32 x 50,000 ids at most).
SAMPLE_ROW_GROUPS = 32


def bytes_per_record(metadata: pq.FileMetaData) -> float:
    """Uncompressed in-memory bytes per row, read from the Parquet footer (no data loaded)."""
    total = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return total / metadata.num_rows if metadata.num_rows else 0.0


def order_id_sample(parquet: pq.ParquetFile, max_groups: int = SAMPLE_ROW_GROUPS) -> np.ndarray:
    """The order_ids of up to ``max_groups`` row groups spread evenly over the file (one column, a few MB)."""
    groups = parquet.metadata.num_row_groups
    picks = min(groups, max_groups)
    chosen = sorted({(i * groups) // picks for i in range(picks)})
    return parquet.read_row_groups(chosen, columns=["order_id"])["order_id"].to_numpy() if chosen else np.array([], np.int64)


def raw_row_group_rows(metadata: pq.FileMetaData) -> int:
    return metadata.row_group(0).num_rows if metadata.num_row_groups else 1


def chunk_id_bounds(metadata: pq.FileMetaData, chunks: tuple[ChunkSpec, ...]) -> list[tuple[int, int] | None]:
    """Each chunk's smallest and largest order_id, from the statistics of the row groups it reads (footer
    only); None where a row group has no statistics."""
    column = metadata.schema.to_arrow_schema().get_field_index("order_id")
    groups, first_row = [], 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        stats = group.column(column).statistics
        groups.append((first_row, first_row + group.num_rows, (stats.min, stats.max) if stats and stats.has_min_max else None))
        first_row += group.num_rows
    bounds: list[tuple[int, int] | None] = []
    for chunk in chunks:
        overlapping = [b for start, stop, b in groups if start < chunk.stop_row and stop > chunk.start_row]
        known = [b for b in overlapping if b is not None]
        if len(known) < len(overlapping):
            bounds.append(None)
        else:
            bounds.append((min(b[0] for b in known), max(b[1] for b in known)) if known else (1, 0))
    return bounds


CHECKS = [
    gate_spec("chunk_partitions", "chunk_plan_covers_raw", "Chunks cover every raw record exactly once."),
    gate_spec("chunk_partitions", "plan_lineage", LINEAGE_GATE_DESCRIPTION),
]


def build_chunk_partitions(pipeline: PipelineBuild) -> dg.AssetsDefinition:
    @pipeline.asset(
        ins=["raw_volume"],
        required_resource_keys=pipeline.resource_keys("scaling", "data_store", "quality"),
        kinds={"python"},
        description=CHUNK_PARTITIONS,
        check_specs=pipeline.check_specs(CHECKS),
    )
    def chunk_partitions(context: dg.AssetExecutionContext, raw_volume: HourVersions):
        """Measure the machine, decide the strategy, split each raw hour this run produced into row ranges."""
        store = pipeline.resources(context).data_store.store()
        hours = step_hours(context)
        yield from each_hour(
            context,
            pipeline.key("chunk_partitions"),
            hours,
            lambda hour_context, hour: plan_hour(hour_context, raw_volume[hour]),
            missing=left_out_upstream(hours, raw_volume, "raw_volume"),
            stored_metadata=partial(stored_metadata, store),
        )

    def plan_hour(context: StepContext, raw: StoredVersion):
        resources = pipeline.resources(context)
        scaling, data_store, quality = resources.scaling, resources.data_store, resources.quality
        partition = data_store.hold_partition(context, context.partition_key)
        store = data_store.store()
        parquet = pq.ParquetFile(raw.path)  # its footer, read once, serves every figure below
        total_records = parquet.metadata.num_rows
        row_bytes = bytes_per_record(parquet.metadata)
        strategy, snapshot = scaling.strategy(total_records, row_bytes, context)
        chunks = split_rows(total_records, strategy.chunk_count, raw_row_group_rows(parquet.metadata))
        cuts = range_cuts(order_id_sample(parquet), range_count(total_records, len(chunks), strategy.parallel_tasks))
        sources = range_sources(chunk_id_bounds(parquet.metadata, chunks), cuts)
        inline = inline_ranges(sources, len(chunks), strategy.parallel_tasks)
        plan = ChunkPlan(partition, raw.version, raw.path, total_records, chunks, raw.raw_digest, cuts, sources, inline)
        staged = store.write_document("chunk_partitions", partition, plan.to_json(), context.run.run_id, raw.raw_digest)
        verdicts = [
            all_true("chunk_plan_covers_raw", coverage_problems(plan), "chunk coverage"),
            lineage_gate("plan_lineage", store, staged),
        ]
        published = yield from audit_then_publish(context, store, staged, verdicts, quality)
        yield dg.Output(
            published,
            metadata={
                **strategy.as_metadata(),
                "chunk_count": len(plan.chunks),
                "chunk_plan": chunk_plan_table(plan),
                "range_count": plan.range_count,
                "ranges_in_chunk_steps": len(plan.inline_ranges),
                "bytes_per_record": round(row_bytes, 2),
                "resource_snapshot": dg.MetadataValue.json(snapshot.as_metadata()),
                "plan_fingerprint": plan.fingerprint,
                "raw_version": raw.version,
                **resources.time_rule_metadata,
            },
        )

    return chunk_partitions
