"""The volume-anomaly gate: an hour's valid record count against the same hour of earlier days."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from statistics import fmean

from scalable_pipeline.quality.gates import GateVerdict
from scalable_pipeline.quality.thresholds import GatePolicy, Threshold, derive_threshold, explained

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
VOLUME_ANOMALY_GATE = "volume_anomaly"
# Volumes vary from day to day: this gate reports (WARN) and learns its band from 3+ days of history.
DEFAULT_VOLUME_POLICY = GatePolicy(
    severity="WARN", threshold=0.5, adaptive=True, history=14, min_history=3, floor=0.2, ceiling=1.0
)


def same_hour_partition_keys(partition_key: str, days: int) -> list[str]:
    """The same hour on each of the ``days`` previous days, newest first."""
    hour = datetime.strptime(partition_key, PARTITION_FORMAT)
    return [(hour - timedelta(days=day)).strftime(PARTITION_FORMAT) for day in range(1, days + 1)]


def volume_anomaly(name: str, valid: int, history: Sequence[float], policy: GatePolicy, static: float) -> GateVerdict:
    """Score: relative deviation ``|valid - mean| / mean`` from the same hour's history (newest first).

    Passes when the score is at most the threshold: ``k * stddev / mean`` of the history for an adaptive
    gate with enough history (clamped to the policy's floor and ceiling), else the static share.
    An hour with no history yet passes with score 0.
    """
    counts = list(history)[: policy.history]
    if not counts:
        threshold = Threshold(
            policy.threshold if policy.threshold is not None else static, "static", "no history for this hour yet"
        )
        score = 0.0
    else:
        threshold = derive_threshold(policy, static, counts, relative=True)
        mean = fmean(counts)
        score = abs(valid - mean) / mean if mean else float(valid > 0)
    verdict = GateVerdict(
        name=name,
        passed=score <= threshold.value,
        score=score,
        threshold=threshold.value,
        description=(
            f"valid records {valid} vs same-hour history {counts[:5]}{'...' if len(counts) > 5 else ''}:"
            f" deviation {score:.2%}; allowed at most {threshold.value:.2%}"
        ),
        details={"valid": valid, "history_values": counts},
    )
    return explained(verdict, threshold)
