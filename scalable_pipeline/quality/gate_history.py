"""Gate history from the Dagster instance, for adaptive thresholds (the derivation itself is pure)."""

import dagster as dg

from scalable_pipeline.core.asset_keys import StepContext, step_asset_key
from scalable_pipeline.core.metadata import metadata_number
from scalable_pipeline.quality.gates import GateVerdict, ratio_at_most
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline.quality.thresholds import Threshold, derive_threshold, explained
from scalable_pipeline.quality.volume_anomaly import (
    DEFAULT_VOLUME_POLICY,
    VOLUME_ANOMALY_GATE,
    same_hour_partition_keys,
    volume_anomaly,
)


def passed_scores(instance: dg.DagsterInstance, asset: dg.AssetKey, check: str, limit: int) -> list[float]:
    """``score`` of the last ``limit`` passed evaluations of the check (any partition), newest first.

    Planned and failed executions are filtered out after fetching, so up to ``3 * limit`` executions are read.
    """
    records = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(asset, check), limit=limit * 3)
    scores = []
    for record in records:
        evaluation = record.evaluation  # an AssetCheckEvaluationPlanned while the check has not run
        if isinstance(evaluation, dg.AssetCheckEvaluation) and evaluation.passed:
            score = metadata_number(evaluation.metadata, "score")
            scores += [] if score is None else [score]
    return scores[:limit]


def same_hour_values(
    instance: dg.DagsterInstance, asset: dg.AssetKey, partition_key: str, metadata_key: str, days: int
) -> list[float]:
    """``metadata_key`` of the newest materialization of the same hour on each of ``days`` earlier days, newest first."""
    keys = same_hour_partition_keys(partition_key, days)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=keys), limit=days * 10
    ).records
    newest: dict[str, float] = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        value = metadata_number(materialization.metadata if materialization else None, metadata_key)
        if record.partition_key and record.partition_key not in newest and value is not None:
            newest[record.partition_key] = value
    return [newest[key] for key in keys if key in newest]


def gate_threshold(context: StepContext, quality: QualityResource, asset: str, check: str, static: float) -> Threshold:
    """The threshold of a score gate: static, or adaptive from the check's passed scores."""
    policy = quality.policy(check)
    history = passed_scores(context.instance, step_asset_key(context, asset), check, policy.history) if policy.adaptive else []
    return derive_threshold(policy, static, history)


def ratio_gate(
    context: StepContext,
    quality: QualityResource,
    asset: str,
    check: str,
    count: int,
    total: int,
    static: float,
    what: str,
) -> GateVerdict:
    """``ratio_at_most`` at the gate's static or adaptive threshold, with the derivation in its details."""
    threshold = gate_threshold(context, quality, asset, check, static)
    return explained(ratio_at_most(check, count, total, threshold.value, what), threshold)


def volume_gate(context: StepContext, quality: QualityResource, asset: str, valid: int) -> GateVerdict:
    """The volume-anomaly gate: ``valid`` against the same hour's ``valid`` on earlier days."""
    policy = quality.policy(VOLUME_ANOMALY_GATE)
    history = same_hour_values(context.instance, step_asset_key(context, asset), context.partition_key, "valid", policy.history)
    return volume_anomaly(VOLUME_ANOMALY_GATE, valid, history, policy, DEFAULT_VOLUME_POLICY.threshold or 0.0)
