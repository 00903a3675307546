"""Per-gate policies and adaptive thresholds: the pure derivation, and the history read from the instance."""

from statistics import fmean, pstdev

import dagster as dg
import pytest

from scalable_pipeline.definitions import defs
from scalable_pipeline.quality.gates import GATE_NAMES, Severity
from scalable_pipeline.quality.resource import GateSettings, QualityResource
from scalable_pipeline.quality.thresholds import GatePolicy, derive_threshold
from scalable_pipeline.quality.volume_anomaly import DEFAULT_VOLUME_POLICY, same_hour_partition_keys, volume_anomaly
from scalable_pipeline_tests.conftest import OFF_PEAK_PARTITION, materialize_hour

ADAPTIVE = GatePolicy(adaptive=True, k=2.0, min_history=3)


def test_static_threshold_and_its_override():
    assert derive_threshold(GatePolicy(), 0.05, [0.9] * 10).value == 0.05
    assert derive_threshold(GatePolicy(threshold=0.02), 0.05, []).value == 0.02


def test_adaptive_threshold_is_mean_plus_k_stddev_of_history():
    history = [0.01, 0.02, 0.03]
    threshold = derive_threshold(ADAPTIVE, 0.05, history)
    assert threshold.method == "adaptive"
    assert threshold.value == pytest.approx(0.02 + 2 * pstdev(history))
    assert threshold.history_n == 3 and threshold.history_mean == pytest.approx(0.02)
    assert "mean" in threshold.derivation and "stddev" in threshold.derivation


def test_adaptive_threshold_uses_only_the_last_k_values():
    policy = GatePolicy(adaptive=True, history=2, min_history=2, k=0)
    assert derive_threshold(policy, 1.0, [0.1, 0.2, 0.9]).value == pytest.approx(0.15)


def test_adaptive_threshold_is_clamped_to_floor_and_ceiling():
    assert derive_threshold(GatePolicy(adaptive=True, min_history=1, floor=0.01), 0.05, [0.0, 0.0]).value == 0.01
    # ceiling defaults to the static threshold: history never loosens a gate
    assert derive_threshold(GatePolicy(adaptive=True, min_history=1), 0.05, [0.2, 0.4]).value == 0.05
    assert derive_threshold(GatePolicy(adaptive=True, min_history=1, ceiling=0.3), 0.05, [0.2, 0.4]).value == 0.3


def test_adaptive_threshold_falls_back_to_static_without_enough_history():
    threshold = derive_threshold(ADAPTIVE, 0.05, [0.01, 0.02])
    assert (threshold.value, threshold.method, threshold.history_n) == (0.05, "static", 2)
    assert "only 2 of 3" in threshold.derivation


def test_same_hour_partition_keys_cross_month_and_year():
    assert same_hour_partition_keys("2026-01-06-09:00", 3) == ["2026-01-05-09:00", "2026-01-04-09:00", "2026-01-03-09:00"]


def test_volume_anomaly_band_from_same_hour_history():
    history = [10_000, 10_400, 9_600]
    band = 3 * pstdev(history) / fmean(history)  # 9.8%, below the 20% floor
    normal = volume_anomaly("volume_anomaly", 10_900, history, DEFAULT_VOLUME_POLICY, 0.5)
    assert normal.passed and normal.threshold == pytest.approx(max(band, 0.2))
    assert normal.details["threshold_method"] == "adaptive"
    dropped = volume_anomaly("volume_anomaly", 4_000, history, DEFAULT_VOLUME_POLICY, 0.5)
    assert not dropped.passed and dropped.score == pytest.approx(0.6)


def test_volume_anomaly_without_history_passes():
    verdict = volume_anomaly("volume_anomaly", 123, [], DEFAULT_VOLUME_POLICY, 0.5)
    assert verdict.passed and verdict.score == 0.0


def test_quality_policy_merges_settings_over_defaults():
    quality = QualityResource(
        gates={"invalid_ratio": GateSettings(adaptive=True, k=4.0), "volume_anomaly": GateSettings(severity=Severity.ERROR)}
    )
    assert quality.policy("invalid_ratio") == GatePolicy(adaptive=True, k=4.0)
    assert quality.policy("volume_anomaly").severity == "ERROR" and quality.policy("volume_anomaly").floor == 0.2
    assert QualityResource().policy("volume_anomaly") == DEFAULT_VOLUME_POLICY
    assert QualityResource().policy("reconciliation") == GatePolicy()


def test_quality_rejects_unknown_gates_and_unused_settings():
    with pytest.raises(ValueError, match=r"unknown gate 'invalid_ratios'; known gates: raw_schema, .*volume_anomaly"):
        QualityResource(gates={"invalid_ratios": GateSettings(severity=Severity.WARN)})
    with pytest.raises(
        ValueError, match=r"'unique_order_id' has a built-in threshold .*only severity can be set, not adaptive, threshold"
    ):
        QualityResource(gates={"unique_order_id": GateSettings(threshold=1.0, adaptive=True)})
    assert (
        QualityResource(gates={"unique_order_id": GateSettings(severity=Severity.WARN)}).policy("unique_order_id").severity
        == "WARN"
    )


def test_known_gate_names_are_the_pipelines_checks():
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert sorted(GATE_NAMES) == sorted(checks)


def seed_passed_scores(instance, scores):
    """Passed invalid_ratio evaluations of earlier hours (one per partition), oldest first."""
    for day, score in enumerate(scores, start=1):
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("processed_chunks"),
                check_name="invalid_ratio",
                passed=True,
                metadata={"score": score},
                partition=f"2025-12-{day + 4:02d}-03:00",
            )
        )


def check_metadata(result, check: str) -> dict:
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == check)
    return {key: value.value for key, value in evaluation.metadata.items()}


def test_adaptive_threshold_derived_from_seeded_history(instance):
    seeded = [0.009, 0.010, 0.011, 0.012, 0.013]
    seed_passed_scores(instance, seeded)
    instance.report_runless_asset_event(  # a failed evaluation is not part of the history
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("processed_chunks"),
            check_name="invalid_ratio",
            passed=False,
            metadata={"score": 0.9},
            partition="2025-12-24-03:00",
        )
    )
    quality = QualityResource(gates={"invalid_ratio": GateSettings(adaptive=True, k=3.0, min_history=5)})

    result = materialize_hour(OFF_PEAK_PARTITION, instance, raise_on_error=False, quality=quality)

    metadata = check_metadata(result, "invalid_ratio")
    expected = fmean(seeded) + 3 * pstdev(seeded)
    assert metadata["threshold_method"] == "adaptive" and metadata["history_n"] == 5
    assert metadata["threshold"] == pytest.approx(expected)
    assert metadata["history_mean"] == pytest.approx(fmean(seeded))
    assert metadata["threshold_derivation"].startswith("mean")
    assert check_metadata(result, "duplicate_ratio")["threshold_method"] == "static"
    fixed = check_metadata(result, "chunks_complete")  # a built-in threshold is reported as static too
    assert (fixed["threshold_method"], fixed["threshold"]) == ("static", 0.0) and "not configurable" in fixed[
        "threshold_derivation"
    ]


def test_volume_gate_reads_the_same_hour_of_earlier_days(instance):
    first = materialize_hour(OFF_PEAK_PARTITION, instance)
    valid = next(
        e.materialization.metadata["valid"].value
        for e in first.get_asset_materialization_events()
        if e.asset_key.path[-1] == "consolidated_output"
    )
    for day, factor in zip(same_hour_partition_keys(OFF_PEAK_PARTITION, 3), (10, 11, 9), strict=False):
        instance.report_runless_asset_event(
            dg.AssetMaterialization("consolidated_output", partition=day, metadata={"valid": valid * factor})
        )

    result = materialize_hour(OFF_PEAK_PARTITION, instance)

    metadata = check_metadata(result, "volume_anomaly")
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "volume_anomaly")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN  # reported, not blocking
    assert metadata["history_n"] == 3 and metadata["threshold_method"] == "adaptive"
    assert metadata["score"] == pytest.approx(0.9)
