"""Per-gate policies and threshold derivation: static, or adaptive from the gate's own history."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import fmean, pstdev

from scalable_pipeline.quality.gates import FIXED_GATES, GATE_NAMES, GateVerdict


@dataclass(frozen=True)
class GatePolicy:
    """How one gate judges: its severity and where its threshold comes from.

    ``threshold`` is the static threshold (None: the gate's built-in default). Adaptive gates use
    ``mean + k * stddev`` of the last ``history`` passed scores, clamped to ``[floor, ceiling]``
    (``ceiling`` None: the static threshold, so history can tighten a gate but never loosen it), and
    fall back to the static threshold until ``min_history`` scores exist.
    """

    severity: str = "ERROR"
    threshold: float | None = None
    adaptive: bool = False
    history: int = 20
    k: float = 3.0
    min_history: int = 5
    floor: float = 0.0
    ceiling: float | None = None

    def merged(self, overrides: dict) -> "GatePolicy":
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


@dataclass(frozen=True)
class Threshold:
    """The threshold a gate used and how it was derived (shown in the check's metadata)."""

    value: float
    method: str  # "static" or "adaptive"
    derivation: str
    history_n: int = 0
    history_mean: float | None = None
    history_stddev: float | None = None

    def as_details(self) -> dict:
        details = {"threshold_method": self.method, "threshold_derivation": self.derivation, "history_n": self.history_n}
        if self.history_mean is not None and self.history_stddev is not None:
            details |= {"history_mean": round(self.history_mean, 6), "history_stddev": round(self.history_stddev, 6)}
        return details


def clamp(value: float, floor: float, ceiling: float) -> float:
    return min(max(value, floor), ceiling)


def derive_threshold(policy: GatePolicy, static: float, history: Sequence[float], relative: bool = False) -> Threshold:
    """The static threshold, or, for an adaptive gate with enough history, ``clamp(mean + k*stddev)``
    of ``history`` (``relative``: ``clamp(k*stddev/mean)``, a band around the mean as a share of it)."""
    static = policy.threshold if policy.threshold is not None else static
    if not policy.adaptive:
        return Threshold(static, "static", f"static threshold {static:g}")
    values = list(history)[: policy.history]
    if len(values) < policy.min_history:
        return Threshold(
            static,
            "static",
            f"adaptive, but only {len(values)} of {policy.min_history} history values: static {static:g}",
            len(values),
        )
    mean, stddev = fmean(values), pstdev(values)
    ceiling = policy.ceiling if policy.ceiling is not None else static
    if relative:
        raw, formula = (policy.k * stddev / mean if mean else ceiling), f"{policy.k:g} x stddev {stddev:.6g} / mean {mean:.6g}"
    else:
        raw, formula = mean + policy.k * stddev, f"mean {mean:.6g} + {policy.k:g} x stddev {stddev:.6g}"
    value = clamp(raw, policy.floor, ceiling)
    return Threshold(
        value,
        "adaptive",
        f"{formula} of the last {len(values)} values, clamped to [{policy.floor:g}, {ceiling:g}] = {value:.6g}",
        len(values),
        mean,
        stddev,
    )


def explained(verdict: GateVerdict, threshold: Threshold) -> GateVerdict:
    """``verdict`` with the threshold's derivation added to its details."""
    return replace(verdict, details={**verdict.details, **threshold.as_details()})


def with_derivation(verdict: GateVerdict) -> GateVerdict:
    """``verdict`` as is when it says how its threshold was derived, else with its built-in threshold as static."""
    if "threshold_method" in verdict.details:
        return verdict
    return explained(
        verdict, Threshold(verdict.threshold, "static", f"built-in threshold {verdict.threshold:g} (not configurable)")
    )


def settings_problems(settings: dict[str, set[str]]) -> list[str]:
    """Problems of per-gate settings (gate name -> the fields set): unknown gates, and more than
    ``severity`` set for a gate with a built-in threshold."""
    problems = []
    for gate, fields in settings.items():
        if gate not in GATE_NAMES:
            problems.append(f"unknown gate {gate!r}; known gates: {', '.join(GATE_NAMES)}")
        elif gate in FIXED_GATES and fields - {"severity"}:
            problems.append(
                f"gate {gate!r} has a built-in threshold (0 problems): only severity can be set, not {', '.join(sorted(fields - {'severity'}))}"
            )
    return problems
