"""``scalable_data_processing_backfill_retries``: one sensor for every pipeline job of the code location that
launches again the hours of backfill runs Dagster leaves unretried.

Run monitoring ends a run whose process died and run retries run it again, but Dagster retries no run of a
backfill that has ended: ``dagster job backfill`` records its backfill as completed once it has queued the
runs, and a job's backfill that the daemon runs (the UI's, from the job's page) completes as soon as none of
its runs is in progress, which can fall between a run's failure and its retry. The sensor launches the hour of
such a run again: a run of a pipeline job, in a backfill that completed (not one an operator canceled), that
Dagster marked to be retried (``dagster/will_retry``: it failed as a whole, not in a step, with retries left)
and that got no retry, once the run has been failed for ``BACKFILL_RETRY_GRACE_SECONDS`` and no newer run of
its hour (or of its range, for a run of several hours) exists. Each tick reads the failed runs of every pipeline job in one query. The new run is tagged
``scalable_pipeline/retry_of`` and recorded on the failed run as its retry (``dagster/auto_retry_run_id``, as
Dagster records its own), so ``run_failure_alerts`` waits for its outcome.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from scalable_pipeline.core.constants import JOB_NAME, PARTITION_RANGE_TAGS, PARTITION_TAG
from scalable_pipeline.core.tick_log import log_tick
from scalable_pipeline.events.quality_gate_alerts import DEFAULT_INTERVAL_SECONDS
from scalable_pipeline.events.run_alerts import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

# Named after the shipped pipeline's job; it covers the job of every pipeline.
SENSOR_NAME = f"{JOB_NAME}_backfill_retries"
BACKFILL_TAG = "dagster/backfill"
RETRY_OF_TAG = "scalable_pipeline/retry_of"
# Backfills that ended by themselves; a canceled or failed one keeps its failed runs as they are.
ENDED_BACKFILLS = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED"})
# Dagster's run retries take up a failed run within seconds (every 5 s): a younger failure is left to them.
BACKFILL_RETRY_GRACE_SECONDS = 30.0
# Failed runs updated within this window are looked at (a day: a daemon down longer fails its dead runs
# only once it is back, and they are updated then).
BACKFILL_RETRY_LOOKBACK_SECONDS = 24 * 3600.0
# Tags of the failed run its retry keeps besides the job's own: the operator's, and these of Dagster's.
CARRIED_DAGSTER_TAGS = ("dagster/priority", "dagster/max_runtime")


def hours_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags naming a run's hours: its partition, or its range (a backfill's run of several hours); {} if neither."""
    if PARTITION_TAG in tags:
        return {PARTITION_TAG: tags[PARTITION_TAG]}
    return {tag: tags[tag] for tag in PARTITION_RANGE_TAGS} if all(tag in tags for tag in PARTITION_RANGE_TAGS) else {}


def backfill_retry_blocker(
    tags: Mapping[str, str], backfill_status: str | None, failed_at: float | None, now: float, newer_run: bool
) -> str | None:
    """Why a failed run of a backfill gets no retry from the sensor (None: it gets one). ``backfill_status`` is
    its backfill's (None when the backfill is gone), ``newer_run`` whether its hours have a run created after it."""
    if tags.get(AUTO_RETRY_RUN_ID_TAG):
        return "retried"
    if tags.get(WILL_RETRY_TAG, "").lower() != "true":
        return "not to be retried"
    if BACKFILL_TAG not in tags or not hours_tags(tags):
        return "not a run of a backfill's hours"
    if failed_at is None or now - failed_at < BACKFILL_RETRY_GRACE_SECONDS:
        return "left to Dagster's run retries"
    if backfill_status not in ENDED_BACKFILLS:
        return "its backfill is in progress" if backfill_status == "REQUESTED" else "its backfill was stopped"
    if newer_run:
        return "its hour ran again"
    return None


def build_backfill_retries(
    jobs: Sequence[Any],  # the pipeline jobs, as ``define_asset_job`` returns them (its class is not exported) or resolved
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """The sensor over ``jobs``: the hours of their backfill runs that died after their backfill ended (or as it
    ended), launched again; on by default, it launches no hour no backfill asked for."""
    job_names = frozenset(job.name for job in jobs)

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches again the hour of a pipeline job's run that a backfill launched and whose process died "
        "(or that timed out) once Dagster no longer retries it: its backfill had completed.",
    )
    def backfill_retries(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance, now = context.instance, clock()
        since = datetime.fromtimestamp(now - BACKFILL_RETRY_LOOKBACK_SECONDS, timezone.utc)
        failed = [
            record
            for record in instance.get_run_records(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], tags={WILL_RETRY_TAG: "true"}, updated_after=since)
            )
            if record.dagster_run.job_name in job_names
            and BACKFILL_TAG in record.dagster_run.tags
            and not record.dagster_run.tags.get(AUTO_RETRY_RUN_ID_TAG)
        ]
        retries = (
            {
                run.tags[RETRY_OF_TAG]: run.run_id
                for run in instance.get_runs(dg.RunsFilter(tags={RETRY_OF_TAG: [r.dagster_run.run_id for r in failed]}))
            }
            if failed
            else {}
        )
        requests, linked = [], 0
        for record in failed:
            run = record.dagster_run
            if run.run_id in retries:  # launched by an earlier tick: recorded as the run's retry
                instance.add_run_tags(run.run_id, {AUTO_RETRY_RUN_ID_TAG: retries[run.run_id]})
                linked += 1
                continue
            backfill = instance.get_backfill(run.tags[BACKFILL_TAG])
            hours = hours_tags(run.tags)
            newer = bool(hours) and bool(
                instance.get_run_ids(
                    dg.RunsFilter(job_name=run.job_name, tags=hours, created_after=record.create_timestamp), limit=1
                )
            )
            status = backfill.status.value if backfill is not None else None
            if backfill_retry_blocker(run.tags, status, record.end_time, now, newer) is None:
                kept = {
                    k: v for k, v in run.tags.items() if not k.startswith(("dagster/", ".dagster")) or k in CARRIED_DAGSTER_TAGS
                }
                requests.append(
                    dg.RunRequest(
                        run_key=f"retry-of-{run.run_id}",
                        job_name=run.job_name,
                        partition_key=hours.get(PARTITION_TAG),
                        tags={
                            **kept,
                            **{tag: hours[tag] for tag in PARTITION_RANGE_TAGS if tag in hours},
                            RETRY_OF_TAG: run.run_id,
                        },
                    )
                )
        relaunched = [f"{request.job_name} {' to '.join(hours_tags(request.tags).values())}" for request in requests]
        summary = (
            f"{len(failed)} failed backfill runs awaiting a retry, {len(requests)} hours of ended backfills launched again "
            f"{relaunched[:5]}, {linked} retries recorded"
        )
        log_tick(context.log, summary, acted=bool(requests) or linked > 0)
        return dg.SensorResult(run_requests=requests, skip_reason=None if requests else dg.SkipReason(summary))

    return backfill_retries
