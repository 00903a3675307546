"""consolidated_output: the hour's valid, de-duplicated records as one table, sorted by order_id."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.processing.chunk_steps import VALID_VIEW
from scalable_pipeline.processing.descriptions import CONSOLIDATED_OUTPUT, end_to_end_records_per_second
from scalable_pipeline.processing.hours import HourVersions, each_hour, left_out_upstream, step_hours
from scalable_pipeline.processing.io_manager import stored_metadata
from scalable_pipeline.processing.order_rules import DUPLICATE, REASON_COLUMN
from scalable_pipeline.processing.ranges import unique_ascending_problems
from scalable_pipeline.publishing.versioned_store import StoredVersion, dataset_parts
from scalable_pipeline.quality.gate_history import volume_gate
from scalable_pipeline.quality.gate_results import LINEAGE_GATE_DESCRIPTION, audit_then_publish, gate_spec, lineage_gate
from scalable_pipeline.quality.gates import all_true
from scalable_pipeline.quality.volume_anomaly import VOLUME_ANOMALY_GATE

ASSET = "consolidated_output"
REGION_TOTALS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("region", "string"),
        dg.TableColumn("orders", "int"),
        dg.TableColumn("revenue", "float"),
    ]
)


@dataclass(frozen=True)
class ValidPart:
    """What the output's gates and metadata need from one valid part (read from the part itself)."""

    path: Path
    rows: int
    revenue: float
    region_totals: dict[str, tuple[int, float]]
    first_id: int | None
    last_id: int | None
    order_problems: list[str]


def text_totals(column: pa.ChunkedArray, weights: np.ndarray | None = None) -> dict[str | None, tuple[int, float]]:
    """Rows and the sum of ``weights`` per value of a text column read as a dictionary (nulls under None)."""
    array = column.unify_dictionaries().combine_chunks()
    names = [*array.dictionary.to_pylist(), None]
    codes = array.indices.fill_null(len(names) - 1).to_numpy()
    counts = np.bincount(codes, minlength=len(names))
    sums = np.bincount(codes, weights=weights, minlength=len(names)) if weights is not None else np.zeros(len(names))
    return {name: (int(count), float(total)) for name, count, total in zip(names, counts, sums, strict=True) if count}


def summarize_valid(path: Path) -> ValidPart:
    kept = pq.read_table(path, columns=["order_id", "region", "amount"], read_dictionary=["region"])
    ids, amounts = kept["order_id"].to_numpy(), kept["amount"].to_numpy()
    return ValidPart(
        path=path,
        rows=len(kept),
        revenue=float(amounts.sum()),
        region_totals={str(region): totals for region, totals in text_totals(kept["region"], amounts).items()},
        first_id=int(ids[0]) if len(ids) else None,
        last_id=int(ids[-1]) if len(ids) else None,
        order_problems=unique_ascending_problems(ids, None),
    )


def combine_valid_parts(parts: list[ValidPart]) -> tuple[int, float, dict[str, list[float]], list[str]]:
    """Rows, revenue, region totals (region -> [orders, revenue]) and order problems of the parts in order:
    ids ascend within each part and from each part to the next."""
    valid, revenue, last_id = 0, 0.0, None
    totals: dict[str, list[float]] = {}
    order_problems: list[str] = []
    for part in parts:
        if part.first_id is not None:
            order_problems += unique_ascending_problems(np.array([part.first_id]), last_id) + part.order_problems
            last_id = part.last_id
        valid += part.rows
        revenue += part.revenue
        for region, (orders, amount) in part.region_totals.items():
            before = totals.setdefault(region, [0, 0.0])
            totals[region] = [before[0] + orders, before[1] + amount]
    return valid, revenue, totals, order_problems


def count_rejected(path: Path) -> tuple[int, int]:
    """(duplicates, invalid) rows of one processed part, from its rejection_reason column."""
    reasons = text_totals(pq.read_table(path, columns=[REASON_COLUMN], read_dictionary=[REASON_COLUMN])[REASON_COLUMN])
    duplicates = reasons.get(DUPLICATE, (0, 0.0))[0]
    return duplicates, sum(rows for reason, (rows, _) in reasons.items() if reason is not None) - duplicates


def reconciliation_problems(raw_records: int, valid: int, invalid: int, duplicates: int) -> list[str]:
    if raw_records == valid + invalid + duplicates:
        return []
    return [f"raw {raw_records} != valid {valid} + invalid {invalid} + duplicates {duplicates}"]


CHECKS = [
    gate_spec(ASSET, "reconciliation", "raw records = valid + invalid + duplicates (raw counted from the stored raw table)."),
    gate_spec(ASSET, "unique_order_id", "No order_id appears twice in the output."),
    gate_spec(ASSET, "output_lineage", LINEAGE_GATE_DESCRIPTION),
    gate_spec(ASSET, VOLUME_ANOMALY_GATE, "Valid records within the same hour's usual band (history of earlier days)."),
]


def build_consolidated_output(pipeline: PipelineBuild) -> dg.AssetsDefinition:
    @pipeline.asset(
        ins=["raw_volume", "processed_chunks"],
        required_resource_keys=pipeline.resource_keys("data_store", "quality"),
        kinds={"pandas", "parquet"},
        description=CONSOLIDATED_OUTPUT,
        check_specs=pipeline.check_specs(CHECKS),
        output_required=False,  # a range materializes hour by hour (hours.each_hour)
    )
    def consolidated_output(context: dg.AssetExecutionContext, raw_volume: HourVersions, processed_chunks: HourVersions):
        """Keep the valid rows of each processed hour, in the raw record's columns, sorted by order_id."""
        store = pipeline.resources(context).data_store.store()
        hours = step_hours(context)
        yield from each_hour(
            context,
            pipeline.key(ASSET),
            hours,
            lambda hour_context, hour: consolidate_hour(hour_context, raw_volume[hour], processed_chunks[hour]),
            missing={
                **left_out_upstream(hours, raw_volume, "raw_volume"),
                **left_out_upstream(hours, processed_chunks, "processed_chunks"),
            },
            stored_metadata=partial(stored_metadata, store),
            materialize_each=True,
        )

    def consolidate_hour(context: StepContext, raw_volume: StoredVersion, processed_chunks: StoredVersion):
        """The valid rows are the processed version's ``valid`` parts (one per order_id range, written by the range
        steps): linked into this version, not copied. Counts, totals and the order check read a few columns of one
        part at a time: no step holds the hour.
        """
        resources = pipeline.resources(context)
        data_store, quality = resources.data_store, resources.quality
        partition = data_store.hold_partition(context, context.partition_key)
        store = data_store.store()
        raw_records = pq.read_metadata(raw_volume.path).num_rows  # the raw version of this run's lineage
        with ThreadPoolExecutor() as pool:  # one part per thread: Parquet decoding and Arrow kernels release the GIL
            rejected = list(pool.map(count_rejected, dataset_parts(processed_chunks.path)))
            parts = list(pool.map(summarize_valid, dataset_parts(processed_chunks.path, VALID_VIEW)))
        duplicates, invalid = sum(d for d, _ in rejected), sum(i for _, i in rejected)
        stage = store.stage_dataset(ASSET, partition, context.run.run_id, processed_chunks.raw_digest)
        valid, revenue, totals, order_problems = combine_valid_parts(parts)
        for part in parts:
            stage.add_file(part.path)
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
            **resources.time_rule_metadata,
        }
        published = yield from audit_then_publish(
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
        yield dg.Output(published, metadata=metadata)

    return consolidated_output
