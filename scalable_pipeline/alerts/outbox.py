"""The durable outbox: every alert is a file that stays pending until it is delivered, then moves once.

Layout under the data root: ``alerts/outbox/pending/<alert_id>.json`` and
``alerts/outbox/delivered/<alert_id>.json``; every write is atomic (temp file + rename). Delivery of
an entry: append it to the alerts log exactly once (``logging_at`` is saved before the append, so a
round after a crash looks the line up by alert id instead of writing it again), POST it to the webhook
(if configured), then mark it delivered in place and rename it into ``delivered/``. A delivered entry
is never sent again; a pending one is retried with exponential backoff. One writer at a time (the
sensor's ticks are serial).
"""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scalable_pipeline.alerts.alert_log import alerts_log_path
from scalable_pipeline.alerts.messages import Alert, webhook_payload
from scalable_pipeline.alerts.webhook import WebhookError
from scalable_pipeline.decisions.retry import RetryLimits, retry_delay
from scalable_pipeline.storage.atomic import atomic_write_json, read_json
from scalable_pipeline.storage.jsonl import append_record, read_records

PENDING = "pending"
DELIVERED = "delivered"


@dataclass
class DeliveryRound:
    """What one delivery pass did."""

    logged: int = 0
    delivered: int = 0
    failed: int = 0
    waiting: int = 0


class Outbox:
    def __init__(self, root: Path):
        self.root = Path(root) / "alerts" / "outbox"
        self.log_path = alerts_log_path(root)

    def _path(self, state: str, alert_id: str) -> Path:
        return self.root / state / f"{alert_id}.json"

    def contains(self, alert_id: str) -> bool:
        return self._path(PENDING, alert_id).exists() or self._path(DELIVERED, alert_id).exists()

    def add(self, alert: Alert, now: float) -> bool:
        """Store ``alert`` as pending unless its id is already in the outbox; True when it was new."""
        if self.contains(alert.alert_id):
            return False
        entry = {
            "alert_id": alert.alert_id,
            "status": PENDING,
            "alert": alert.as_dict(),
            "payload": webhook_payload(alert),
            "created_at": now,
            "logging_at": None,
            "logged_at": None,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "delivered_at": None,
            "webhook": None,
        }
        atomic_write_json(self._path(PENDING, alert.alert_id), entry)
        return True

    def entries(self, state: str) -> list[dict]:
        """Entries in ``state``, oldest evaluation first."""
        folder = self.root / state
        return [read_json(path) for path in sorted(folder.glob("*.json"))] if folder.exists() else []

    def _save(self, entry: dict) -> None:
        atomic_write_json(self._path(PENDING, entry["alert_id"]), entry)

    def _log_once(self, entry: dict, now: float) -> None:
        """Append the entry's log line unless an earlier round crashed after appending it, then save ``logged_at``."""
        if entry.get("logging_at") is None:
            entry["logging_at"] = now
            self._save(entry)
            already_logged = False
        else:  # an earlier round died while logging: the line may or may not be there
            already_logged = any(line["alert_id"] == entry["alert_id"] for line in read_records(self.log_path))
        if not already_logged:
            append_record(self.log_path, {**entry["alert"], "text": entry["payload"]["text"], "logged_at": now})
        entry["logged_at"] = now
        self._save(entry)

    def _mark_delivered(self, entry: dict, now: float, webhook: str) -> None:
        entry.update(status=DELIVERED, delivered_at=entry["delivered_at"] or now, webhook=webhook)
        self._save(entry)
        target = self._path(DELIVERED, entry["alert_id"])
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(PENDING, entry["alert_id"]), target)

    def deliver_due(
        self,
        now: float,
        send: Callable[[dict], object] | None,
        backoff_base_seconds: float,
        backoff_cap_seconds: float,
        budget_seconds: float,
    ) -> DeliveryRound:
        """Log every pending entry, then POST those that are due with ``send`` (None: no webhook configured).

        After the first failed POST the round stops trying (the webhook is likely down) and the rest wait
        for the next round; so do entries left when ``budget_seconds`` is spent. A failed entry waits
        base, 2*base, 4*base, ... (never more than the cap) before its next try.
        """
        backoff = RetryLimits(delay_seconds=backoff_base_seconds, max_delay_seconds=backoff_cap_seconds, jitter_fraction=0.0)
        report = DeliveryRound()
        deadline = time.monotonic() + budget_seconds
        webhook_up = True
        for entry in self.entries(PENDING):
            if entry["logged_at"] is None:
                self._log_once(entry, now)
                report.logged += 1
            if entry["status"] == DELIVERED:  # marked but not yet moved when the last round stopped
                self._mark_delivered(entry, now, entry["webhook"])
            elif send is None:
                self._mark_delivered(entry, now, "not configured")
                report.delivered += 1
            elif not webhook_up or entry["next_attempt_at"] > now or time.monotonic() > deadline:
                report.waiting += 1
            else:
                entry["attempts"] += 1
                try:
                    send(entry["payload"])
                except WebhookError as error:
                    delay = retry_delay(entry["attempts"] - 1, backoff, unit_random=0.0)
                    entry.update(last_error=str(error), next_attempt_at=now + delay)
                    self._save(entry)
                    report.failed += 1
                    webhook_up = False
                else:
                    self._mark_delivered(entry, now, "sent")
                    report.delivered += 1
        return report
