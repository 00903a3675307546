"""Processing-time estimates from the throughput measured by earlier runs."""

from statistics import median

import dagster as dg

HISTORY_RUNS = 10
THROUGHPUT_KEY = "records_per_second"


def measured_throughputs(instance: dg.DagsterInstance, limit: int = HISTORY_RUNS) -> list[float]:
    """records/s of the last ``limit`` materializations of processed_chunks, newest first."""
    records = instance.fetch_materializations(dg.AssetKey("processed_chunks"), limit=limit).records
    values = []
    for record in records:
        value = record.asset_materialization.metadata.get(THROUGHPUT_KEY)
        if value is not None and value.value:
            values.append(float(value.value))
    return values


def estimated_processing_seconds(instance: dg.DagsterInstance, total_records: int) -> float | None:
    """Seconds to process ``total_records`` at the median measured throughput; None before any history."""
    throughputs = measured_throughputs(instance)
    if not throughputs:
        return None
    return round(total_records / median(throughputs), 3)
