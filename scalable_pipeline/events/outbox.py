"""The durable outbox: every alert is a file that stays pending until it is delivered, exactly once.

Layout under the data root, ``alerts/outbox/``: ``pending/<alert_id>.json`` (created only if absent),
``delivered/<alert_id>.json`` (written once the alert is delivered; then the pending file goes) and
``claims/`` (see ``storage/claims.py``). Any number of tickers, on any hosts sharing the data root, may
deliver at once: a ticker works on an entry only while it holds the entry's claim, and appends to the
alerts log only while it holds the log's claim (``O_APPEND`` is not atomic across NFS clients); an entry
or the log claimed by another ticker is skipped until a later round. No file locks, only create-if-absent.

Delivering an entry: append it to the alerts log exactly once (``logging_at`` is saved before the append,
so a round after a crash looks the line up by alert id instead of writing it again), POST it to the
webhook (if configured), write ``delivered/<alert_id>.json``, remove the pending file and the claims. A
delivered entry is never sent again; a pending one is retried with exponential backoff; a claim left by
a crashed ticker is taken over after ``claim_timeout_seconds``.
"""

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scalable_pipeline.checkpoints.claims import Claims
from scalable_pipeline.core.atomic import atomic_write_json, create_json_exclusive, read_json
from scalable_pipeline.core.jsonl import append_record, read_records
from scalable_pipeline.events.alert_log import alerts_log_path
from scalable_pipeline.events.messages import Deliverable, webhook_payload
from scalable_pipeline.events.retry import RetryLimits, retry_delay
from scalable_pipeline.events.webhook import WebhookError

PENDING = "pending"
DELIVERED = "delivered"
CLAIMS = "claims"
LOG_CLAIM = "alerts-log"


@dataclass(frozen=True)
class DeliveryPolicy:
    backoff_base_seconds: float
    backoff_cap_seconds: float
    # Time for webhook POSTs in one round.
    budget_seconds: float
    # A claim older than this is taken to be left by a crashed ticker; longer than any round.
    claim_timeout_seconds: float

    def retry_at(self, now: float, attempts: int) -> float:
        """When an entry that failed its ``attempts``-th POST is tried again: base, 2*base, ... up to the cap."""
        limits = RetryLimits(
            delay_seconds=self.backoff_base_seconds, max_delay_seconds=self.backoff_cap_seconds, jitter_fraction=0.0
        )
        return now + retry_delay(attempts - 1, limits, unit_random=0.0)


@dataclass
class DeliveryRound:
    """What one delivery pass did."""

    logged: int = 0
    delivered: int = 0
    failed: int = 0
    waiting: int = 0
    busy: int = 0  # claimed by another ticker


class Outbox:
    def __init__(self, root: Path):
        self.root = Path(root) / "alerts" / "outbox"
        self.log_path = alerts_log_path(root)
        self.claims = Claims(self.root / CLAIMS, owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")

    def _path(self, state: str, alert_id: str) -> Path:
        return self.root / state / f"{alert_id}.json"

    def _delivered(self, alert_id: str) -> bool:
        return self._path(DELIVERED, alert_id).exists()

    def add(self, alert: Deliverable, now: float) -> bool:
        """Store ``alert`` as pending unless its id is already pending, claimed or delivered; True when it was new."""
        if self._delivered(alert.alert_id):
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
        path = self._path(PENDING, alert.alert_id)
        if not create_json_exclusive(path, entry):
            return False
        if self._delivered(alert.alert_id):  # delivered, and its pending file removed, between our two looks
            path.unlink(missing_ok=True)
            return False
        return True

    def entries(self, state: str) -> list[dict]:
        """Entries in ``state``, oldest execution first (one delivered meanwhile by another ticker is left out)."""
        found = []
        for path in sorted((self.root / state).glob("*.json")):
            try:
                found.append(read_json(path))
            except FileNotFoundError:
                continue
        return found

    def evaluation_keys(self) -> set[tuple]:
        """``Alert.evaluation_key`` of every entry, pending or delivered, whatever its id scheme."""
        return {
            (a["run_id"], a["asset"], a["check"], a["evaluated_at"])
            for a in (e["alert"] for s in (PENDING, DELIVERED) for e in self.entries(s))
            if "check" in a  # a gate alert (run failures and late hours have no evaluation)
        }

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

    def _finish(self, entry: dict, now: float, webhook: str) -> None:
        """Record the entry as delivered, then drop its pending file and claims (a crash in between: see ``_work``)."""
        entry.update(status=DELIVERED, delivered_at=entry["delivered_at"] or now, webhook=webhook)
        atomic_write_json(self._path(DELIVERED, entry["alert_id"]), entry)
        self._path(PENDING, entry["alert_id"]).unlink(missing_ok=True)
        self.claims.clear(entry["alert_id"])

    def deliver_due(self, now: float, send: Callable[[dict], object] | None, policy: DeliveryPolicy) -> DeliveryRound:
        """Log every pending entry, then POST those that are due with ``send`` (None: no webhook configured).

        After the first failed POST the round stops trying (the webhook is likely down) and the rest wait
        for the next round; so do entries left when the budget is spent. A failed entry waits base,
        2*base, 4*base, ... (never more than the cap) before its next try. Entries another ticker holds
        are skipped (``busy``).
        """
        report = DeliveryRound()
        deadline = time.monotonic() + policy.budget_seconds
        webhook_up = True

        def due(entry: dict) -> bool:
            return send is None or (webhook_up and entry["next_attempt_at"] <= now and time.monotonic() <= deadline)

        log_claim = None
        try:
            for entry in self.entries(PENDING):
                if entry["logged_at"] is None:
                    log_claim = log_claim or self.claims.take(LOG_CLAIM, now, policy.claim_timeout_seconds)
                    if log_claim is None:
                        report.busy += 1
                        continue
                elif entry["status"] != DELIVERED and not due(entry):
                    report.waiting += 1
                    continue
                claim = self.claims.take(entry["alert_id"], now, policy.claim_timeout_seconds)
                if claim is None:
                    report.busy += 1
                    continue
                outcome = "waiting"
                try:
                    outcome = self._work(entry["alert_id"], now, send, policy, due, report)
                finally:  # an error leaves every file consistent: the next round may go on at once
                    if outcome != "done":
                        self.claims.release(claim, now)
                webhook_up = webhook_up and outcome != "failed"
        finally:
            if log_claim is not None:
                self.claims.release(log_claim, now)
        return report

    def _work(
        self,
        alert_id: str,
        now: float,
        send: Callable[[dict], object] | None,
        policy: DeliveryPolicy,
        due: Callable[[dict], bool],
        report: DeliveryRound,
    ) -> str:
        """Deliver one claimed entry as far as it goes this round: ``done``, ``failed`` or ``waiting``."""
        if self._delivered(alert_id):  # a ticker crashed after writing delivered/, or a re-add raced a delivery
            self._path(PENDING, alert_id).unlink(missing_ok=True)
            self.claims.clear(alert_id)
            return "done"
        try:
            entry = read_json(self._path(PENDING, alert_id))  # as the last holder left it
        except FileNotFoundError:
            return "waiting"
        if entry["logged_at"] is None:
            self._log_once(entry, now)
            report.logged += 1
        if entry["status"] == DELIVERED:  # marked in place by the previous version, which died before moving it
            self._finish(entry, now, entry["webhook"])
        elif send is None:
            self._finish(entry, now, "not configured")
            report.delivered += 1
        elif not due(entry):
            report.waiting += 1
            return "waiting"
        else:
            entry["attempts"] += 1
            try:
                send(entry["payload"])
            except WebhookError as error:
                entry.update(last_error=str(error), next_attempt_at=policy.retry_at(now, entry["attempts"]))
                self._save(entry)
                report.failed += 1
                return "failed"
            self._finish(entry, now, "sent")
            report.delivered += 1
        return "done"
