"""status, report and metrics of every pipeline of the pipelines file: each reads its own (key-prefixed)
assets, gates, runs and data root, and its figures equal what that pipeline stored."""

import html
import re
import textwrap
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.cli.main import main
from scalable_pipeline.cli.metrics import serve
from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.observing.read_model import PIPELINE_ASSETS as ASSETS
from scalable_pipeline.pipelines.config import CONFIG_ENV
from scalable_pipeline.publishing.rollback_log import read_rollbacks
from scalable_pipeline.publishing.versioned_store import VersionedStore

pytestmark = pytest.mark.slow  # the two pipelines' runs take seconds

EU = "eu_orders"
PINNED = "cpu_usage_percent: 10, memory_usage_percent: 10, available_workers: 2, queue_length: 0"
PIPELINES = f"""
pipelines:
  - name: {JOB_NAME}
    key_prefix: []
    scaling: {{chunk_count: 2, {PINNED}}}
  - name: {EU}
    source: {{kind: synthetic, scale: 0.5, seed: 7}}
    scaling: {{chunk_count: 3, {PINNED}}}
"""
BOTH = "2026-01-05-03:00"  # both pipelines published it
EU_FAILED = "2026-01-05-05:00"  # only eu_orders ran it; its invalid_ratio gate failed (threshold 0): rolled back


@dataclass(frozen=True)
class World:
    config: Path
    home: Path
    data_dir: Path
    run_ids: dict[tuple[str, str], str]  # (pipeline, hour) -> run id

    def store(self, pipeline: str) -> VersionedStore:
        return VersionedStore(self.data_dir if pipeline == JOB_NAME else self.data_dir / "pipelines" / pipeline)

    def enter(self, patch: pytest.MonkeyPatch) -> None:
        patch.setenv(CONFIG_ENV, str(self.config))
        patch.setenv("DAGSTER_HOME", str(self.home))
        patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(self.data_dir))

    def raw_records(self, pipeline: str, *hours: str) -> int:
        return sum(len(self.store(pipeline).read_published_table("raw_volume", hour)) for hour in hours)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_pipelines")
    config = tmp / "pipelines.yaml"
    config.write_text(textwrap.dedent(PIPELINES))
    state = World(config, tmp / "home", tmp / "data", {})
    defs = build_definitions(config)
    with pytest.MonkeyPatch.context() as patch:
        state.enter(patch)
        ensure_dagster_home()
        with dg.DagsterInstance.get() as instance:
            for pipeline, hour, quality in ((JOB_NAME, BOTH, {}), (EU, BOTH, {}), (EU, EU_FAILED, {"max_invalid_ratio": 0.0})):
                config_key = "quality" if pipeline == JOB_NAME else f"{pipeline}__quality"
                result = defs.resolve_job_def(pipeline).execute_in_process(
                    partition_key=hour,
                    instance=instance,
                    run_config={"resources": {config_key: {"config": quality}}},
                    raise_on_error=False,
                )
                assert result.success == (hour == BOTH)
                state.run_ids[(pipeline, hour)] = result.run_id
    return state


@pytest.fixture
def entered(world, monkeypatch):
    world.enter(monkeypatch)
    return world


@pytest.mark.slow
def test_the_two_pipelines_stored_different_hours(world):
    assert world.raw_records(EU, BOTH) != world.raw_records(JOB_NAME, BOTH)
    assert world.store(EU).published("processed_chunks", EU_FAILED) is None  # rolled back
    assert world.store(JOB_NAME).published("raw_volume", EU_FAILED) is None  # the main pipeline never ran it
    assert {r.asset for r in read_rollbacks(world.store(EU).root) if r.kind == "automatic"} == {
        "processed_chunks",
        "consolidated_output",
    }
    assert read_rollbacks(world.data_dir) == []


@pytest.mark.parametrize("pipeline", [EU, JOB_NAME])
def test_status_shows_the_pipelines_own_versions_gates_and_runs(entered, pipeline, capsys):
    other = JOB_NAME if pipeline == EU else EU
    assert main(["status", "--pipeline", pipeline, "--partition", BOTH]) == 0
    out = capsys.readouterr().out
    for asset in ASSETS:
        assert entered.store(pipeline).published(asset, BOTH).version in out
        assert entered.store(other).published(asset, BOTH).version not in out
    assert f"{pipeline}, hour {BOTH}" in out
    assert re.search(r"invalid_ratio\s+│\s+ERROR\s+│\s+passed", out)
    assert f"runs: 1, newest {entered.run_ids[(pipeline, BOTH)]} SUCCESS" in out


def test_status_of_the_failed_hour_is_the_failed_pipelines_only(entered, capsys):
    assert main(["status", "--pipeline", EU, "--partition", EU_FAILED]) == 0
    eu = capsys.readouterr().out
    assert re.search(r"invalid_ratio\s+│\s+ERROR\s+│\s+FAILED", eu)
    assert "automatic: invalid_ratio" in eu and f"newest {entered.run_ids[(EU, EU_FAILED)]} FAILURE" in eu
    assert main(["status", "--partition", EU_FAILED]) == 0  # the main pipeline (default) never ran the hour
    own = capsys.readouterr().out
    assert "gates: no evaluation recorded" in own and "runs: 0" in own and "automatic" not in own


def totals(page: str) -> dict[str, str]:
    return {html.unescape(k): v for k, v in re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", page)}


def test_report_counts_the_named_pipelines_stored_records(entered, tmp_path, capsys):
    reports = {}
    for pipeline in (EU, JOB_NAME):
        output = tmp_path / f"{pipeline}.html"
        assert main(["report", "--pipeline", pipeline, "--from", BOTH, "--to", EU_FAILED, "-o", str(output)]) == 0
        assert "(3 hours" in capsys.readouterr().out
        reports[pipeline] = output.read_text()
    eu, own = totals(reports[EU]), totals(reports[JOB_NAME])
    assert eu["raw records"] == f"{entered.raw_records(EU, BOTH, EU_FAILED):,}"
    assert own["raw records"] == f"{entered.raw_records(JOB_NAME, BOTH):,}"
    valid = len(entered.store(EU).read_published_table("consolidated_output", BOTH))
    assert eu["valid records"] == f"{valid:,}" and eu["hours with a published output"] == "1"
    assert (eu["runs"], eu["rollbacks"], eu["failed gate evaluations (newest per hour)"]) == ("2", "2", "1")
    assert (own["runs"], own["rollbacks"], own["failed gate evaluations (newest per hour)"]) == ("1", "0", "0")
    assert f"<title>{EU}: {BOTH} to {EU_FAILED}</title>" in reports[EU]


def test_an_unknown_pipeline_is_a_usage_error(entered, capsys):
    assert main(["report", "--pipeline", "nope"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "no pipeline 'nope'" in line and str(entered.config) in line and f"{JOB_NAME}, {EU}" in line


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_carry_every_pipelines_own_figures(entered):
    with dg.DagsterInstance.get() as instance:
        server = serve(instance, None, "127.0.0.1", 0, lambda: [BOTH, EU_FAILED])
        try:
            samples = scrape(server.server_port)
        finally:
            server.shutdown()

    def value(name: str, **labels) -> float | None:
        return samples.get((f"scalable_pipeline_{name}", tuple(sorted(labels.items()))))

    for pipeline, chunks in ((EU, 3), (JOB_NAME, 2)):
        stored = entered.store(pipeline)
        reasons = stored.read_published_table("processed_chunks", BOTH)["rejection_reason"]
        key = {"pipeline": pipeline, "partition": BOTH}
        assert value("records", kind="raw", **key) == len(reasons) == entered.raw_records(pipeline, BOTH)
        assert value("records", kind="valid", **key) == reasons.isna().sum()
        assert value("chunks", **key) == len(stored.read_published_document("chunk_partitions", BOTH)["chunks"]) == chunks
        gates = {
            dict(labels)["gate"]
            for name, labels in samples
            if name == "scalable_pipeline_gate_passed" and key.items() <= dict(labels).items()
        }
        assert len(gates) == 12
    failed = {"pipeline": EU, "partition": EU_FAILED, "asset": "processed_chunks", "gate": "invalid_ratio", "severity": "ERROR"}
    assert value("gate_passed", **failed) == 0 and value("gate_threshold", **failed) == 0
    assert value("records", kind="raw", pipeline=EU, partition=EU_FAILED) == entered.raw_records(EU, EU_FAILED)
    assert not any(
        dict(labels).get("partition") == EU_FAILED and dict(labels).get("pipeline") == JOB_NAME for _, labels in samples
    )
    assert value("rollbacks_total", pipeline=EU, asset="processed_chunks", kind="automatic") == 1
    assert not any(
        name == "scalable_pipeline_rollbacks_total" and dict(labels)["pipeline"] == JOB_NAME for name, labels in samples
    )

    with dg.DagsterInstance.get() as instance:  # --pipeline: that pipeline only
        server = serve(instance, EU, "127.0.0.1", 0, lambda: [BOTH])
        try:
            only = scrape(server.server_port)
        finally:
            server.shutdown()
    assert {dict(labels)["pipeline"] for _, labels in only if "pipeline" in dict(labels)} == {EU}
