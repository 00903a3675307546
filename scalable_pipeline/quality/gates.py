"""Quality gates as pure verdicts: a score, a threshold, and whether it passed."""

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    """WARN gates report; ERROR gates block publishing and roll the stage back."""

    WARN = "WARN"
    ERROR = "ERROR"


# Gates with a built-in threshold (0 problems): only their severity can be configured.
FIXED_GATES = (
    "raw_schema",
    "chunk_plan_covers_raw",
    "plan_lineage",
    "chunks_complete",
    "chunks_lineage",
    "reconciliation",
    "unique_order_id",
    "output_lineage",
)
# Gates with a score threshold: severity, static threshold and adaptive settings can be configured.
SCORE_GATES = ("raw_volume_drop", "invalid_ratio", "duplicate_ratio", "volume_anomaly")
GATE_NAMES = FIXED_GATES + SCORE_GATES


@dataclass(frozen=True)
class GateVerdict:
    name: str
    passed: bool
    score: float
    threshold: float
    description: str
    severity: str = "ERROR"  # a Severity value, set from the gate's policy when the stage is audited
    details: dict = field(default_factory=dict)


def ratio_at_most(name: str, count: int, total: int, max_ratio: float, what: str) -> GateVerdict:
    """Passes when ``count / total`` is at most ``max_ratio`` (an empty total scores 0)."""
    ratio = count / total if total else 0.0
    return GateVerdict(
        name=name,
        passed=ratio <= max_ratio,
        score=ratio,
        threshold=max_ratio,
        description=f"{what}: {count} of {total} ({ratio:.4%}); allowed at most {max_ratio:.4%}",
        details={"count": count, "total": total},
    )


def all_true(name: str, problems: list[str], what: str) -> GateVerdict:
    """Passes when there are no problems; the score is the number of problems."""
    return GateVerdict(
        name=name,
        passed=not problems,
        score=float(len(problems)),
        threshold=0.0,
        description=f"{what}: " + ("ok" if not problems else "; ".join(problems[:10])),
        details={"problems": problems[:50]},
    )
