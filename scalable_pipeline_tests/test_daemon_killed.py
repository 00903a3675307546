"""The daemon killed mid-backfill: every hour of the backfill ends published once, whole, however it was launched.

Six small hours are backfilled at once, three in each documented way, on a SQLite instance whose ``dagster.yaml``
is the repository's with its monitoring times shortened: ``dagster job backfill`` (it records its backfill as
completed once it has queued the runs, so Dagster retries none of them and ``scalable_data_processing_backfill_retries``
launches their hours again), and the job's backfill as the UI launches it from the job's page (the
``launchPartitionBackfill`` mutation on the job's partition set, sent by ``scalable_pipeline backfill``: the
daemon submits one run of the three hours, by the assets' backfill policy, and Dagster retries it while the
backfill is in progress).
``dagster-daemon run`` runs them; once an hour has succeeded and each backfill has a run going, the daemon's
process group (the daemon, its code server, every run it launched and their step processes) is killed with
SIGKILL, and a new daemon is started. Every hour must end published by exactly one successful run descending
from the run its backfill launched (through Dagster's retries or the sensor's), equal to the in-process
computation, with no run left in progress, no failed run left waiting for a retry and no pool slot held.
"""

import collections
import concurrent.futures
import os
import signal
import textwrap
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.cli.backfill import launch_backfill
from scalable_pipeline.cli.pools import apply_pool_limits
from scalable_pipeline.events.backfill_retries import (
    BACKFILL_RETRY_GRACE_SECONDS,
    RETRY_OF_TAG,
    backfill_retry_blocker,
    build_backfill_retries,
    hours_tags,
)
from scalable_pipeline.events.run_alerts import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG
from scalable_pipeline.execution.executors import EXECUTOR_ENV
from scalable_pipeline.pipelines.config import CONFIG_ENV, load_pipelines, spec_named
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.daemon import (
    PROJECT,
    dagster_job_backfill,
    live_members,
    start_daemon,
    stop_daemon,
)
from scalable_pipeline_tests.drills import wait_for
from scalable_pipeline_tests.test_pipelines import PINNED, START

TEMPLATE = PROJECT / "dagster.yaml"
JOB = "scalable_data_processing"
POOL = "chunk_processing"
HOURS = [f"2026-01-05-{hour:02d}:00" for hour in range(6)]
PIPELINES = f"""
pools: {{{POOL}: 2}}
pipelines:
  - name: {JOB}
    key_prefix: []
    start: "{START}"
    source: {{kind: synthetic, scale: 0.2}}
    scaling: {{chunk_count: 2, {PINNED}}}
"""
OTHER = "eu_orders"
TWO_PIPELINES = f"""{PIPELINES}  - name: {OTHER}
    start: "{START}"
    source: {{kind: synthetic, scale: 0.2}}
    scaling: {{chunk_count: 2, {PINNED}}}
"""
# The repository's run monitoring times, shortened where they are set (a setting it lacks stays unset): a
# dead run is found 120 s after it started rather than 30 min; the runs here take 5-70 s.
SHORTER = {
    "start_timeout_seconds": 120,
    "cancel_timeout_seconds": 60,
    "max_runtime_seconds": 120,
    "poll_interval_seconds": 5,
    "free_slots_after_run_end_seconds": 5,
}
KILL_DEADLINE_SECONDS = 600
RECOVERY_DEADLINE_SECONDS = 1200
SLOTS_DEADLINE_SECONDS = 300
IN_PROGRESS = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}
PUBLISHED = ("processed_chunks", "consolidated_output")


def instance_yaml() -> str:
    config = yaml.safe_load(TEMPLATE.read_text())
    monitoring = config.get("run_monitoring", {})
    for key, seconds in SHORTER.items():
        if key in monitoring:
            monitoring[key] = min(monitoring[key], seconds)
    return yaml.safe_dump(config)


def statuses(instance: dg.DagsterInstance) -> collections.Counter:
    return collections.Counter(run.status for run in instance.get_runs())


def hours_of(run: dg.DagsterRun) -> set[str]:
    """The hours a run processes: its partition, or every hour of its range (a backfill's run of several hours)."""
    if "dagster/partition" in run.tags:
        return {run.tags["dagster/partition"]}
    first, last = run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]
    return {hour for hour in HOURS if first <= hour <= last}


def every_hour_done(instance: dg.DagsterInstance) -> bool:
    runs = instance.get_runs()
    succeeded = {hour for run in runs if run.status == dg.DagsterRunStatus.SUCCESS for hour in hours_of(run)}
    backfills_running = any(backfill.status.value == "REQUESTED" for backfill in instance.get_backfills())
    return succeeded == set(HOURS) and not any(run.status in IN_PROGRESS for run in runs) and not backfills_running


def origin(run: dg.DagsterRun, runs: dict[str, dg.DagsterRun]) -> str:
    """The run the backfill launched that ``run`` retries (itself if it is one), through Dagster's retries
    (parent run) and ``scalable_data_processing_backfill_retries`` (its tag)."""
    while parent := run.parent_run_id or run.tags.get(RETRY_OF_TAG):
        run = runs[parent]
    return run.run_id


def reference_tables(pipelines: Path, reference_root: Path, monkeypatch) -> dict[str, dict[str, pd.DataFrame]]:
    """Every hour as the same pipeline computes it in process, in a data root of its own."""
    monkeypatch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(reference_root))
    job = build_definitions(pipelines).resolve_job_def(JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        for hour in HOURS:
            assert job.execute_in_process(partition_key=hour, instance=instance).success
    store = VersionedStore(reference_root)
    return {hour: {asset: store.read_published_table(asset, hour) for asset in PUBLISHED} for hour in HOURS}


@pytest.mark.slow
def test_a_killed_daemon_and_its_runs_leave_every_hour_of_the_backfill_published_once(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml())
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(textwrap.dedent(PIPELINES))
    data = tmp_path / "daemon_data"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        CONFIG_ENV: str(pipelines),
        "SCALABLE_PIPELINE_DATA_DIR": str(data),
        EXECUTOR_ENV: "multiprocess",
    }
    by_cli, by_page = HOURS[:3], HOURS[3:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        apply_pool_limits(instance, load_pipelines(pipelines))
        # Both at once, while no daemon runs: the command queues its runs, the page's backfill has none before the daemon.
        with concurrent.futures.ThreadPoolExecutor() as launching:
            launches = [
                launching.submit(dagster_job_backfill, env, JOB, by_cli),
                launching.submit(launch_backfill, spec_named(load_pipelines(pipelines).pipelines, JOB), by_page, env),
            ]
            for launch in launches:
                launch.result()

        def started_of_each_launch() -> bool:
            runs = instance.get_runs()
            started = {hour for run in runs if run.status == dg.DagsterRunStatus.STARTED for hour in hours_of(run)}
            succeeded = [run for run in runs if run.status == dg.DagsterRunStatus.SUCCESS]
            return bool(succeeded) and bool(started & set(by_cli)) and bool(started & set(by_page))

        daemon = start_daemon(env, tmp_path / "daemon.log")
        try:
            wait_for(started_of_each_launch, "an hour published while each backfill runs one", [daemon], KILL_DEADLINE_SECONDS)
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
            wait_for(lambda: not live_members(daemon.pid), "every process of the daemon's group to die", timeout=60)
        finally:
            stop_daemon(daemon)
        killed = {run.run_id for run in instance.get_runs() if run.status in IN_PROGRESS - {dg.DagsterRunStatus.QUEUED}}
        assert len(killed) >= 2

        daemon = start_daemon(env, tmp_path / "daemon.log")
        restarted = time.time()  # run records' times are wall-clock times
        try:
            # Computed while run monitoring waits out the dead runs' runtime limit.
            expected = reference_tables(pipelines, tmp_path / "reference_data", monkeypatch)
            wait_for(lambda: every_hour_done(instance), "every hour to succeed", [daemon], RECOVERY_DEADLINE_SECONDS)
            completed = time.time()
            killed_records = instance.get_run_records(dg.RunsFilter(run_ids=list(killed)))
            print(
                "\nafter the restart the killed runs failed by"
                f" {max(r.end_time for r in killed_records) - restarted:.1f} s, every hour was published by"
                f" {completed - restarted:.1f} s"
            )
            # No pool slot stays claimed or queued for (the concurrency daemon frees a dead run's after it ended).
            wait_for(
                lambda: (
                    not (info := instance.event_log_storage.get_concurrency_info(POOL)).claimed_slots and not info.pending_steps
                ),
                f"the slots of pool {POOL} to be free",
                [daemon],
                SLOTS_DEADLINE_SECONDS,
            )
        finally:
            stop_daemon(daemon)

        runs = {run.run_id: run for run in instance.get_runs()}
        assert not [run.run_id for run in runs.values() if run.status in IN_PROGRESS]
        # Run monitoring marked every killed run failed, and each failed run due a retry got one: Dagster's (named by
        # the failed run's tag) or the sensor's (a run tagged as its retry; the sensor names it on the failed run
        # at its next tick, which may come after the hour is done).
        assert {runs[run_id].status for run_id in killed} == {dg.DagsterRunStatus.FAILURE}
        sensor_retries = {run.tags[RETRY_OF_TAG]: run.run_id for run in runs.values() if RETRY_OF_TAG in run.tags}
        unretried = [
            run.run_id
            for run in runs.values()
            if run.status == dg.DagsterRunStatus.FAILURE
            and run.tags.get(WILL_RETRY_TAG) == "true"
            and run.tags.get(AUTO_RETRY_RUN_ID_TAG) not in runs
            and run.run_id not in sensor_retries
        ]
        assert unretried == []
        by_sensor = [run_id for run_id in killed if run_id in sensor_retries]
        print(f"{len(killed)} killed runs, {len(by_sensor)} retried by the sensor, the others by Dagster")
        # `dagster job backfill` completed its backfill at once: Dagster retried none of its runs, the sensor all.
        killed_of_cli = {run_id for run_id in killed if hours_of(runs[run_id]) <= set(by_cli)}
        assert killed_of_cli and killed_of_cli <= set(by_sensor)
        lineages: dict[str, dict[str, list[dg.DagsterRun]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        for run in runs.values():
            for hour in hours_of(run):
                lineages[hour][origin(run, runs)].append(run)
        assert set(lineages) == set(HOURS)
        store = VersionedStore(data)
        for hour, by_origin in lineages.items():
            assert len(by_origin) == 1, f"{hour}: launched once by the backfill, so one run and its retries"
            (lineage,) = by_origin.values()
            succeeded = [run.run_id for run in lineage if run.status == dg.DagsterRunStatus.SUCCESS]
            assert len(succeeded) == 1, f"{hour}: {[(run.run_id, run.status) for run in lineage]}"
            # One successful materialization of the hour's result, and what readers get is the lineage's.
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("consolidated_output"), asset_partitions=[hour]), limit=100
            ).records
            assert [record.run_id for record in records if record.run_id in succeeded] == succeeded
            publishes = [change for change in store.history("consolidated_output", hour) if change["action"] == "publish"]
            assert publishes and {change["run_id"] for change in publishes} <= {run.run_id for run in lineage}
            assert store.published("consolidated_output", hour).version == publishes[-1]["version"]
            for asset in PUBLISHED:
                pd.testing.assert_frame_equal(
                    store.read_published_table(asset, hour), expected[hour][asset], obj=f"{asset} {hour}"
                )


BACKFILL_RUN = {"dagster/backfill": "abcdefgh", "dagster/partition": HOURS[0], WILL_RETRY_TAG: "true"}
RANGE_RUN = {
    "dagster/backfill": "abcdefgh",
    "dagster/asset_partition_range_start": HOURS[0],
    "dagster/asset_partition_range_end": HOURS[2],
    WILL_RETRY_TAG: "true",
}
NOW = 10_000.0
LONG_FAILED = NOW - BACKFILL_RETRY_GRACE_SECONDS - 1


@pytest.mark.parametrize(
    ("tags", "backfill_status", "failed_at", "newer_run", "blocker"),
    [
        (BACKFILL_RUN, "COMPLETED", LONG_FAILED, False, None),  # `dagster job backfill`
        (BACKFILL_RUN, "COMPLETED_FAILED", LONG_FAILED, False, None),  # a UI backfill that completed before the retry
        (BACKFILL_RUN, "COMPLETED_SUCCESS", LONG_FAILED, False, None),
        (BACKFILL_RUN, "REQUESTED", LONG_FAILED, False, "its backfill is in progress"),
        (BACKFILL_RUN, "CANCELED", LONG_FAILED, False, "its backfill was stopped"),
        (BACKFILL_RUN, "FAILED", LONG_FAILED, False, "its backfill was stopped"),
        (BACKFILL_RUN, None, LONG_FAILED, False, "its backfill was stopped"),
        (BACKFILL_RUN, "COMPLETED", NOW - 1, False, "left to Dagster's run retries"),
        (BACKFILL_RUN, "COMPLETED", None, False, "left to Dagster's run retries"),
        (BACKFILL_RUN, "COMPLETED", LONG_FAILED, True, "its hour ran again"),
        ({**BACKFILL_RUN, AUTO_RETRY_RUN_ID_TAG: "r"}, "COMPLETED", LONG_FAILED, False, "retried"),
        ({**BACKFILL_RUN, WILL_RETRY_TAG: "false"}, "COMPLETED", LONG_FAILED, False, "not to be retried"),  # a failed step
        (
            {k: v for k, v in BACKFILL_RUN.items() if k != "dagster/backfill"},
            None,
            LONG_FAILED,
            False,
            "not a run of a backfill's hours",
        ),
        (RANGE_RUN, "COMPLETED", LONG_FAILED, False, None),  # a run of several hours, its backfill completed
        (RANGE_RUN, "REQUESTED", LONG_FAILED, False, "its backfill is in progress"),
        (RANGE_RUN, "COMPLETED", LONG_FAILED, True, "its hour ran again"),
        (
            {k: v for k, v in RANGE_RUN.items() if k != "dagster/asset_partition_range_end"},
            "COMPLETED",
            LONG_FAILED,
            False,
            "not a run of a backfill's hours",
        ),
    ],
)
def test_a_failed_backfill_run_is_retried_only_when_dagster_no_longer_does(tags, backfill_status, failed_at, newer_run, blocker):
    assert backfill_retry_blocker(tags, backfill_status, failed_at, NOW, newer_run) == blocker


def test_a_retry_names_the_hours_of_the_failed_run():
    assert hours_tags(BACKFILL_RUN) == {"dagster/partition": HOURS[0]}
    assert hours_tags(RANGE_RUN) == {
        "dagster/asset_partition_range_start": HOURS[0],
        "dagster/asset_partition_range_end": HOURS[2],
    }
    assert hours_tags({"dagster/backfill": "abcdefgh"}) == {}


def backfilled_with_the_cli(tmp_path: Path, pipelines_text: str, hours_by_job: dict[str, list[str]]) -> tuple[Path, Path]:
    """An instance (its home) on the repository's ``dagster.yaml`` in which ``dagster job backfill`` has queued
    ``hours_by_job`` (no daemon runs them), and the pipelines file."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(TEMPLATE.read_text())
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(textwrap.dedent(pipelines_text))
    env = {**os.environ, "DAGSTER_HOME": str(home), CONFIG_ENV: str(pipelines), "SCALABLE_PIPELINE_DATA_DIR": str(tmp_path)}
    for job, hours in hours_by_job.items():
        dagster_job_backfill(env, job, hours)
    return home, pipelines


@pytest.mark.slow
def test_the_sensor_launches_the_hour_of_a_dead_run_of_a_completed_backfill_again_once(tmp_path):
    """``dagster job backfill`` queues two hours (no daemon runs them); one run is marked failed as run monitoring
    marks a dead run. Dagster would retry it but for its completed backfill: the sensor leaves it to Dagster for
    the grace time, then requests its hour once, and records the retry it finds on the failed run."""
    home, pipelines = backfilled_with_the_cli(tmp_path, PIPELINES, {JOB: HOURS[:2]})
    job = build_definitions(pipelines).resolve_job_def(JOB)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dead, queued = sorted(instance.get_runs(), key=lambda run: run.tags["dagster/partition"])
        instance.report_run_failed(dead, "Exceeded maximum runtime of 1800 seconds.")
        failed = instance.get_run_record_by_id(dead.run_id)
        assert failed.dagster_run.tags[WILL_RETRY_TAG] == "true" and failed.end_time is not None
        now = failed.end_time + 1
        sensor = build_backfill_retries([job], clock=lambda: now)

        def tick() -> dg.SensorResult:
            return sensor(dg.build_sensor_context(instance=instance))

        assert not tick().run_requests  # Dagster's run retries take it up within seconds, if they do
        now = failed.end_time + BACKFILL_RETRY_GRACE_SECONDS + 1
        [request] = tick().run_requests
        assert (request.partition_key, request.run_key) == (HOURS[0], f"retry-of-{dead.run_id}")
        assert request.tags[RETRY_OF_TAG] == dead.run_id
        assert queued.status == dg.DagsterRunStatus.QUEUED  # the live hour is left alone

        # The run the daemon launches for the request; the next tick records it as the failed run's retry.
        retry = instance.create_run_for_job(job, tags={**request.tags, "dagster/partition": HOURS[0]})
        assert not tick().run_requests
        assert instance.get_run_by_id(dead.run_id).tags[AUTO_RETRY_RUN_ID_TAG] == retry.run_id
        assert not tick().run_requests


@pytest.mark.slow
def test_one_tick_launches_again_the_hours_of_dead_backfill_runs_of_two_pipelines(tmp_path):
    """One completed backfill per pipeline, of a different hour each, whose runs are marked failed as run monitoring
    marks dead runs: one tick requests both hours, each for its own pipeline's job, and the next records both
    retries."""
    home, pipelines = backfilled_with_the_cli(tmp_path, TWO_PIPELINES, {JOB: HOURS[:1], OTHER: HOURS[1:2]})
    definitions = build_definitions(pipelines)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dead = {run.job_name: run for run in instance.get_runs()}
        assert sorted(dead) == sorted([JOB, OTHER])
        for run in dead.values():
            instance.report_run_failed(run, "Exceeded maximum runtime of 1800 seconds.")
        failed_at = max(instance.get_run_record_by_id(run.run_id).end_time for run in dead.values())
        jobs = [definitions.resolve_job_def(job) for job in (JOB, OTHER)]
        sensor = build_backfill_retries(jobs, clock=lambda: failed_at + BACKFILL_RETRY_GRACE_SECONDS + 1)

        def tick() -> dg.SensorResult:
            return sensor(dg.build_sensor_context(instance=instance))

        requests = tick().run_requests
        assert sorted((r.job_name, r.partition_key, r.run_key, r.tags[RETRY_OF_TAG]) for r in requests) == sorted(
            [
                (JOB, HOURS[0], f"retry-of-{dead[JOB].run_id}", dead[JOB].run_id),
                (OTHER, HOURS[1], f"retry-of-{dead[OTHER].run_id}", dead[OTHER].run_id),
            ]
        )
        retries = {
            request.job_name: instance.create_run_for_job(
                definitions.resolve_job_def(request.job_name), tags={**request.tags, "dagster/partition": request.partition_key}
            ).run_id
            for request in requests
        }
        assert not tick().run_requests
        assert {job: instance.get_run_by_id(run.run_id).tags[AUTO_RETRY_RUN_ID_TAG] for job, run in dead.items()} == retries
