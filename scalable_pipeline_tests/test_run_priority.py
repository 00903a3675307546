"""Priorities order queued runs: the run queue daemon dequeues the highest ``priority`` pipeline's run first.

Three runs are submitted to the queue with ``dagster job launch`` (while no daemon runs, so all three wait),
then ``dagster-daemon run`` starts and dequeues them; the order in which they start is asserted.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from scalable_pipeline.pipelines.config import CONFIG_ENV

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
PIPELINES = """
pipelines:
  - name: low
    start: "2026-01-01-00:00"
    priority: 1
    source: {kind: synthetic, scale: 0.01}
    scaling: {chunk_count: 1, single_step_below: 1000000000}
  - name: high
    start: "2026-01-01-00:00"
    priority: 9
    source: {kind: synthetic, scale: 0.01}
    scaling: {chunk_count: 1, single_step_below: 1000000000}
  - name: middle
    start: "2026-01-01-00:00"
    priority: 5
    source: {kind: synthetic, scale: 0.01}
    scaling: {chunk_count: 1, single_step_below: 1000000000}
"""
INSTANCE = """
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
  config: {max_concurrent_runs: 3}
telemetry: {enabled: false}
"""
DEADLINE_SECONDS = 240


def dequeued_order(instance: dg.DagsterInstance) -> list[str]:
    """Jobs of the runs in the order the daemon dequeued and launched them (each launch records RUN_STARTING)."""
    records = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_STARTING, limit=10, ascending=True).records
    runs = [instance.get_run_by_id(record.run_id) for record in records]
    return [run.job_name for run in runs if run]


def test_the_queue_dequeues_higher_priority_pipelines_first(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(textwrap.dedent(INSTANCE))
    config = tmp_path / "pipelines.yaml"
    config.write_text(textwrap.dedent(PIPELINES))
    env = {**os.environ, "DAGSTER_HOME": str(home), CONFIG_ENV: str(config), "SCALABLE_PIPELINE_DATA_DIR": str(tmp_path / "data")}
    dagster = [sys.executable, "-m", "dagster"]
    for job, partition in (("low", "2026-01-05-01:00"), ("high", "2026-01-05-02:00"), ("middle", "2026-01-05-03:00")):
        launch = [
            *dagster,
            "job",
            "launch",
            "-w",
            "workspace.yaml",
            "-j",
            job,
            "--tags",
            f'{{"dagster/partition": "{partition}"}}',
        ]
        subprocess.run(launch, cwd=PROJECT, env=env, check=True, capture_output=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        queued = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
        assert sorted((run.job_name, run.tags["dagster/priority"]) for run in queued) == [
            ("high", "9"),
            ("low", "1"),
            ("middle", "5"),
        ]
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the runs it launches stop with it
        )
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while len(dequeued_order(instance)) < 3 and time.monotonic() < deadline and daemon.poll() is None:
                time.sleep(0.5)
            assert dequeued_order(instance) == ["high", "middle", "low"]
            finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
            while time.monotonic() < deadline and any(run.status not in finished for run in instance.get_runs()):
                time.sleep(0.5)  # let the launched runs end before the daemon goes
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
