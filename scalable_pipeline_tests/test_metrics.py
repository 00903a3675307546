"""/metrics: a real server on a free loopback port, scraped over HTTP; every value equals what is stored."""

import json
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scalable_pipeline.cli.metrics import serve
from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline.events.messages import Alert
from scalable_pipeline.events.outbox import Outbox
from scalable_pipeline.publishing.rollback_log import read_rollbacks
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.sources.circuit_breaker import BreakerSettings
from scalable_pipeline.sources.circuit_breaker_store import DurableCircuitBreaker
from scalable_pipeline_tests.reporting import FAILED_HOUR, HOURS, PUBLISHED_HOURS, reported_instance

pytestmark = pytest.mark.slow  # the scraped instance takes seconds to make


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """The instance's data root with a pending alert and an open circuit, and one scrape of /metrics."""
    for instance, data_dir in reported_instance(tmp_path_factory.mktemp("metrics")):
        alert = Alert(1, "run", "processed_chunks", FAILED_HOUR, "invalid_ratio", "ERROR", 0.01, 0.0, "failed", 1.0)
        Outbox(data_dir).add(alert, now=1.0)
        breaker = DurableCircuitBreaker(data_dir, "source", BreakerSettings(failure_threshold=1))
        with pytest.raises(OSError):
            breaker.call(lambda: (_ for _ in ()).throw(OSError("unreachable")))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(data_dir))
            server = serve(instance, JOB_NAME, "127.0.0.1", 0, lambda: list(HOURS))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=60) as response:
                text = response.read().decode()
        finally:
            server.shutdown()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        yield samples, data_dir


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.slow
def test_records_chunks_and_throughput_per_partition(scraped):
    samples, data_dir = scraped
    store = VersionedStore(data_dir)
    for hour in PUBLISHED_HOURS:
        key = {"pipeline": JOB_NAME, "partition": hour}
        reasons = store.read_published_table("processed_chunks", hour)["rejection_reason"]
        duplicates = int((reasons == "duplicate_order_id").sum())
        assert value(samples, "scalable_pipeline_records", kind="raw", **key) == len(reasons)
        assert value(samples, "scalable_pipeline_records", kind="valid", **key) == reasons.isna().sum()
        assert value(samples, "scalable_pipeline_records", kind="duplicates", **key) == duplicates
        assert value(samples, "scalable_pipeline_records", kind="invalid", **key) == reasons.notna().sum() - duplicates
        assert value(samples, "scalable_pipeline_chunks", **key) == len(
            store.read_published_document("chunk_partitions", hour)["chunks"]
        )
        assert value(samples, "scalable_pipeline_chunk_compute_records_per_second", **key) > 0
        assert value(samples, "scalable_pipeline_end_to_end_records_per_second", **key) > 0
    assert not any(labels and dict(labels).get("partition") == HOURS[0] for _, labels in samples)  # never ran


def test_gates_rollbacks_outbox_and_circuit(scraped):
    samples, data_dir = scraped
    failed = {
        "pipeline": JOB_NAME,
        "partition": FAILED_HOUR,
        "asset": "processed_chunks",
        "gate": "invalid_ratio",
        "severity": "ERROR",
    }
    assert value(samples, "scalable_pipeline_gate_passed", **failed) == 0
    assert value(samples, "scalable_pipeline_gate_threshold", **failed) == 0
    assert value(samples, "scalable_pipeline_gate_score", **failed) > 0
    anomaly = {
        **failed,
        "partition": PUBLISHED_HOURS[0],
        "asset": "consolidated_output",
        "gate": "volume_anomaly",
        "severity": "WARN",
    }
    assert value(samples, "scalable_pipeline_gate_passed", **anomaly) == 1
    gates = {dict(labels)["gate"] for name, labels in samples if name == "scalable_pipeline_gate_passed"}
    assert len(gates) == 12

    automatic = [r for r in read_rollbacks(data_dir) if r.kind == "automatic"]
    for asset in ("processed_chunks", "consolidated_output"):
        expected = sum(r.asset == asset for r in automatic)
        assert (
            value(samples, "scalable_pipeline_rollbacks_total", pipeline=JOB_NAME, asset=asset, kind="automatic") == expected == 1
        )
    assert value(samples, "scalable_pipeline_alert_outbox_depth") == 1
    assert value(samples, "scalable_pipeline_circuit_state", circuit="source", state="open") == 1
    assert value(samples, "scalable_pipeline_circuit_state", circuit="source", state="closed") == 0


def test_the_grafana_dashboard_uses_served_metrics(scraped):
    samples, _ = scraped
    dashboard = json.loads((Path(__file__).parent.parent / "grafana" / "scalable_pipeline.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"scalable_pipeline_\w+", target["expr"])
    }
    assert used and used <= {name for name, _ in samples}
