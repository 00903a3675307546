"""Whether a failed run gets an alert, pure: only the final attempt of a run does.

Op retries (``RetryPolicy``) happen inside a run: a step that will be retried is "up for retry", not
failed, and the run fails only once a step's last attempt has failed, so every failed run is past its op
retries. Run retries (instance ``run_retries``) start a new run: Dagster tags the failed run
``dagster/will_retry`` when it fails and ``dagster/auto_retry_run_id`` once the retry is launched. A run
that will be retried gets no alert (its retry alerts if it fails for good); if no retry is launched
within ``grace_seconds`` the failure alerts after all.
"""

from collections.abc import Mapping

WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
ALERT, RETRIED, WAIT = "alert", "retried", "wait"


def retry_verdict(tags: Mapping[str, str], failed_at: float, now: float, grace_seconds: float) -> str:
    """ALERT, RETRIED (a retry run follows: no alert) or WAIT (a retry is due but not launched yet)."""
    if tags.get(AUTO_RETRY_RUN_ID_TAG):
        return RETRIED
    if tags.get(WILL_RETRY_TAG, "").lower() == "true" and now < failed_at + grace_seconds:
        return WAIT
    return ALERT
