"""A custom Prometheus collector: every scrape reads the instance and the data root (nothing is cached).

Per pipeline (each its own assets, gates and data root; label ``pipeline``) and hour of the window (the
last ``hours`` complete hours): records by kind, chunks, chunk-compute and end-to-end throughput, the
newest result, score and threshold of every gate. Over all time: each pipeline's rollbacks from its
rollback log. Now: alert outbox depth and each circuit breaker's state (the shared data root).
"""

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import dagster as dg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scalable_pipeline.events.outbox import PENDING, Outbox
from scalable_pipeline.observing.read_model import HourRecord, ObservedPipeline
from scalable_pipeline.publishing.rollback_log import read_rollbacks
from scalable_pipeline.sources.circuit_breaker import CLOSED, HALF_OPEN, OPEN, BreakerSettings
from scalable_pipeline.sources.circuit_breaker_store import DurableCircuitBreaker

PREFIX = "scalable_pipeline_"
RECORD_KINDS = (
    ("raw", "raw_volume", "total_records"),
    ("valid", "consolidated_output", "valid"),
    ("invalid", "processed_chunks", "invalid"),
    ("duplicates", "processed_chunks", "duplicates"),
)


def circuit_states(root: Path) -> dict[str, str]:
    """Each circuit breaker's stored status (closed, open, half_open), by name."""
    folder = root / "circuit_breakers"
    names = sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []
    return {name: DurableCircuitBreaker(root, name, BreakerSettings()).state().status for name in names}


class PipelineCollector(Collector):
    """``pipelines``' metrics over the hours ``partitions()`` names at each scrape; ``root``: the shared data
    root (alert outbox, circuit breakers)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        root: Path,
        pipelines: Sequence[ObservedPipeline],
        partitions: Callable[[], Sequence[str]],
    ):
        self.instance, self.root, self.pipelines, self.partitions = instance, Path(root), pipelines, partitions

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        partitions = self.partitions()
        yield from self.hour_metrics({pipeline.name: pipeline.observe(self.instance, partitions) for pipeline in self.pipelines})
        yield from self.store_metrics()
        scrape = GaugeMetricFamily(
            PREFIX + "scrape_duration_seconds", "Seconds this collector took to read the instance and data root."
        )
        scrape.add_metric([], time.perf_counter() - started)
        yield scrape

    def hour_metrics(self, hours_by_pipeline: Mapping[str, Sequence[HourRecord]]) -> Iterator[Metric]:
        labels = ["pipeline", "partition"]
        records = GaugeMetricFamily(
            PREFIX + "records", "Records of the hour by kind (raw = valid + invalid + duplicates).", labels=[*labels, "kind"]
        )
        chunks = GaugeMetricFamily(PREFIX + "chunks", "Chunks the hour was split into (newest plan).", labels=labels)
        chunk_rate = GaugeMetricFamily(
            PREFIX + "chunk_compute_records_per_second",
            "Records per second inside the chunk and range steps (no orchestration).",
            labels=labels,
        )
        end_to_end = GaugeMetricFamily(
            PREFIX + "end_to_end_records_per_second",
            "Raw records over the wall time of the run that produced the output.",
            labels=labels,
        )
        gate_labels = [*labels, "asset", "gate", "severity"]
        passed = GaugeMetricFamily(
            PREFIX + "gate_passed", "1 when the gate's newest evaluation for the hour passed, else 0.", labels=gate_labels
        )
        score = GaugeMetricFamily(
            PREFIX + "gate_score", "Score of the gate's newest evaluation for the hour.", labels=gate_labels
        )
        threshold = GaugeMetricFamily(PREFIX + "gate_threshold", "Threshold the score was judged against.", labels=gate_labels)
        for pipeline, hour in ((name, hour) for name, hours in hours_by_pipeline.items() for hour in hours):
            key = [pipeline, hour.partition]
            for kind, asset, metadata_key in RECORD_KINDS:
                value = hour.value(asset, metadata_key)
                if value is not None:
                    records.add_metric([*key, kind], value)
            for family, value in (
                (chunks, hour.value("chunk_partitions", "chunk_count")),
                (chunk_rate, hour.value("processed_chunks", "records_per_second")),
                (end_to_end, hour.end_to_end_records_per_second()),
            ):
                if value is not None:
                    family.add_metric(key, value)
            for gate in hour.gates.values():
                gate_key = [*key, gate.asset, gate.check, gate.severity]
                passed.add_metric(gate_key, float(gate.passed))
                if gate.score is not None:
                    score.add_metric(gate_key, gate.score)
                if gate.threshold is not None:
                    threshold.add_metric(gate_key, gate.threshold)
        yield from (records, chunks, chunk_rate, end_to_end, passed, score, threshold)

    def store_metrics(self) -> Iterator[Metric]:
        rollbacks = CounterMetricFamily(
            PREFIX + "rollbacks", "Rollbacks recorded in the rollback log (all hours).", labels=["pipeline", "asset", "kind"]
        )
        for pipeline in self.pipelines:
            counts: dict[tuple[str, str], int] = {}
            for record in read_rollbacks(pipeline.root):
                counts[(record.asset, record.kind)] = counts.get((record.asset, record.kind), 0) + 1
            for (asset, kind), count in sorted(counts.items()):
                rollbacks.add_metric([pipeline.name, asset, kind], count)
        outbox = GaugeMetricFamily(PREFIX + "alert_outbox_depth", "Alerts waiting in the outbox to be delivered.")
        outbox.add_metric([], len(Outbox(self.root).entries(PENDING)))
        circuits = GaugeMetricFamily(
            PREFIX + "circuit_state", "1 for the circuit breaker's current state, 0 for the others.", labels=["circuit", "state"]
        )
        for name, status in circuit_states(self.root).items():
            for state in (CLOSED, OPEN, HALF_OPEN):
                circuits.add_metric([name, state], float(state == status))
        yield from (rollbacks, outbox, circuits)
