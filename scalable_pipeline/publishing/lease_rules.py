"""Who may write a partition: one run at a time holds its lease; a finished or unknown holder is stale."""

ACTIVE_RUN_STATUSES = frozenset({"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"})
HOLD, TAKE_OVER, BUSY = "hold", "take_over", "busy"


def lease_decision(holder_run_id: str | None, run_id: str, holder_status: str | None) -> str:
    """``hold`` (free or already ours), ``take_over`` (holder no longer running) or ``busy``."""
    if holder_run_id in (None, run_id):
        return HOLD
    return BUSY if holder_status in ACTIVE_RUN_STATUSES else TAKE_OVER
