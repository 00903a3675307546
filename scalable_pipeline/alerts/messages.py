"""What an alert says: the failed gate, pure and serialisable, and its Slack-compatible message."""

from dataclasses import asdict, dataclass


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


def webhook_payload(alert: Alert) -> dict:
    """Slack-compatible body: Slack (and most chat webhooks) render the ``text`` field."""
    return {"text": alert_text(alert)}
