"""The daemon killed mid-backfill: the hours it was running are run again, each published once, whole.

Six small hours are queued, one ``dagster job launch`` each with its partition tag (the runs of a
``dagster job backfill`` are never retried: that command records its backfill as completed once it has queued
them), on a SQLite instance whose ``dagster.yaml`` is the repository's with its monitoring times shortened.
``dagster-daemon run`` runs them; once an hour has succeeded and others are running, the daemon's process
group (the daemon, its code server, every run it launched and their step processes) is killed with SIGKILL,
and a new daemon is started. Every hour must end published by one successful chain of runs (a run and its
retries), equal to the in-process computation of the hour, with no run left in progress and no pool slot held.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import psutil
import pytest
import yaml

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.cli.pools import apply_pool_limits
from scalable_pipeline.execution.executors import EXECUTOR_ENV
from scalable_pipeline.pipelines.config import CONFIG_ENV, load_pipelines
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.test_pipelines import PINNED, START

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
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
# The repository's run monitoring times, shortened where they are set (a setting it lacks stays unset): a
# dead run is found 120 s after it started rather than 30 min; the runs here take 5-40 s.
SHORTER = {
    "start_timeout_seconds": 120,
    "cancel_timeout_seconds": 60,
    "max_runtime_seconds": 120,
    "poll_interval_seconds": 5,
    "free_slots_after_run_end_seconds": 5,
}
KILL_DEADLINE_SECONDS = 600
RECOVERY_DEADLINE_SECONDS = 900
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


def start_daemon(env: dict, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its code server and every run it launches are in it
        )


def live_members(group: int) -> list[psutil.Process]:
    """Processes of the process group that are not zombies (PID 1 here may never reap them)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def stop(daemon: subprocess.Popen) -> None:
    """End a daemon still running and what it launched (SIGTERM, then SIGKILL)."""
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def wait_for(condition, deadline_seconds: float, what: str, daemon: subprocess.Popen | None = None):
    deadline = time.monotonic() + deadline_seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting {deadline_seconds} s for {what}"
        assert daemon is None or daemon.poll() is None, f"the daemon exited ({daemon.returncode}) before {what}"
        time.sleep(0.5)
    return result


def every_hour_done(instance: dg.DagsterInstance) -> bool:
    runs = instance.get_runs()
    succeeded = {run.tags["dagster/partition"] for run in runs if run.status == dg.DagsterRunStatus.SUCCESS}
    return succeeded == set(HOURS) and not any(run.status in IN_PROGRESS for run in runs)


def reference_tables(pipelines: Path, reference_root: Path, monkeypatch) -> dict[str, dict[str, pd.DataFrame]]:
    """Every hour as the same pipeline computes it in process, in a data root of its own."""
    monkeypatch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(reference_root))
    job = build_definitions(pipelines).resolve_job_def(JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        for hour in HOURS:
            assert job.execute_in_process(partition_key=hour, instance=instance).success
    store = VersionedStore(reference_root)
    return {hour: {asset: store.read_published_table(asset, hour) for asset in PUBLISHED} for hour in HOURS}


def test_a_killed_daemon_and_its_runs_leave_every_hour_published_once(tmp_path, monkeypatch):
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
    with dg.DagsterInstance.from_config(str(home)) as instance:
        apply_pool_limits(instance, load_pipelines(pipelines))
        for hour in HOURS:  # queued while no daemon runs
            launch = ["job", "launch", "-w", "workspace.yaml", "-j", JOB, "--tags", json.dumps({"dagster/partition": hour})]
            subprocess.run([sys.executable, "-m", "dagster", *launch], cwd=PROJECT, env=env, check=True, capture_output=True)

        daemon = start_daemon(env, tmp_path / "daemon.log")
        try:
            wait_for(
                lambda: (
                    (counts := statuses(instance))[dg.DagsterRunStatus.SUCCESS] >= 1 and counts[dg.DagsterRunStatus.STARTED] >= 2
                ),
                KILL_DEADLINE_SECONDS,
                "an hour published while others run",
                daemon,
            )
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
            wait_for(lambda: not live_members(daemon.pid), 60, "every process of the daemon's group to die")
        finally:
            stop(daemon)
        killed = {run.run_id for run in instance.get_runs() if run.status in IN_PROGRESS - {dg.DagsterRunStatus.QUEUED}}
        assert len(killed) >= 2

        daemon = start_daemon(env, tmp_path / "daemon.log")
        restarted = time.time()  # run records' times are wall-clock times
        try:
            wait_for(lambda: every_hour_done(instance), RECOVERY_DEADLINE_SECONDS, "every hour to succeed", daemon)
            completed = time.time()
            killed_records = instance.get_run_records(dg.RunsFilter(run_ids=list(killed)))
            print(
                f"\nafter the restart: the killed runs failed by {max(r.end_time for r in killed_records) - restarted:.1f} s,"
                f" every hour published by {completed - restarted:.1f} s"
            )
            # No pool slot stays claimed or queued for (the concurrency daemon frees a dead run's after it ended).
            wait_for(
                lambda: (
                    not (info := instance.event_log_storage.get_concurrency_info(POOL)).claimed_slots and not info.pending_steps
                ),
                SLOTS_DEADLINE_SECONDS,
                f"the slots of pool {POOL} to be free",
                daemon,
            )
        finally:
            stop(daemon)

        runs = instance.get_runs()
        assert not [run.run_id for run in runs if run.status in IN_PROGRESS]
        # Run monitoring marked every killed run failed; each hour's success is a retry in the killed run's chain.
        assert {run.status for run in runs if run.run_id in killed} == {dg.DagsterRunStatus.FAILURE}
        chains: dict[str, dict[str, list[dg.DagsterRun]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        for run in runs:
            chains[run.tags["dagster/partition"]][run.root_run_id or run.run_id].append(run)
        assert set(chains) == set(HOURS)
        store = VersionedStore(data)
        expected = reference_tables(pipelines, tmp_path / "reference_data", monkeypatch)
        for hour, by_root in chains.items():
            assert len(by_root) == 1, f"{hour}: launched once, so one chain of runs"
            (chain,) = by_root.values()
            succeeded = [run.run_id for run in chain if run.status == dg.DagsterRunStatus.SUCCESS]
            assert len(succeeded) == 1, f"{hour}: {[(run.run_id, run.status) for run in chain]}"
            # One successful materialization of the hour's result, and what readers get is the chain's.
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("consolidated_output"), asset_partitions=[hour]), limit=100
            ).records
            assert [record.run_id for record in records if record.run_id in succeeded] == succeeded
            publishes = [change for change in store.history("consolidated_output", hour) if change["action"] == "publish"]
            assert publishes and {change["run_id"] for change in publishes} <= {run.run_id for run in chain}
            assert store.published("consolidated_output", hour).version == publishes[-1]["version"]
            for asset in PUBLISHED:
                pd.testing.assert_frame_equal(
                    store.read_published_table(asset, hour), expected[hour][asset], obj=f"{asset} {hour}"
                )
