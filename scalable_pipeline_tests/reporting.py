"""Hours for the report and metrics tests: two published hours and one whose ERROR gate failed."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline_tests.conftest import materialize_hour

PUBLISHED_HOURS = ("2026-01-05-02:00", "2026-01-05-03:00")
FAILED_HOUR = "2026-01-05-04:00"  # invalid_ratio fails at threshold 0: processed_chunks is rolled back
HOURS = ("2026-01-05-01:00", *PUBLISHED_HOURS, FAILED_HOUR)  # 01:00 never ran


def materialize_report_hours(instance: dg.DagsterInstance) -> None:
    for hour in PUBLISHED_HOURS:
        assert materialize_hour(hour, instance).success
    failed = materialize_hour(FAILED_HOUR, instance, raise_on_error=False, quality=QualityResource(max_invalid_ratio=0.0))
    assert not failed.success


def reported_instance(tmp_path: Path) -> Iterator[tuple[dg.DagsterInstance, Path]]:
    """A persistent instance and data root holding ``HOURS`` (for a module-scoped fixture)."""
    home, data_dir = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test(temp_dir=str(home)) as instance:
        patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(data_dir))
        materialize_report_hours(instance)
        yield instance, data_dir
