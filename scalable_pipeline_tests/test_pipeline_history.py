"""Each pipeline plans from its own history: step overhead and throughput come from its own assets' runs."""

import textwrap
from statistics import median

import dagster as dg
import pytest

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.scaling.history import end_to_end_rates, measured_throughputs, step_overheads
from scalable_pipeline_tests.conftest import materialization_metadata, measured_step_overheads

PINNED = "cpu_usage_percent: 10, memory_usage_percent: 10, available_workers: 2, queue_length: 0"
TWO_PIPELINES = f"""
pipelines:
  - name: north
    source: {{kind: synthetic, seed: 1}}
    start: "2026-01-01-00:00"
    scaling: {{chunk_count: 3, {PINNED}}}
  - name: south
    source: {{kind: synthetic, scale: 0.5, seed: 2}}
    start: "2026-01-01-00:00"
    scaling: {{chunk_count: 2, {PINNED}}}
"""
FIRST, SECOND = "2026-01-05-10:00", "2026-01-05-03:00"
NO_HISTORY = {"throughput_source": "default (no history)", "step_overhead_source": "default for in_process (no history)"}


def plan_sources(result: dg.ExecuteInProcessResult) -> dict:
    plan = materialization_metadata(result, "chunk_partitions")
    return {key: plan[key] for key in NO_HISTORY}


@pytest.mark.slow
def test_two_pipelines_histories_do_not_mix(tmp_path, instance):
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(TWO_PIPELINES))
    defs = build_definitions(path)

    def run(job: str, hour: str) -> dg.ExecuteInProcessResult:
        result = defs.resolve_job_def(job).execute_in_process(partition_key=hour, instance=instance)
        assert result.success
        return result

    north = run("north", FIRST)
    assert materialization_metadata(north, "chunk_partitions")["executor"] == "in_process"
    assert plan_sources(north) == NO_HISTORY
    south = run("south", FIRST)
    assert plan_sources(south) == NO_HISTORY  # north's run is not south's history

    # Each pipeline's history holds its own run only; the unprefixed pipeline never ran.
    rates = {
        name: materialization_metadata(result, "processed_chunks")["records_per_second"]
        for name, result in (("north", north), ("south", south))
    }
    overheads = {name: step_overheads(instance, result.run_id) for name, result in (("north", north), ("south", south))}
    assert (len(overheads["north"]), len(overheads["south"])) == (3, 2)  # its prefixed chunk steps count
    for name, result in (("north", north), ("south", south)):  # each run records its own steps' overhead
        recorded = materialization_metadata(result, "processed_chunks")
        assert (recorded["executor"], recorded["chunk_step_overhead_seconds"]) == ("in_process", median(overheads[name]))
    for name in ("north", "south"):
        assert measured_throughputs(instance, key_prefix=(name,)) == [rates[name]]
        assert measured_step_overheads(instance, "in_process", key_prefix=(name,)) == [pytest.approx(median(overheads[name]))]
    assert measured_throughputs(instance) == [] and measured_step_overheads(instance, "in_process") == []

    # The second hour of each plans from its own first run: one run of history, its own figures.
    for name in ("north", "south"):
        second = run(name, SECOND)
        plan = materialization_metadata(second, "chunk_partitions")
        assert plan["throughput_source"] == plan["step_overhead_source"] == "history: median of 1 run(s)"
        assert plan["throughput_records_per_second"] == rates[name]
        assert plan["step_overhead_seconds"] == round(median(overheads[name]), 4)
        records = materialization_metadata(second, "raw_volume")["total_records"]
        assert materialization_metadata(second, "raw_volume")["estimated_processing_time"] == round(records / rates[name], 3)
    assert len(measured_throughputs(instance, key_prefix=("north",))) == 2
    # End to end too: each pipeline's estimate uses its own outputs' runs only.
    for name in ("north", "south"):
        own = end_to_end_rates(instance, (name,))
        assert len(own) == 2 and own != end_to_end_rates(instance, ("south" if name == "north" else "north",))
    assert end_to_end_rates(instance) == []  # the unprefixed pipeline never ran
