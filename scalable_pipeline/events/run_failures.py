"""Reading failed runs from the Dagster instance, through public APIs only: which run, which step, why.

The cursor keeps the newest run update time read (``after``) and the runs read within ``LAG_SECONDS``
before it (``recent``): run rows are stamped when written, not when committed, so a run stamped just
before the newest one seen may appear later. Runs whose retry is due but not launched yet stay in
``waiting`` and are read again until their retry starts or the grace time has passed.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import dagster as dg

from scalable_pipeline.core.constants import PARTITION_RANGE_TAGS, PARTITION_TAG, PIPELINE_TAG
from scalable_pipeline.events.messages import RunFailureAlert, first_line

LAG_SECONDS = 120.0
PAGE_SIZE = 500


@dataclass(frozen=True)
class RunCursor:
    after: float = 0.0
    recent: dict[str, float] = field(default_factory=dict)  # run id -> update time, read within the lag
    waiting: dict[str, float] = field(default_factory=dict)  # run id -> failure time, retry due

    def to_json(self) -> str:
        return json.dumps({"after": self.after, "recent": self.recent, "waiting": self.waiting}, sort_keys=True)


def parse_run_cursor(text: str | None, start: float) -> RunCursor:
    """The saved cursor; before the first tick, one that reads failures updated since ``start``."""
    if not text:
        return RunCursor(after=start)
    saved = json.loads(text)
    return RunCursor(saved["after"], saved["recent"], saved["waiting"])


def failed_run_records(instance: dg.DagsterInstance, cursor: RunCursor) -> list[dg.RunRecord]:
    """Failed runs updated since ``cursor.after`` less the lag, oldest update first, not in ``recent``."""
    since = datetime.fromtimestamp(cursor.after - LAG_SECONDS, timezone.utc)
    found: list[dg.RunRecord] = []
    while True:
        page = instance.get_run_records(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since),
            limit=PAGE_SIZE,
            order_by="update_timestamp",
            ascending=True,
        )
        found += page
        if len(page) < PAGE_SIZE:
            break
        since = page[-1].update_timestamp
    unique = {record.dagster_run.run_id: record for record in found}
    return [record for run_id, record in unique.items() if run_id not in cursor.recent]


def _partition(tags: dict[str, str]) -> str | None:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    start, end = (tags.get(tag) for tag in PARTITION_RANGE_TAGS)
    return f"{start}...{end}" if start and end else None


def _innermost(error) -> str:
    """The first line of the error that caused ``error`` (Dagster wraps user errors)."""
    while error is not None and error.cause is not None:
        error = error.cause
    return first_line(error.message) if error is not None else ""


def pipeline_of(run: dg.DagsterRun, repository: dg.RepositoryDefinition | None, pipelines_by_job: dict[str, str]) -> str:
    """The run's pipeline: its tag, its job's pipeline, or the group of the assets it materialized."""
    if PIPELINE_TAG in run.tags:
        return run.tags[PIPELINE_TAG]
    if run.job_name in pipelines_by_job:
        return pipelines_by_job[run.job_name]
    if repository is not None and run.asset_selection:
        groups = {
            repository.assets_defs_by_key[key].group_names_by_key.get(key, "default")
            for key in run.asset_selection
            if key in repository.assets_defs_by_key
        }
        if groups:
            return ",".join(sorted(groups))
    return run.job_name


def failure_alert(instance: dg.DagsterInstance, record: dg.RunRecord, pipeline: str, note: str = "") -> RunFailureAlert:
    """The alert of a failed run: the last failed step and its error's first line (or the run's own)."""
    run = record.dagster_run
    failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    step, error = None, ""
    if failures and failures[-1].dagster_event is not None:
        event = failures[-1].dagster_event
        data = event.step_failure_data
        step = event.step_key
        described = data.user_failure_data.description if data.user_failure_data else None
        error = first_line(described) or _innermost(data.error)
    if not error:
        run_failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        run_event = run_failures[-1].dagster_event if run_failures else None
        if run_event is not None:
            error = first_line(run_event.message)
    return RunFailureAlert(
        run_id=run.run_id,
        pipeline=pipeline,
        job=run.job_name,
        partition=_partition(dict(run.tags)),
        step=step,
        error=error or "no error recorded",
        failed_at=record.end_time or record.update_timestamp.timestamp(),
        note=note,
    )
