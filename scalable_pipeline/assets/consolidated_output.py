"""consolidated_output: the hour's valid, de-duplicated records as one table, sorted by order_id."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scalable_pipeline.assets.gate_history import volume_gate
from scalable_pipeline.assets.gate_results import LINEAGE_GATE_DESCRIPTION, audit_then_publish, gate_spec, lineage_gate
from scalable_pipeline.assets.presentation import CONSOLIDATED_OUTPUT, end_to_end_records_per_second
from scalable_pipeline.assets.processed_chunks import VALID_VIEW
from scalable_pipeline.constants import GROUP_NAME, HOURLY_PARTITIONS
from scalable_pipeline.decisions.gates import all_true
from scalable_pipeline.decisions.order_rules import DUPLICATE, REASON_COLUMN
from scalable_pipeline.decisions.ranges import unique_ascending_problems
from scalable_pipeline.decisions.volume_anomaly import VOLUME_ANOMALY_GATE
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.quality import QualityResource
from scalable_pipeline.storage.versioned_store import StoredVersion, dataset_parts

ASSET = "consolidated_output"
REGION_TOTALS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("region", "string"),
        dg.TableColumn("orders", "int"),
        dg.TableColumn("revenue", "float"),
    ]
)


def add_region_totals(totals: dict[str, list[float]], valid: pa.Table) -> None:
    """Add the valid rows' orders and revenue per region into ``totals`` (region -> [orders, revenue])."""
    for row in valid.group_by("region").aggregate([("order_id", "count"), ("amount", "sum")]).to_pylist():
        orders, revenue = totals.setdefault(str(row["region"]), [0, 0.0])
        totals[str(row["region"])] = [orders + row["order_id_count"], revenue + (row["amount_sum"] or 0.0)]


def reconciliation_problems(raw_records: int, valid: int, invalid: int, duplicates: int) -> list[str]:
    if raw_records == valid + invalid + duplicates:
        return []
    return [f"raw {raw_records} != valid {valid} + invalid {invalid} + duplicates {duplicates}"]


@dg.asset(
    partitions_def=HOURLY_PARTITIONS,
    group_name=GROUP_NAME,
    io_manager_key="versioned_store_io_manager",
    kinds={"pandas", "parquet"},
    description=CONSOLIDATED_OUTPUT,
    check_specs=[
        gate_spec(ASSET, "reconciliation", "raw records = valid + invalid + duplicates (raw counted from the stored raw table)."),
        gate_spec(ASSET, "unique_order_id", "No order_id appears twice in the output."),
        gate_spec(ASSET, "output_lineage", LINEAGE_GATE_DESCRIPTION),
        gate_spec(ASSET, VOLUME_ANOMALY_GATE, "Valid records within the same hour's usual band (history of earlier days)."),
    ],
)
def consolidated_output(
    context: dg.AssetExecutionContext,
    raw_volume: StoredVersion,
    processed_chunks: StoredVersion,
    data_store: DataStoreResource,
    quality: QualityResource,
):
    """Keep the valid rows of the processed hour, in the raw record's columns, sorted by order_id.

    The valid rows are the processed version's ``valid`` parts (one per order_id range, written by the range
    steps): linked into this version, not copied. Counts, totals and the order check read a few columns of one
    part at a time: no step holds the hour.
    """
    partition = data_store.hold_partition(context, context.partition_key)
    store = data_store.store()
    raw_records = pq.read_metadata(raw_volume.path).num_rows  # the raw version of this run's lineage
    invalid = duplicates = 0
    for part in dataset_parts(processed_chunks.path):
        reasons = pq.read_table(part, columns=[REASON_COLUMN])[REASON_COLUMN]
        part_duplicates = pc.sum(pc.equal(reasons, DUPLICATE)).as_py() or 0
        duplicates += part_duplicates
        invalid += len(reasons) - reasons.null_count - part_duplicates
    stage = store.stage_dataset(ASSET, partition, context.run.run_id, processed_chunks.raw_digest)
    valid, revenue, last_id = 0, 0.0, None
    totals: dict[str, list[float]] = {}
    order_problems: list[str] = []
    for part in dataset_parts(processed_chunks.path, VALID_VIEW):
        kept = pq.read_table(part, columns=["order_id", "region", "amount"])
        ids = kept["order_id"].to_numpy()
        order_problems += unique_ascending_problems(ids, last_id)
        last_id = int(ids[-1]) if len(ids) else last_id
        valid += len(kept)
        revenue += pc.sum(kept["amount"]).as_py() or 0.0
        add_region_totals(totals, kept)
        stage.add_file(part)
    staged = stage.commit()
    metadata = {  # built before publishing: once published, nothing is left to fail before the Output
        "raw_records": raw_records,
        "duplicates": duplicates,
        "invalid": invalid,
        "valid": valid,
        "revenue": round(revenue, 2),
        "region_totals": dg.MetadataValue.table(
            records=[
                dg.TableRecord({"region": region, "orders": int(orders), "revenue": round(float(amount), 2)})
                for region, (orders, amount) in sorted(totals.items())
            ],
            schema=REGION_TOTALS_SCHEMA,
        ),
        "dagster/row_count": valid,
        "end_to_end_records_per_second": end_to_end_records_per_second(context.instance, context.run.run_id, raw_records),
    }
    yield from audit_then_publish(
        context,
        store,
        staged,
        [
            all_true("reconciliation", reconciliation_problems(raw_records, valid, invalid, duplicates), "reconciliation"),
            all_true("unique_order_id", order_problems, "unique order_id"),
            lineage_gate("output_lineage", store, staged),
            volume_gate(context, quality, ASSET, valid),
        ],
        quality,
    )
    data_store.release_partition(context, partition)  # the run's last write for the hour
    yield dg.Output(staged, metadata=metadata)
