"""Recovery drills across the process boundary: the multiprocess executor on a persistent instance.

A failed chunk (raised or killed) is re-executed from failure and the hour published is identical to
a clean run; a new run after a crash of the whole run reuses every finished chunk.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from scalable_pipeline.assembly.project import scalable_data_processing_job
from scalable_pipeline.checkpoints.checkpoints import ChunkCheckpoints
from scalable_pipeline.core.atomic import read_json
from scalable_pipeline.processing.chunk_plan import ChunkPlan
from scalable_pipeline.publishing.lease_rules import BUSY, HOLD, TAKE_OVER, lease_decision
from scalable_pipeline.publishing.partition_lease import PartitionLeases
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline.sources.resource import SyntheticOrderSource
from scalable_pipeline_tests import drills

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean_tables(tmp_path_factory):
    """The hour as a clean in-process run publishes it (same plan as the drills)."""
    data_dir = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(data_dir))
        resources = {"scaling": ScalingResource(chunk_count=drills.CHUNKS), "source": SyntheticOrderSource(scale=drills.SCALE)}
        clean = scalable_data_processing_job().execute_in_process(
            partition_key=drills.PARTITION, resources=resources, instance=instance
        )
        assert clean.success
        return drills.published_tables(data_dir)


@pytest.fixture
def home(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    return tmp_path / "dagster_home"


def assert_same_tables(data_dir, clean_tables):
    for asset, table in drills.published_tables(data_dir).items():
        pd.testing.assert_frame_equal(table, clean_tables[asset], obj=asset)


def finished_chunks(data_dir) -> int:
    return len(list((ChunkCheckpoints(data_dir).root).glob("*/*/chunk-*.json")))


def finished_ranges(data_dir) -> set[int]:
    return {int(path.stem.split("-")[1]) for path in ChunkCheckpoints(data_dir).root.glob("*/*/range-*[0-9].json")}


def published_plan(data_dir) -> ChunkPlan:
    return ChunkPlan.from_json(
        read_json(Path(drills.VersionedStore(data_dir).published("chunk_partitions", drills.PARTITION).path))
    )


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_reexecution_from_failure_reruns_only_the_failed_chunk(mode, home, data_dir, clean_tables):
    # A process per step: the ``kill`` fault kills the chunk's step process, not the run.
    drills.run(home, data_dir, drills.run_config({"fail_chunks": [2], "mode": mode}, mode="multiprocess"))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        failed = drills.latest_run(instance)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        failures = drills.step_events(instance, failed.run_id, dg.DagsterEventType.STEP_FAILURE)
        assert [event.step_key for event in failures] == ["processed_chunks.process_chunk[chunk_00002]"]
        if mode == "raise":  # the step's own message names the chunk and how to resume
            message = failures[0].step_failure_data.user_failure_data.description
            assert "chunk 2" in message and "from_failure" in message and "new run" in message
        assert finished_chunks(data_dir) == drills.CHUNKS - 1  # the siblings finished and checkpointed
        assert drills.VersionedStore(data_dir).published("consolidated_output", drills.PARTITION) is None

        assert drills.run(home, data_dir, drills.run_config(mode="multiprocess"), parent_run_id=failed.run_id) == 0
        resumed = drills.latest_run(instance)
        assert resumed.status == dg.DagsterRunStatus.SUCCESS and resumed.parent_run_id == failed.run_id
        assert drills.chunk_steps_started(instance, resumed.run_id) == ["processed_chunks.process_chunk[chunk_00002]"]
    assert_same_tables(data_dir, clean_tables)


def test_reexecution_recomputes_only_the_ranges_the_failed_chunk_feeds(home, data_dir, tmp_path):
    """Ids arriving in order (no resends): each range comes from one or two chunks, and the chunk steps
    process it once those are done, so a failed chunk holds back only its own ranges."""
    source = {"scale": 45, "duplicate_rate": 0.0}  # about 500,000 records: 10 raw row groups, 2.5 per chunk
    config = {"resources": {"scaling": {"config": {"chunk_count": 4}}, "source": {"config": source}}}
    failing = {**config["resources"], "faults": {"config": {"fail_chunks": [0], "mode": "raise"}}}
    drills.run(home, data_dir, {"resources": failing})
    plan = published_plan(data_dir)
    independent = {r for r in plan.inline_ranges if 0 not in plan.sources_of(r)}
    assert independent and finished_ranges(data_dir) == independent
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        failed = drills.latest_run(instance)
        assert drills.run(home, data_dir, config, parent_run_id=failed.run_id) == 0
        resumed = drills.latest_run(instance)
        assert resumed.status == dg.DagsterRunStatus.SUCCESS
        assert "processed_chunks.process_chunk[chunk_00000]" in started_steps(instance, resumed.run_id)
        # the ranges chunk 0 feeds are processed by its step; range steps only for ranges of many chunks
        range_steps = {int(key[-6:-1]) for key in started_steps(instance, resumed.run_id) if "process_range" in key}
        assert range_steps == set(range(plan.range_count)) - set(plan.inline_ranges)
        (output,) = [
            event.step_output_data.metadata
            for event in drills.step_events(instance, resumed.run_id, dg.DagsterEventType.STEP_OUTPUT)
            if event.step_key == "processed_chunks.process_chunk[chunk_00000]"
        ]
        fed_by_chunk_0 = [r for r in plan.inline_ranges if 0 in plan.sources_of(r)]
        assert output["ranges_processed"].value == len(fed_by_chunk_0) == plan.range_count - len(independent)
    clean_dir = tmp_path / "clean"
    drills.run(home, str(clean_dir), config, partition=drills.PARTITION)
    for asset in ("processed_chunks", "consolidated_output"):
        expected = drills.VersionedStore(clean_dir).read_published_table(asset, drills.PARTITION)
        pd.testing.assert_frame_equal(drills.VersionedStore(data_dir).read_published_table(asset, drills.PARTITION), expected)


def started_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [event.step_key for event in drills.step_events(instance, run_id, dg.DagsterEventType.STEP_START)]


def test_new_run_after_a_killed_run_reuses_finished_chunks(home, data_dir, clean_tables):
    # The whole run in one process, killed in chunk 2: chunks 0 and 1 are checkpointed, the run record stays STARTED.
    exit_code = drills.run(home, data_dir, drills.run_config({"fail_chunks": [2], "mode": "kill"}), in_process=True)
    assert exit_code == -9
    assert finished_chunks(data_dir) == 2
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        crashed = drills.latest_run(instance)
        assert crashed.status == dg.DagsterRunStatus.STARTED
        instance.report_run_failed(crashed)  # what run monitoring does for a run whose process died

        assert drills.run(home, data_dir, drills.run_config(), in_process=True) == 0
        fresh = drills.latest_run(instance)
        assert fresh.status == dg.DagsterRunStatus.SUCCESS and fresh.parent_run_id is None
        materialization = instance.fetch_materializations(dg.AssetKey("processed_chunks"), limit=1).records[0]
        metadata = materialization.asset_materialization.metadata
        assert metadata["chunks_reused"].value == 2 and metadata["chunks"].value == drills.CHUNKS
    assert_same_tables(data_dir, clean_tables)


def test_concurrent_runs_of_one_partition_do_not_interleave(home, data_dir, clean_tables, tmp_path):
    # The first run pauses in chunk 0 until released; the second starts while the first holds the partition's lease.
    release = tmp_path / "release"
    paused = drills.run_config({"fail_chunks": [0], "mode": "pause", "release_file": str(release), "slow_seconds": 600})
    first = drills.start_run(home, data_dir, paused, in_process=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        while not drills.chunk_steps_started_anywhere(instance) and first.is_alive():
            first.join(timeout=0.05)  # waits on the first run's progress, not on a clock
        assert first.is_alive(), "the first run ended before reaching its paused chunk"
        holder = drills.latest_run(instance)
        assert PartitionLeases(data_dir).holder(drills.PARTITION) == holder.run_id
        assert drills.run(home, data_dir, drills.run_config(), in_process=True) == 0
        release.touch()
        first.join(timeout=300)
        runs = {run.run_id: run for run in instance.get_runs()}
        loser = next(run for run_id, run in runs.items() if run_id != holder.run_id)
        assert runs[holder.run_id].status == dg.DagsterRunStatus.SUCCESS
        assert loser.status == dg.DagsterRunStatus.FAILURE
        loser_log = " ".join(str(record.dagster_event) for record in instance.all_logs(loser.run_id) if record.dagster_event)
        assert f"being written by run {holder.run_id}" in loser_log
    store = drills.VersionedStore(data_dir)
    for asset in ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output"):
        assert holder.run_id[:8] in store.published(asset, drills.PARTITION).version
    assert_same_tables(data_dir, clean_tables)


def test_lease_decision():
    assert lease_decision(None, "b", None) == HOLD and lease_decision("b", "b", None) == HOLD
    assert lease_decision("a", "b", "STARTED") == BUSY and lease_decision("a", "b", "CANCELING") == BUSY
    assert lease_decision("a", "b", "FAILURE") == TAKE_OVER and lease_decision("a", "b", None) == TAKE_OVER
