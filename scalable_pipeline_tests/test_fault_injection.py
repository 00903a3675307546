"""Fault injection and failure isolation in process: retries, a chunk that keeps failing, slow chunks."""

import shutil

import dagster as dg
import pytest

from scalable_pipeline.assembly.project import scalable_data_processing_job
from scalable_pipeline.checkpoints.checkpoints import ChunkCheckpoints
from scalable_pipeline.events.retry import RetryLimits, retry_delay
from scalable_pipeline.faults.resource import FaultInjectionResource
from scalable_pipeline.faults.rules import FaultPlan, chunk_fault_fires
from scalable_pipeline.processing.chunk_steps import CHUNK_RETRY_POLICY
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.conftest import PEAK_PARTITION, materialization_metadata, materialize_hour


def test_fault_fires_only_for_chosen_chunks_attempts_and_runs():
    every = FaultPlan(fail_chunks=(1, 3))
    assert chunk_fault_fires(every, 1, 0, False) and chunk_fault_fires(every, 3, 5, False)
    assert not chunk_fault_fires(every, 2, 0, False)
    assert not chunk_fault_fires(every, 1, 0, True)  # re-executions recover by default
    assert chunk_fault_fires(FaultPlan((1,), fail_reexecutions=True), 1, 0, True)
    transient = FaultPlan((1,), fail_first_attempts=1)
    assert chunk_fault_fires(transient, 1, 0, False) and not chunk_fault_fires(transient, 1, 1, False)
    assert not chunk_fault_fires(FaultPlan(), 0, 0, False)  # off by default


def test_retry_delay_backs_off_exponentially_with_bounded_jitter():
    limits = RetryLimits(delay_seconds=1.0, backoff_factor=2.0, max_delay_seconds=3.0, jitter_fraction=0.5)
    assert [retry_delay(n, limits, 0.5) for n in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert retry_delay(1, limits, 0.0) == 1.0 and retry_delay(1, limits, 0.999999) == pytest.approx(3.0, abs=1e-3)
    assert retry_delay(0, RetryLimits(delay_seconds=0.0), 0.9) == 0.0


def test_chunk_steps_retry_through_dagsters_retry_policy():
    processed = scalable_data_processing_job().graph.node_named("processed_chunks").definition
    policy = processed.node_named("process_chunk").definition.retry_policy
    assert policy is CHUNK_RETRY_POLICY and policy.max_retries == 2
    assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter == dg.Jitter.PLUS_MINUS


@pytest.mark.slow
def test_transient_fault_succeeds_on_retry(instance, data_dir):
    clean = materialize_hour(PEAK_PARTITION, instance)
    expected = VersionedStore(data_dir).read_published_table("consolidated_output", PEAK_PARTITION)
    shutil.rmtree(ChunkCheckpoints(data_dir).root)  # otherwise the second run reuses every chunk and starts no step
    faults = FaultInjectionResource(fail_chunks=[1], fail_first_attempts=1)
    result = materialize_hour(PEAK_PARTITION, instance, faults=faults)
    assert clean.success and result.success
    retries = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries == ["processed_chunks.process_chunk[chunk_00001]"]
    published = VersionedStore(data_dir).read_published_table("consolidated_output", PEAK_PARTITION)
    assert published.equals(expected)


def test_chunk_that_keeps_failing_isolates_siblings_and_blocks_publishing(instance, data_dir):
    faults = FaultInjectionResource(fail_chunks=[2])
    result = materialize_hour(PEAK_PARTITION, instance, raise_on_error=False, faults=faults)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failures] == ["processed_chunks.process_chunk[chunk_00002]"]
    message = failures[0].step_failure_data.user_failure_data.description
    assert "chunk 2" in message and "after 3 attempt(s)" in message and "Re-execute > From failure" in message
    succeeded = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert {f"processed_chunks.process_chunk[chunk_0000{i}]" for i in (0, 1, 3)} <= succeeded
    assert len(list(ChunkCheckpoints(data_dir).root.glob("*/*/chunk-*.json"))) == 3
    store = VersionedStore(data_dir)
    assert store.published("processed_chunks", PEAK_PARTITION) is None
    assert store.published("consolidated_output", PEAK_PARTITION) is None


@pytest.mark.slow
def test_new_run_reuses_chunks_of_the_same_plan(instance):
    first = materialize_hour(PEAK_PARTITION, instance, raise_on_error=False, faults=FaultInjectionResource(fail_chunks=[0]))
    assert not first.success
    second = materialize_hour(PEAK_PARTITION, instance)
    metadata = materialization_metadata(second, "processed_chunks")
    assert (metadata["chunks"], metadata["chunks_reused"]) == (4, 3)
    chunk_steps = [e.step_key for e in second.get_step_success_events() if ".process_chunk[" in e.step_key]
    assert chunk_steps == ["processed_chunks.process_chunk[chunk_00000]"]  # reused chunks start no step
    assert (
        materialization_metadata(first, "chunk_partitions")["plan_fingerprint"]
        == materialization_metadata(second, "chunk_partitions")["plan_fingerprint"]
    )


def test_slow_fault_delays_the_chunk_and_still_succeeds(instance):
    result = materialize_hour(
        PEAK_PARTITION, instance, faults=FaultInjectionResource(fail_chunks=[3], mode="slow", slow_seconds=0.5)
    )
    assert result.success
    chunk_seconds = {
        e.step_key: e.event_specific_data.duration_ms / 1000
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_SUCCESS
    }
    assert chunk_seconds["processed_chunks.process_chunk[chunk_00003]"] >= 0.5
