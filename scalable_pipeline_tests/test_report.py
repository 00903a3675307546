"""The HTML report: self-contained (nothing fetched from the network) and charting what is stored."""

import re

import pytest

from scalable_pipeline.cli.main import main
from scalable_pipeline.cli.report import write_report
from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline.definitions import defs
from scalable_pipeline.events.evaluations import repository_check_keys
from scalable_pipeline.observing import charts
from scalable_pipeline.observing.read_model import observe_hours
from scalable_pipeline.publishing.rollback_log import read_rollbacks
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.reporting import FAILED_HOUR, HOURS, PUBLISHED_HOURS, reported_instance

EXTERNAL = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    yield from reported_instance(tmp_path_factory.mktemp("report"))


def trace(figure, name: str) -> list:
    [found] = [t for t in figure.data if t.name == name]
    return list(found.y)


@pytest.mark.slow  # the reported instance takes seconds to make
def test_report_is_one_offline_file_with_every_chart(reported, tmp_path):
    instance, data_dir = reported
    path = write_report(instance, data_dir, JOB_NAME, list(HOURS), tmp_path / "report.html")
    page = path.read_text()
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert page.count("Plotly.newPlot(") == 5  # five charts, one inlined plotly.js
    assert len(re.findall(r"<script\b", page)) >= 5 and "cdn.plot.ly" not in page.split("</script>")[-1]
    for title in ("Records per hour", "Chunking decisions", "Throughput", "Gates: score", "Rollbacks and restarts"):
        assert title in page
    store = VersionedStore(data_dir)
    raw = sum(len(store.read_published_table("raw_volume", hour)) for hour in PUBLISHED_HOURS) + len(
        store.read_published_table("raw_volume", FAILED_HOUR)
    )
    assert f"<td>raw records</td><td>{raw:,}</td>" in page


@pytest.mark.slow
def test_charts_show_the_stored_counts_gates_and_rollbacks(reported):
    instance, data_dir = reported
    keys = repository_check_keys(defs.get_repository_def())
    hours = observe_hours(instance, data_dir, list(HOURS), keys)
    store = VersionedStore(data_dir)
    records = charts.records_per_hour(hours)
    for index, hour in enumerate(HOURS):
        if hour in PUBLISHED_HOURS:
            reasons = store.read_published_table("processed_chunks", hour)["rejection_reason"]
            assert trace(records, "valid")[index] == reasons.isna().sum()
            assert trace(records, "duplicates")[index] == (reasons == "duplicate_order_id").sum()
            assert trace(records, "invalid")[index] == reasons.notna().sum() - (reasons == "duplicate_order_id").sum()
        else:  # never ran, or nothing past raw_volume published
            assert trace(records, "valid")[index] is None

    gates = charts.gate_scores(hours, [key.name for key in keys])
    failed = HOURS.index(FAILED_HOUR)
    [score] = [t for t in gates.data if t.name == "invalid_ratio score"]
    [threshold] = [t for t in gates.data if t.name == "invalid_ratio threshold"]
    assert threshold.y[failed] == 0.0 and score.y[failed] > 0 and score.marker.color[failed] == charts.FAILED
    assert threshold.y[1] == 0.05 and score.marker.color[1] == charts.PASSED
    assert score.y[0] is None  # 01:00 never ran
    assert {key.name for key in keys} == {t.name.split(" ")[0] for t in gates.data}

    rollbacks = charts.rollbacks_and_restarts(hours)
    automatic = [r for r in read_rollbacks(data_dir) if r.kind == "automatic"]
    assert trace(rollbacks, "automatic rollbacks") == [0, 0, 0, len(automatic)] and len(automatic) == 2
    assert trace(rollbacks, "runs") == [0, 1, 1, 1]

    plan = charts.chunking_decisions(hours)
    assert trace(plan, "chunks")[1:3] == [4, 4]  # materialize_hour pins 4 chunks
    rates = charts.throughput(hours)
    assert all(rate > 0 for rate in trace(rates, "end-to-end records/s")[1:3])
    assert trace(rates, "chunk compute records/s")[1] > trace(rates, "end-to-end records/s")[1]


def test_report_command_writes_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    output = tmp_path / "week.html"
    assert main(["report", "--from", "2026-01-05-00:00", "--to", "2026-01-11-23:00", "-o", str(output)]) == 0
    assert "(168 hours" in capsys.readouterr().out
    assert output.stat().st_size > 1_000_000 and not EXTERNAL.search(output.read_text())
