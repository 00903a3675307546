"""consolidated_output: the hour's valid, de-duplicated records as one table, sorted by order_id."""

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from scalable_pipeline.assets.gate_history import volume_gate
from scalable_pipeline.assets.gate_results import LINEAGE_GATE_DESCRIPTION, audit_then_publish, gate_spec, lineage_gate
from scalable_pipeline.constants import GROUP_NAME, HOURLY_PARTITIONS, ORDER_COLUMNS
from scalable_pipeline.decisions.gates import all_true
from scalable_pipeline.decisions.order_rules import REASON_COLUMN, reason_counts
from scalable_pipeline.decisions.volume_anomaly import VOLUME_ANOMALY_GATE
from scalable_pipeline.resources.data_store import DataStoreResource
from scalable_pipeline.resources.quality import QualityResource
from scalable_pipeline.storage.versioned_store import StoredVersion

ASSET = "consolidated_output"
REGION_TOTALS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("region", "string"),
        dg.TableColumn("orders", "int"),
        dg.TableColumn("revenue", "float"),
    ]
)


def region_totals(valid: pd.DataFrame) -> pd.DataFrame:
    totals = valid.groupby("region", observed=True).agg(orders=("order_id", "size"), revenue=("amount", "sum"))
    return totals.reset_index().sort_values("region", ignore_index=True)


def reconciliation_problems(raw_records: int, valid: int, invalid: int, duplicates: int) -> list[str]:
    if raw_records == valid + invalid + duplicates:
        return []
    return [f"raw {raw_records} != valid {valid} + invalid {invalid} + duplicates {duplicates}"]


def repeated_order_ids(table: pd.DataFrame) -> list[str]:
    repeated = table.loc[table["order_id"].duplicated(), "order_id"].unique()
    return [f"order_id {order_id} appears more than once" for order_id in repeated[:10]]


@dg.asset(
    partitions_def=HOURLY_PARTITIONS,
    group_name=GROUP_NAME,
    io_manager_key="versioned_store_io_manager",
    kinds={"pandas", "parquet"},
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
    """Keep the valid rows of the processed hour, in the raw record's columns, sorted by order_id."""
    partition = data_store.hold_partition(context, context.partition_key)
    processed = pd.read_parquet(processed_chunks.path)
    reasons = processed[REASON_COLUMN]
    table = processed.loc[reasons.isna(), ORDER_COLUMNS].sort_values("order_id", ignore_index=True)
    _, invalid, duplicates = reason_counts(reasons)
    store = data_store.store()
    raw_records = pq.read_metadata(raw_volume.path).num_rows  # the raw version of this run's lineage
    staged = store.write_table(ASSET, partition, table, context.run.run_id, processed_chunks.raw_digest)
    totals = region_totals(table)
    metadata = {  # built before publishing: once published, nothing is left to fail before the Output
        "raw_records": raw_records,
        "duplicates": duplicates,
        "invalid": invalid,
        "valid": len(table),
        "revenue": round(float(table["amount"].sum()), 2),
        "region_totals": dg.MetadataValue.table(
            records=[
                dg.TableRecord({"region": str(r.region), "orders": int(r.orders), "revenue": round(float(r.revenue), 2)})
                for r in totals.itertuples()
            ],
            schema=REGION_TOTALS_SCHEMA,
        ),
        "dagster/row_count": len(table),
    }
    yield from audit_then_publish(
        context,
        store,
        staged,
        [
            all_true("reconciliation", reconciliation_problems(raw_records, len(table), invalid, duplicates), "reconciliation"),
            all_true("unique_order_id", repeated_order_ids(table), "unique order_id"),
            lineage_gate("output_lineage", store, staged),
            volume_gate(context, quality, ASSET, len(table)),
        ],
        quality,
    )
    data_store.release_partition(context, partition)  # the run's last write for the hour
    yield dg.Output(staged, metadata=metadata)
