import dagster as dg
import pytest

from scalable_pipeline.definitions import build_resources, defs
from scalable_pipeline.events.webhook import WEBHOOK_ENV
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline_tests.webhook_receiver import Receiver

PEAK_PARTITION = "2026-01-05-10:00"
OFF_PEAK_PARTITION = "2026-01-05-03:00"
PIPELINE_ASSETS = ["raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Every test gets its own data root."""
    root = tmp_path / "data"
    monkeypatch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(root))
    return root


@pytest.fixture
def instance():
    """An in-memory instance: fast (no SQLite fsync per event); persistence tests make their own."""
    with dg.DagsterInstance.ephemeral() as test_instance:
        yield test_instance


@pytest.fixture
def receiver(monkeypatch):
    """A local webhook that the alert sensors post to (``$SCALABLE_PIPELINE_ALERT_WEBHOOK``)."""
    server = Receiver()
    monkeypatch.setenv(WEBHOOK_ENV, server.url)
    yield server
    server.close()


def pipeline_assets():
    return [defs.get_assets_def(key) for key in PIPELINE_ASSETS]


def materialize_hour(partition_key, instance, raise_on_error=True, **resource_overrides):
    """Materialize the four pipeline assets for one hour, in process."""
    resources = {**build_resources(), "scaling": ScalingResource(chunk_count=4), **resource_overrides}
    return dg.materialize(
        pipeline_assets(), partition_key=partition_key, resources=resources, instance=instance, raise_on_error=raise_on_error
    )


def materialization_metadata(result, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset]
    assert len(events) == 1, f"expected one materialization of {asset}, got {len(events)}"
    return {key: value.value for key, value in events[0].materialization.metadata.items()}
