"""Quality gates as pure verdicts: a score, a threshold, and whether it passed."""

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    """WARN gates report; ERROR gates block publishing and roll the stage back."""

    WARN = "WARN"
    ERROR = "ERROR"


@dataclass(frozen=True)
class GateVerdict:
    name: str
    passed: bool
    score: float
    threshold: float
    description: str
    severity: str = "ERROR"  # a Severity value: "ERROR" blocks and rolls back; "WARN" reports
    details: dict = field(default_factory=dict)


def ratio_at_most(name: str, count: int, total: int, max_ratio: float, what: str, severity: str = "ERROR") -> GateVerdict:
    """Passes when ``count / total`` is at most ``max_ratio`` (an empty total scores 0)."""
    ratio = count / total if total else 0.0
    return GateVerdict(
        name=name,
        passed=ratio <= max_ratio,
        score=ratio,
        threshold=max_ratio,
        description=f"{what}: {count} of {total} ({ratio:.4%}); allowed at most {max_ratio:.4%}",
        severity=severity,
        details={"count": count, "total": total},
    )


def all_true(name: str, problems: list[str], what: str, severity: str = "ERROR") -> GateVerdict:
    """Passes when there are no problems; the score is the number of problems."""
    return GateVerdict(
        name=name,
        passed=not problems,
        score=float(len(problems)),
        threshold=0.0,
        description=f"{what}: " + ("ok" if not problems else "; ".join(problems[:10])),
        severity=severity,
        details={"problems": problems[:50]},
    )
