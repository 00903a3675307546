"""Run storage on PostgreSQL (dagster-postgres): the pipeline's runs, checks and history live there.

Needs ``SCALABLE_PIPELINE_TEST_POSTGRES_URL`` (a server URL such as
``postgresql://postgres@127.0.0.1:5432/postgres``); the test creates and drops its own database.
"""

import os

import dagster as dg
import pytest

from scalable_pipeline_tests.conftest import OFF_PEAK_PARTITION, PEAK_PARTITION, materialization_metadata, materialize_hour
from scalable_pipeline_tests.postgres_database import connect, scratch_database

POSTGRES_URL = os.environ.get("SCALABLE_PIPELINE_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not POSTGRES_URL, reason="SCALABLE_PIPELINE_TEST_POSTGRES_URL is not set (PostgreSQL tests off)"),
]


@pytest.fixture
def postgres_database():
    with scratch_database(POSTGRES_URL, "scalable_pipeline_test") as url:
        yield url


def test_pipeline_runs_and_checkpoints_in_postgres(postgres_database):
    overrides = {"storage": {"postgres": {"postgres_url": postgres_database}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        first = materialize_hour(PEAK_PARTITION, instance)
        second = materialize_hour(OFF_PEAK_PARTITION, instance)
        assert first.success and second.success

        runs = instance.get_runs()
        assert {run.run_id for run in runs} == {first.run_id, second.run_id}
        record = instance.get_latest_materialization_event(dg.AssetKey("consolidated_output"))
        assert record.run_id == second.run_id
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("consolidated_output"), "reconciliation")]
        )
        assert next(iter(check.values())).run_id == second.run_id
        # The history kept in PostgreSQL feeds the next hour's processing-time estimate.
        assert materialization_metadata(second, "raw_volume")["estimated_processing_time"] > 0

    with connect(postgres_database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == 2
