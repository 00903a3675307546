"""Manual rollback of any pipeline's asset: its data root, its asset key, its own hours; the others untouched."""

import textwrap

import dagster as dg
import pytest

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.cli.main import main
from scalable_pipeline.pipelines.config import CONFIG_ENV
from scalable_pipeline.publishing.rollback_log import read_rollbacks
from scalable_pipeline.publishing.versioned_store import VersionedStore, dataset_parts

pytestmark = pytest.mark.slow  # every test first runs both pipelines' hours

PIPELINES = """
pipelines:
  - name: scalable_data_processing
    key_prefix: []
    start: "2026-01-01-00:00"
  - name: eu_orders
    source: {kind: synthetic, scale: 0.5, seed: 7}
    start: "2026-01-02-00:00"
    scaling: {chunk_count: 2}
"""
HOUR = "2026-01-05-10:00"
BEFORE_EU = "2026-01-01-10:00"  # an hour of the main pipeline, before eu_orders' start


@pytest.fixture
def setup(tmp_path, monkeypatch, data_dir):
    """Two eu_orders runs of HOUR from different seeds: two good versions of each asset."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(PIPELINES))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    defs = build_definitions(path)
    with dg.DagsterInstance.ephemeral() as instance:
        job = defs.resolve_job_def("eu_orders")
        for seed in (7, 8):
            run_config = {"resources": {"eu_orders__source": {"config": {"scale": 0.5, "seed": seed}}}}
            assert job.execute_in_process(partition_key=HOUR, instance=instance, run_config=run_config).success
        yield defs, instance, VersionedStore(data_dir / "pipelines" / "eu_orders"), VersionedStore(data_dir)


def published_bytes(store: VersionedStore, partition: str = HOUR) -> tuple[str, bytes]:
    published = store.require_published("consolidated_output", partition)
    return published.version, b"".join(part.read_bytes() for part in dataset_parts(published.path))


def rollback(defs, instance, **config) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"set_published_version": {"config": {"asset": "consolidated_output", **config}}}}
    return defs.resolve_job_def("rollback_partition").execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False
    )


def test_rollback_sets_a_second_pipelines_hour_back(setup, data_dir):
    defs, instance, eu, main_store = setup
    first, second = eu.good_versions("consolidated_output", HOUR)[-2:]
    first_bytes = b"".join(part.read_bytes() for part in dataset_parts(eu.version("consolidated_output", HOUR, first).path))
    assert published_bytes(eu)[0] == second and published_bytes(eu)[1] != first_bytes  # two seeds, two results

    result = rollback(defs, instance, pipeline="eu_orders", partition=HOUR, version=first, reason="bad feed")

    assert result.success
    assert published_bytes(eu) == (first, first_bytes)
    [record] = read_rollbacks(eu.root)  # recorded in eu_orders' own log
    assert (record.kind, record.restored_version, record.replaced_version, record.reason) == ("manual", first, second, "bad feed")
    observed = instance.fetch_observations(dg.AssetKey(["eu_orders", "consolidated_output"]), limit=5).records
    assert [r.asset_observation.metadata["restored_version"].value for r in observed] == [first]
    # The main pipeline never ran that hour: nothing written, recorded or observed on its side.
    assert main_store.published("consolidated_output", HOUR) is None and read_rollbacks(data_dir) == []
    assert instance.fetch_observations(dg.AssetKey("consolidated_output"), limit=5).records == []
    assert defs.load_asset_value(["eu_orders", "consolidated_output"], partition_key=HOUR, instance=instance).equals(
        eu.read_published_table("consolidated_output", HOUR)
    )


@pytest.mark.parametrize(
    "config, words",
    [
        ({"pipeline": "eu_orders", "partition": BEFORE_EU}, "is not an hourly partition of eu_orders"),
        (
            {"pipeline": "us_orders", "partition": HOUR},
            "unknown pipeline 'us_orders'; one of scalable_data_processing, eu_orders",
        ),
        ({"partition": HOUR}, "no published-good version"),  # default: the main pipeline, which has none for HOUR
    ],
)
def test_a_rollback_outside_the_pipeline_changes_nothing(setup, config, words):
    defs, instance, eu, _ = setup
    before = published_bytes(eu)
    version = eu.good_versions("consolidated_output", HOUR)[0]

    result = rollback(defs, instance, version=version, **config)

    assert not result.success
    message = result.failure_data_for_node("set_published_version").error.message
    assert "Nothing changed" in message and words in message
    assert published_bytes(eu) == before and read_rollbacks(eu.root) == []


def test_the_command_line_rolls_back_a_pipeline_by_name(setup, capsys):
    _, _, eu, main_store = setup
    first, second = eu.good_versions("consolidated_output", HOUR)[-2:]

    assert main(["rollback", "consolidated_output", HOUR, "--pipeline", "eu_orders"]) == 0  # the version before

    assert capsys.readouterr().out.startswith(f"eu_orders/consolidated_output {HOUR}: readers now get {first}")
    assert eu.require_published("consolidated_output", HOUR).version == first
    assert [r.replaced_version for r in read_rollbacks(eu.root)] == [second]
    assert main_store.published("consolidated_output", HOUR) is None

    assert main(["rollback", "consolidated_output", BEFORE_EU, "--pipeline", "eu_orders"]) == 2
    assert "is not an hourly partition of eu_orders" in capsys.readouterr().err
    assert main(["rollback", "consolidated_output", HOUR, "--pipeline", "us_orders"]) == 2
    assert "unknown pipeline 'us_orders'" in capsys.readouterr().err
    assert eu.require_published("consolidated_output", HOUR).version == first
