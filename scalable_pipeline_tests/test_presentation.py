"""What the UI shows of a materialized hour: every metadata key documented with its unit in the asset's
Markdown description, the chunk plan as a table, and end-to-end throughput named apart from chunk compute."""

import re
from statistics import median

import dagster as dg
import pytest

from scalable_pipeline.definitions import defs
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.conftest import PIPELINE_ASSETS, materialization_metadata, materialize_hour


def documented_keys(asset: str) -> dict[str, str]:
    """The metadata table of the asset's description: key -> unit."""
    description = defs.get_assets_def(asset).descriptions_by_key[dg.AssetKey(asset)]
    return dict(re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", description, re.MULTILINE))


@pytest.mark.slow
def test_metadata_is_documented_the_plan_is_a_table_and_throughputs_are_named_apart(tmp_path, data_dir):
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        first = materialize_hour("2026-01-05-03:00", instance)
        second = materialize_hour("2026-01-05-04:00", instance)
        [run] = instance.get_run_records(dg.RunsFilter(run_ids=[first.run_id]))

    for asset in PIPELINE_ASSETS:
        keys = documented_keys(asset)
        assert set(materialization_metadata(second, asset)) <= set(keys), asset
        assert all(unit.strip() for unit in keys.values())
    assert "not end to end" in defs.get_assets_def("processed_chunks").descriptions_by_key[dg.AssetKey("processed_chunks")]

    plan = VersionedStore(data_dir).read_published_document("chunk_partitions", "2026-01-05-04:00")
    table = materialization_metadata(second, "chunk_partitions")["chunk_plan"]
    assert [(r.data["chunk"], r.data["start_row"], r.data["stop_row"], r.data["rows"]) for r in table.records] == [
        (c["index"], c["start_row"], c["stop_row"], c["stop_row"] - c["start_row"]) for c in plan["chunks"]
    ]

    first_output = materialization_metadata(first, "consolidated_output")
    raw = materialization_metadata(first, "raw_volume")
    assert raw["estimated_processing_seconds"] is None  # no finished run before the first
    end_to_end = first_output["raw_records"] / (run.end_time - run.start_time)
    assert (
        0
        < first_output["end_to_end_records_per_second"]
        < materialization_metadata(first, "processed_chunks")["records_per_second"]
    )
    records = materialization_metadata(second, "raw_volume")["total_records"]
    assert materialization_metadata(second, "raw_volume")["estimated_processing_seconds"] == round(
        records / median([end_to_end]), 3
    )
