"""raw_volume: the hour's raw records as the source delivered them, stored as Parquet."""

from functools import partial

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from scalable_pipeline.core.asset_keys import StepContext
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.processing.descriptions import RAW_VOLUME, end_to_end_estimate
from scalable_pipeline.processing.hours import each_hour, step_hours
from scalable_pipeline.processing.io_manager import stored_metadata
from scalable_pipeline.processing.order_rules import schema_problems
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.quality.gate_history import gate_threshold
from scalable_pipeline.quality.gate_results import audit_then_publish, gate_spec
from scalable_pipeline.quality.gates import all_true
from scalable_pipeline.quality.thresholds import explained
from scalable_pipeline.quality.volume_drop import DEFAULT_MAX_DROP, VOLUME_DROP_GATE, volume_drop
from scalable_pipeline.scaling.history import estimated_processing_seconds, pipeline_key_prefix
from scalable_pipeline.sources.circuit_breaker_store import CircuitOpenError
from scalable_pipeline.sources.landing_files import LandingFileError
from scalable_pipeline.sources.quarantine import quarantine_file
from scalable_pipeline.sources.synthetic_orders import is_peak_hour

# Row groups of the raw table. Chunk steps read whole row groups (read_row_range) after parsing the footer,
# whose size grows with the number of groups: measured at 100M records, groups of 10,000 cost about 140 ms
# of footer per step and 50,000 about 20 ms, while at 11M records a 100,000-row chunk reads as fast either way.
RAW_ROW_GROUP_SIZE = 50_000


class StagingError(RuntimeError):
    """Writing the staged raw version failed: the data root's problem, not an outage of the source."""


def rejected_input(data_store: DataStoreResource, partition: str, error: LandingFileError) -> dg.Failure:
    """Quarantine why (and, if it is a regular landing file, a copy); say which file, partition and rule."""
    kept = quarantine_file(data_store.root, "raw_volume", partition, error.path, error.rule, str(error), error.copy_from)
    return dg.Failure(
        description=(
            f"raw_volume partition {partition}: {error}. "
            + (f"A copy of the file is quarantined at {kept.copy}. " if kept.copy else f"Recorded at {kept.reason}. ")
            + "Nothing was published: readers keep the last good version of this hour; other hours are unaffected."
        ),
        metadata={"file": str(error.path), "rule": error.rule, "quarantined": str(kept.copy or "")},
        allow_retries=False,
    )


CHECKS = [
    gate_spec("raw_volume", "raw_schema", "Every column of the order record, with its type."),
    gate_spec(
        "raw_volume",
        VOLUME_DROP_GATE,
        "An hour that held records before is not replaced by an empty or collapsed one (override: quality.allow_volume_drop).",
    ),
]


def build_raw_volume(pipeline: PipelineBuild) -> dg.AssetsDefinition:
    @pipeline.asset(
        required_resource_keys=pipeline.resource_keys("source", "data_store", "circuit_breaker", "faults", "quality"),
        kinds={"pandas", "parquet"},
        description=RAW_VOLUME,
        check_specs=pipeline.check_specs(CHECKS),
    )
    def raw_volume(context: dg.AssetExecutionContext):
        """Fetch each hour from the ``source`` resource (behind its circuit breaker) and keep it as delivered."""
        store = pipeline.resources(context).data_store.store()
        yield from each_hour(
            context, pipeline.key("raw_volume"), step_hours(context), fetch_hour, stored_metadata=partial(stored_metadata, store)
        )

    def fetch_hour(context: StepContext, _hour: str):
        """The hour goes block by block from the source into the staged Parquet version: no step holds it whole."""
        resources = pipeline.resources(context)
        source, data_store, quality = resources.source, resources.data_store, resources.quality
        circuit_breaker, faults = resources.circuit_breaker, resources.faults
        partition = data_store.hold_partition(context, context.partition_key)
        hour_start = pd.Timestamp(context.partition_time_window.start)
        store = data_store.store()

        with store.stage_table("raw_volume", partition, context.run.run_id, row_group_size=RAW_ROW_GROUP_SIZE) as stage:

            def fetch() -> tuple[int, list[str]]:
                """Write the hour's blocks as they come; the record count and schema problems of them all."""
                faults.before_source_fetch()
                records, problems = 0, []
                for block in source.iter_hour(hour_start):
                    problems += [problem for problem in schema_problems(block) if problem not in problems]
                    try:
                        stage.write(block)
                    except OSError as error:  # the data root's disk, not the source: no outage of the source
                        raise StagingError(
                            f"raw_volume partition {partition}: writing the staged version failed: {error}"
                        ) from error
                    records += len(block)
                return records, problems

            try:
                # The whole read is one call. Only outages (OSError) count towards opening the circuit, wherever
                # in the hour they happen; a bad file is bad data, not an outage. On any failure the staged file goes.
                records, problems = circuit_breaker.call("source", data_store, fetch)
            except CircuitOpenError as error:
                raise dg.Failure(description=str(error), allow_retries=False) from error
            except LandingFileError as error:
                raise rejected_input(data_store, partition, error) from error
            staged = stage.commit()
        previous = store.published("raw_volume", partition)
        max_drop = gate_threshold(context, quality, "raw_volume", VOLUME_DROP_GATE, DEFAULT_MAX_DROP)
        drop = volume_drop(
            records, pq.read_metadata(previous.path).num_rows if previous else None, max_drop.value, quality.allow_volume_drop
        )
        verdicts = [all_true("raw_schema", problems, "order record schema"), explained(drop, max_drop)]
        published = yield from audit_then_publish(context, store, staged, verdicts, quality)
        yield dg.Output(
            published,
            metadata={
                "total_records": records,
                "peak_hour": is_peak_hour(hour_start),
                "estimated_processing_time": estimated_processing_seconds(
                    context.instance, records, pipeline_key_prefix(context)
                ),
                "estimated_processing_seconds": end_to_end_estimate(context.instance, records, pipeline_key_prefix(context)),
                "source": source.describe(),
                "raw_digest": staged.raw_digest,
                **resources.time_rule_metadata,
            },
        )

    return raw_volume
