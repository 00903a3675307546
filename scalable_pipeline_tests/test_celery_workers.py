"""The main job on Celery workers with PostgreSQL storage: each broker, a killed worker, two workers, pools.

Needs ``SCALABLE_PIPELINE_TEST_POSTGRES_URL`` and the broker URL of ``SCALABLE_PIPELINE_TEST_REDIS_URL``
(e.g. ``redis://127.0.0.1:6379/0``) or ``SCALABLE_PIPELINE_TEST_RABBITMQ_URL``
(``pyamqp://guest@127.0.0.1:5672//``); ``.ci/run`` sets them. Every test makes its own database, data
root, ``DAGSTER_HOME`` (``deploy/dagster.yaml``) and queue name, starts its workers and its run as
processes in their own sessions, and stops only those, by process group. Waits poll the event log in
PostgreSQL for the events they need, with a generous timeout.
"""

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import psutil
import pytest

from scalable_pipeline.assembly.project import scalable_data_processing_job
from scalable_pipeline.definitions import defs
from scalable_pipeline.execution.executors import BROKER_ENV, EXECUTOR_ENV, QUEUE_ENV
from scalable_pipeline_tests import drills
from scalable_pipeline_tests.test_pipeline import expected_from_raw
from scalable_pipeline_tests.test_postgres_storage import POSTGRES_URL, postgres_database  # noqa: F401  (fixture)
from scalable_pipeline_tests.test_restart_drills import assert_same_tables, clean_tables  # noqa: F401  (fixture)

BROKER_URLS = {
    "redis": os.environ.get("SCALABLE_PIPELINE_TEST_REDIS_URL"),
    "rabbitmq": os.environ.get("SCALABLE_PIPELINE_TEST_RABBITMQ_URL"),
}
DEPLOY_DAGSTER_YAML = Path(__file__).parents[1] / "deploy" / "dagster.yaml"
TIMEOUT = 300  # seconds; every wait ends early on the event it waits for
CHUNK_STEP = "processed_chunks.process_chunk["

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not POSTGRES_URL, reason="SCALABLE_PIPELINE_TEST_POSTGRES_URL is not set (Celery tests off)"),
]


def broker_param(name: str):
    reason = f"SCALABLE_PIPELINE_TEST_{name.upper()}_URL is not set ({name} broker tests off)"
    return pytest.param(BROKER_URLS[name], marks=pytest.mark.skipif(not BROKER_URLS[name], reason=reason), id=name)


EACH_BROKER = pytest.mark.parametrize("broker", [broker_param("redis"), broker_param("rabbitmq")])


@pytest.fixture
def broker() -> str:
    """Redis, unless a test is parametrized with each broker."""
    if not BROKER_URLS["redis"]:
        pytest.skip("SCALABLE_PIPELINE_TEST_REDIS_URL is not set (redis broker tests off)")
    return BROKER_URLS["redis"]


class Deployment:
    """One test's deployment: a PostgreSQL instance, a data root, a queue, and the processes it started."""

    def __init__(self, tmp_path: Path, pg_url: str, broker: str, data_dir: Path):
        self.tmp_path = tmp_path
        self.home = tmp_path / "dagster_home"
        self.home.mkdir()
        shutil.copy(DEPLOY_DAGSTER_YAML, self.home / "dagster.yaml")
        self.pg_url = pg_url
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_URL": pg_url,
            "SCALABLE_PIPELINE_DATA_DIR": str(data_dir),
            EXECUTOR_ENV: "celery",
            BROKER_ENV: broker,
            QUEUE_ENV: f"test-{uuid.uuid4().hex[:12]}",
        }
        self.processes: list[subprocess.Popen] = []

    def start(self, argv: list[str], log_name: str) -> subprocess.Popen:
        with open(self.tmp_path / log_name, "w") as log:
            process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen:
        argv = [sys.executable, "-m", "scalable_pipeline", "worker", "--concurrency", str(concurrency)]
        return self.start(argv, f"worker-{len(self.processes)}.log")

    def start_run(self, config: dict, parent_run_id: str | None = None) -> subprocess.Popen:
        code = f"from scalable_pipeline_tests.test_celery_workers import drive; drive({json.dumps(config)!r}, {parent_run_id!r})"
        return self.start([sys.executable, "-c", code], f"run-{len(self.processes)}.log")

    def log(self, process: subprocess.Popen) -> str:
        index = self.processes.index(process)
        return next(self.tmp_path.glob(f"*-{index}.log")).read_text()

    def finish(self, process: subprocess.Popen) -> int:
        try:
            return process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process did not end in {TIMEOUT} s; its log:\n{self.log(process)[-3000:]}") from None

    @staticmethod
    def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        """Signal the process group this test started (a worker and its pool), then reap it."""
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)

    def close(self) -> None:
        for process in self.processes:
            self.stop(process, signal.SIGKILL)


@pytest.fixture
def deployment(tmp_path, postgres_database, broker, data_dir, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_database)
    deployed = Deployment(tmp_path, postgres_database, broker, data_dir)
    yield deployed
    deployed.close()


@pytest.fixture
def instance(deployment):
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": deployment.pg_url}}}) as pg_instance:
        yield pg_instance


def drive(config_json: str, parent_run_id: str | None) -> None:
    """The run's process: the main job on the executor of the environment, on the instance of ``$DAGSTER_HOME``."""
    with dg.DagsterInstance.get() as instance:
        config = json.loads(config_json)
        result = drills.execute_partition(scalable_data_processing_job, instance, config, drills.PARTITION, parent_run_id)
    sys.exit(0 if result.success else 1)


def records(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> list:
    return [record.dagster_event for record in instance.all_logs(run_id, of_type=event_type)]


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that ran it, as the worker reported it to the event log."""
    return {
        event.step_key: event.engine_event_data.metadata["Celery worker"].value
        for event in records(instance, run_id, dg.DagsterEventType.ENGINE_EVENT)
        if "Celery worker" in event.engine_event_data.metadata
    }


def step_keys(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> set[str]:
    return {event.step_key for event in records(instance, run_id, event_type) if event.step_key.startswith(CHUNK_STEP)}


def worker_name(worker: subprocess.Popen) -> str:
    return f"scalable-pipeline-{worker.pid}@{socket.gethostname()}"


def pool_pids(worker: subprocess.Popen) -> set[int]:
    """The worker's pool processes (its descendants)."""
    return {child.pid for child in psutil.Process(worker.pid).children(recursive=True)}


def only_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    runs = instance.get_runs()
    return runs[0] if len(runs) == 1 else None


@EACH_BROKER
def test_main_job_on_celery_matches_the_whole_hour(deployment, instance):
    worker = deployment.start_worker()
    run = deployment.start_run(drills.run_config())
    assert deployment.finish(run) == 0, deployment.log(run)[-3000:]

    dagster_run = only_run(instance)
    assert dagster_run.status == dg.DagsterRunStatus.SUCCESS
    ran_in = step_workers(instance, dagster_run.run_id)
    chunk_steps = {key for key in ran_in if key.startswith(CHUNK_STEP)}
    assert len(chunk_steps) == drills.CHUNKS and set(ran_in.values()) == {worker_name(worker)}
    pool = pool_pids(worker)
    step_pids = {event.pid for event in records(instance, dagster_run.run_id, dg.DagsterEventType.STEP_START)}
    assert step_pids and step_pids <= pool  # every step ran in the worker's pool processes, none in the run's process
    Deployment.stop(worker)

    raw = defs.load_asset_value("raw_volume", partition_key=drills.PARTITION, instance=instance)
    output = defs.load_asset_value("consolidated_output", partition_key=drills.PARTITION, instance=instance)
    pd.testing.assert_frame_equal(output, expected_from_raw(raw, drills.PARTITION)["valid"], check_dtype=False)


def test_killed_worker_then_reexecution_from_failure_publishes_a_clean_run(deployment, instance, clean_tables):  # noqa: F811
    release = deployment.tmp_path / "release"  # never created: chunk 1 holds its worker until it is killed
    paused = drills.run_config({"fail_chunks": [1], "mode": "pause", "release_file": str(release), "slow_seconds": 3600})
    first_worker = deployment.start_worker(concurrency=2)
    run = deployment.start_run(paused)

    def held_in_chunk_1():
        dagster_run = only_run(instance)
        if dagster_run is None:
            return None
        done = step_keys(instance, dagster_run.run_id, dg.DagsterEventType.STEP_SUCCESS)
        started = step_keys(instance, dagster_run.run_id, dg.DagsterEventType.STEP_START)
        return dagster_run if f"{CHUNK_STEP}chunk_00001]" in started and len(done) == drills.CHUNKS - 1 else None

    failed = drills.wait_for(held_in_chunk_1, "chunk 1 held, the other chunks done", [run, first_worker])
    assert step_workers(instance, failed.run_id)[f"{CHUNK_STEP}chunk_00001]"] == worker_name(first_worker)
    Deployment.stop(first_worker, signal.SIGKILL)  # the worker and its pool die mid-step
    # The run waits for a result that will never come; its process dies too, and run monitoring would
    # mark the run failed: do what it does.
    Deployment.stop(run, signal.SIGKILL)
    instance.report_run_failed(instance.get_run_by_id(failed.run_id))

    second_worker = deployment.start_worker(concurrency=2)
    resumed = deployment.start_run(drills.run_config(), parent_run_id=failed.run_id)
    assert deployment.finish(resumed) == 0, deployment.log(resumed)[-3000:]
    resumed_run = next(r for r in instance.get_runs() if r.parent_run_id == failed.run_id)
    assert resumed_run.status == dg.DagsterRunStatus.SUCCESS
    assert step_keys(instance, resumed_run.run_id, dg.DagsterEventType.STEP_START) == {f"{CHUNK_STEP}chunk_00001]"}
    assert set(step_workers(instance, resumed_run.run_id).values()) == {worker_name(second_worker)}
    Deployment.stop(second_worker)
    assert_same_tables(deployment.data_dir, clean_tables)


def test_two_workers_share_the_queue(deployment, instance):
    release = deployment.tmp_path / "release"
    every_chunk_pauses = {"fail_chunks": list(range(drills.CHUNKS)), "mode": "pause", "release_file": str(release)}
    workers = [deployment.start_worker(concurrency=1), deployment.start_worker(concurrency=1)]
    run = deployment.start_run(drills.run_config({**every_chunk_pauses, "slow_seconds": 3600}))

    def two_chunks_held():
        dagster_run = only_run(instance)
        started = step_keys(instance, dagster_run.run_id, dg.DagsterEventType.STEP_START) if dagster_run else set()
        return dagster_run if len(started) == 2 else None

    # One step at a time per worker: two chunk steps held at once are held by two workers.
    dagster_run = drills.wait_for(two_chunks_held, "two chunk steps held at once", [run, *workers])
    holders = {worker for key, worker in step_workers(instance, dagster_run.run_id).items() if key.startswith(CHUNK_STEP)}
    assert holders == {worker_name(worker) for worker in workers}
    release.touch()
    assert deployment.finish(run) == 0, deployment.log(run)[-3000:]
    assert only_run(instance).status == dg.DagsterRunStatus.SUCCESS
    for worker in workers:
        Deployment.stop(worker)

    raw = defs.load_asset_value("raw_volume", partition_key=drills.PARTITION, instance=instance)
    output = defs.load_asset_value("consolidated_output", partition_key=drills.PARTITION, instance=instance)
    pd.testing.assert_frame_equal(output, expected_from_raw(raw, drills.PARTITION)["valid"], check_dtype=False)


def test_pool_limit_caps_chunk_steps_across_workers(deployment, instance):
    instance.event_log_storage.set_concurrency_slots("chunk_processing", 1)
    workers = [deployment.start_worker(concurrency=2), deployment.start_worker(concurrency=2)]
    run = deployment.start_run(drills.run_config())
    assert deployment.finish(run) == 0, deployment.log(run)[-3000:]
    for worker in workers:
        Deployment.stop(worker)

    run_id = only_run(instance).run_id
    spans: dict[str, list[float]] = {}
    for event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS):
        for record in instance.all_logs(run_id, of_type=event_type):
            if record.step_key.startswith(("processed_chunks.process_chunk[", "processed_chunks.process_range[")):
                spans.setdefault(record.step_key, []).append(record.timestamp)
    assert sum(key.startswith(CHUNK_STEP) for key in spans) == drills.CHUNKS and len(spans) > drills.CHUNKS
    intervals = sorted(spans.values())
    # Four pool processes could run them at once; with one slot they ran one after another.
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(intervals))


def test_retry_policy_requeues_a_failed_chunk_step(deployment, instance):
    worker = deployment.start_worker()
    transient = {"fail_chunks": [2], "mode": "raise", "fail_first_attempts": 1}
    run = deployment.start_run(drills.run_config(transient))
    assert deployment.finish(run) == 0, deployment.log(run)[-3000:]
    Deployment.stop(worker)

    run_id = only_run(instance).run_id
    chunk_2 = f"{CHUNK_STEP}chunk_00002]"
    assert step_keys(instance, run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY) == {chunk_2}
    assert step_keys(instance, run_id, dg.DagsterEventType.STEP_RESTARTED) == {chunk_2}  # the second attempt
    assert len(step_keys(instance, run_id, dg.DagsterEventType.STEP_SUCCESS)) == drills.CHUNKS
