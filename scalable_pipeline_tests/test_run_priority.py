"""Priorities order queued runs: the run queue daemon dequeues the highest ``priority`` pipeline's run first.

Three runs are submitted to the queue with ``dagster job launch`` (while no daemon runs, so all three wait),
then ``dagster-daemon run`` starts and dequeues them; the order in which they start is asserted.
"""

import os
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from scalable_pipeline.pipelines.config import CONFIG_ENV
from scalable_pipeline_tests.daemon import PROJECT, start_daemon, stop_daemon
from scalable_pipeline_tests.drills import wait_for

pytestmark = pytest.mark.slow

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
    dagster = [sys.executable, "-m", "dagster", "job", "launch", "-w", "workspace.yaml"]
    jobs = (("low", "2026-01-05-01:00"), ("high", "2026-01-05-02:00"), ("middle", "2026-01-05-03:00"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # the SQLite storage made now: three processes creating it at once race on its schema
    launches = [
        subprocess.Popen([*dagster, "-j", job, "--tags", f'{{"dagster/partition": "{partition}"}}'], cwd=PROJECT, env=env)
        for job, partition in jobs
    ]  # all three at once: the queue orders them by priority, not by when they came
    assert [launch.wait(timeout=DEADLINE_SECONDS) for launch in launches] == [0, 0, 0]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        queued = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
        assert sorted((run.job_name, run.tags["dagster/priority"]) for run in queued) == [
            ("high", "9"),
            ("low", "1"),
            ("middle", "5"),
        ]
        daemon = start_daemon(env, tmp_path / "daemon.log")
        try:
            wait_for(
                lambda: len(dequeued_order(instance)) == 3, "the daemon to dequeue the three runs", [daemon], DEADLINE_SECONDS
            )
            assert dequeued_order(instance) == ["high", "middle", "low"]
        finally:
            stop_daemon(daemon)  # and the runs it launched: what they do next is not this test's
