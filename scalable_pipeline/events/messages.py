"""What an alert says: a failed gate, a failed run or a late hour, pure and serialisable, and its
Slack-compatible message. Every kind has a stable ``alert_id`` (the outbox delivers each id once)."""

from dataclasses import asdict, dataclass
from typing import Protocol


class Deliverable(Protocol):
    """What the outbox needs of an alert."""

    @property
    def alert_id(self) -> str: ...
    def as_dict(self) -> dict: ...
    def text(self) -> str: ...


@dataclass(frozen=True)
class Alert:
    """One failed check evaluation, identified by its check execution id (instance-wide)."""

    execution_id: int
    run_id: str
    asset: str
    partition: str | None
    check: str
    severity: str
    score: float | None
    threshold: float | None
    description: str | None
    evaluated_at: float

    @property
    def alert_id(self) -> str:
        return alert_id(self.execution_id)

    @property
    def evaluation_key(self) -> tuple[str, str, str, float]:
        """Run, asset, check and evaluation time: the same evaluation whatever id an alert was given."""
        return (self.run_id, self.asset, self.check, self.evaluated_at)

    def as_dict(self) -> dict:
        return {"alert_id": self.alert_id, **asdict(self)}

    def text(self) -> str:
        return alert_text(self)


def alert_id(execution_id: int) -> str:
    """Stable id of the alert for one check execution; zero-padded so names sort in execution order.

    ``check-exec-``, not the earlier ``check-eval-<event storage id>``: the two numberings overlap, and an
    old id must never hide a new alert.
    """
    return f"check-exec-{execution_id:012d}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def alert_text(alert: Alert) -> str:
    """One line naming asset, partition, check, score and threshold, then the check's own description."""
    text = (
        f"Quality gate failed ({alert.severity}): asset {alert.asset}, "
        f"partition {alert.partition or 'none'}, check {alert.check}: "
        f"score {_number(alert.score)}, threshold {_number(alert.threshold)}."
    )
    if alert.description:
        text += f" {alert.description}"
    return f"{text} (run {alert.run_id}, alert {alert.alert_id})"


def webhook_payload(alert: Deliverable) -> dict:
    """Slack-compatible body: Slack (and most chat webhooks) render the ``text`` field."""
    return {"text": alert.text()}


def first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


@dataclass(frozen=True)
class RunFailureAlert:
    """A run that failed for good (no retry of it follows)."""

    run_id: str
    pipeline: str
    job: str
    partition: str | None
    step: str | None  # the failed step; None when the run failed outside any step
    error: str  # the first line of the error
    failed_at: float
    note: str = ""

    @property
    def alert_id(self) -> str:
        return f"run-failure-{self.run_id}"

    def as_dict(self) -> dict:
        return {"alert_id": self.alert_id, "kind": "run_failure", **asdict(self)}

    def text(self) -> str:
        return (
            f"Run failed: pipeline {self.pipeline}, partition {self.partition or 'none'}, run {self.run_id}, "
            f"step {self.step or 'none'}: {self.error}{f' ({self.note})' if self.note else ''} (alert {self.alert_id})"
        )


@dataclass(frozen=True)
class LateHourAlert:
    """An hour whose ``consolidated_output`` was not materialized by its deadline."""

    pipeline: str
    asset: str
    partition: str
    deadline: float
    deadline_minutes: int

    @property
    def alert_id(self) -> str:
        return f"late-{self.pipeline}-{self.partition.replace(':', '')}"

    def as_dict(self) -> dict:
        return {"alert_id": self.alert_id, "kind": "late_hour", **asdict(self)}

    def text(self) -> str:
        return (
            f"Hour late: pipeline {self.pipeline}, partition {self.partition}: {self.asset} was not materialized "
            f"within {self.deadline_minutes} min after the hour ended (alert {self.alert_id})"
        )
