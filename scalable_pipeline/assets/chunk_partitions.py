"""chunk_partitions: the chunk plan for the hour, sized by the scaling resource."""

import hashlib

import dagster as dg
import pyarrow.parquet as pq

from scalable_pipeline.assets.gate_results import audit_then_publish, gate_spec
from scalable_pipeline.constants import GROUP_NAME, HOURLY_PARTITIONS
from scalable_pipeline.decisions.chunk_plan import ChunkPlan, coverage_problems, split_rows
from scalable_pipeline.decisions.gates import all_true
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.quality import QualityResource
from scalable_pipeline.resources.scaling import ScalingResource


def bytes_per_record(parquet_path: str) -> float:
    """Uncompressed in-memory bytes per row, read from the Parquet footer (no data loaded)."""
    metadata = pq.read_metadata(parquet_path)
    total = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return total / metadata.num_rows if metadata.num_rows else 0.0


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes: the same records written the same way give the same digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dg.asset(
    partitions_def=HOURLY_PARTITIONS,
    group_name=GROUP_NAME,
    io_manager_key="versioned_store_io_manager",
    deps=["raw_volume"],
    kinds={"python"},
    check_specs=[gate_spec("chunk_partitions", "chunk_plan_covers_raw", "Chunks cover every raw record exactly once.")],
)
def chunk_partitions(
    context: dg.AssetExecutionContext, scaling: ScalingResource, data_store: DataStoreResource, quality: QualityResource
):
    """Measure the machine, decide the strategy, split the published raw hour into row ranges."""
    store = data_store.store()
    raw = store.require_published("raw_volume", context.partition_key)
    total_records = pq.read_metadata(raw.path).num_rows
    row_bytes = bytes_per_record(raw.path)
    strategy, snapshot = scaling.strategy(total_records, row_bytes, context)
    chunks = split_rows(total_records, strategy.chunk_count)
    plan = ChunkPlan(context.partition_key, raw.version, raw.path, total_records, chunks, file_digest(raw.path))
    staged = store.write_document("chunk_partitions", context.partition_key, plan.to_json(), context.run.run_id)
    yield from audit_then_publish(
        context, store, staged, [all_true("chunk_plan_covers_raw", coverage_problems(plan), "chunk coverage")], quality
    )
    yield dg.Output(
        staged,
        metadata={
            "parallel_tasks": strategy.parallel_tasks,
            "batch_size": strategy.batch_size,
            "processing_mode": strategy.processing_mode,
            "chunk_count": len(plan.chunks),
            "strategy_reason": strategy.reason,
            "memory_bound_rows": strategy.memory_bound_rows,
            "bytes_per_record": round(row_bytes, 2),
            "resource_snapshot": dg.MetadataValue.json(snapshot.as_metadata()),
            "plan_fingerprint": plan.fingerprint,
            "raw_version": raw.version,
        },
    )
