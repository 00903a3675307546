"""A Celery worker lost mid-step: the step goes to a live worker and the run completes with the whole hour.

Real services, as in ``test_celery_workers.py`` (whose deployment fixtures this reuses): PostgreSQL, and
Redis (``SCALABLE_PIPELINE_TEST_REDIS_URL``) or RabbitMQ (``SCALABLE_PIPELINE_TEST_RABBITMQ_URL``); each
test runs on both, skipped with the reason when a URL is unset. A chunk step pauses (the ``faults``
resource, mode ``pause``) until the test has SIGKILLed its worker (or only the pool process running it);
the test then lets paused steps go and starts a second worker. Before ``task_acks_late`` a killed worker's
step was lost and the run waited forever: here the run must end SUCCESS within ``BOUND`` seconds of the
kill (a guard against hanging the suite, not a timing assertion), the published hour equal to the
whole-hour computation and to a clean run's tables although the chunk step ran twice. A step that kills
its process every time fails the run after three attempts instead of being taken again forever, and
re-execution from failure completes the hour. The seconds from the kill to the run's end are printed.

On Redis each test uses a database of its own (one that was empty), since a worker hands back any step of
its database left unacknowledged for the visibility timeout (20 s here), and empties it after; on RabbitMQ
it deletes its queue.
"""

import os
import signal
import subprocess
import time
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
import pytest
import redis
from kombu import Connection

from scalable_pipeline.definitions import defs
from scalable_pipeline.execution.executors import QUEUE_ENV, VISIBILITY_TIMEOUT_ENV, WORKER_LOST_RETRIES
from scalable_pipeline_tests import drills
from scalable_pipeline_tests.test_celery_workers import (  # noqa: F401  (fixtures)
    BROKER_URLS,
    CHUNK_STEP,
    Deployment,
    deployment,
    instance,
    only_run,
    records,
    worker_name,
)
from scalable_pipeline_tests.test_pipeline import expected_from_raw
from scalable_pipeline_tests.test_postgres_storage import POSTGRES_URL, postgres_database  # noqa: F401  (fixture)
from scalable_pipeline_tests.test_restart_drills import assert_same_tables, clean_tables  # noqa: F401  (fixture)

BOUND = 240  # seconds from the kill to the run's end; the run ends in well under a minute
VISIBILITY_SECONDS = 20  # Redis: a lost worker's steps go to another worker this long after delivery
HELD_CHUNK = 1
HELD_STEP = f"{CHUNK_STEP}chunk_{HELD_CHUNK:05d}]"

pytestmark = [
    pytest.mark.services,
    pytest.mark.slow,
    pytest.mark.skipif(not POSTGRES_URL, reason="SCALABLE_PIPELINE_TEST_POSTGRES_URL is not set (Celery tests off)"),
]


def own_redis_database(url: str) -> str:
    """The URL of an empty database of the Redis server of ``url`` (from 15 down), for this test alone."""
    parts = urlsplit(url)
    for number in range(15, 0, -1):
        candidate = parts._replace(path=f"/{number}").geturl()
        with redis.Redis.from_url(candidate) as client:
            if client.dbsize() == 0:
                return candidate
    pytest.skip(f"no empty database on the Redis server of {url} for the worker loss tests")


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    """Each broker (skipped with the reason when its URL is unset); on Redis, a database of the test's own."""
    url = BROKER_URLS[request.param]
    if not url:
        pytest.skip(f"SCALABLE_PIPELINE_TEST_{request.param.upper()}_URL is not set ({request.param} broker tests off)")
    if request.param != "redis":
        yield url
        return
    own = own_redis_database(url)
    yield own
    with redis.Redis.from_url(own) as client:  # the database was empty: every key in it is this test's
        for key in client.scan_iter(count=1000):
            client.delete(key)


@pytest.fixture
def cluster(deployment, broker):  # noqa: F811
    """The test's deployment, with a short Redis visibility timeout; on RabbitMQ its queue is deleted after
    (on Redis, the whole database is emptied)."""
    deployment.env[VISIBILITY_TIMEOUT_ENV] = str(VISIBILITY_SECONDS)
    yield deployment
    if urlsplit(broker).scheme not in ("redis", "rediss"):
        for process in deployment.processes:  # nothing consumes the queue while it goes
            Deployment.stop(process, signal.SIGKILL)
        with Connection(broker) as connection:
            connection.default_channel.queue_delete(deployment.env[QUEUE_ENV])


def paused(cluster: Deployment) -> dict:
    """Run config: chunk 1 pauses in its step until the release file exists."""
    release = str(cluster.tmp_path / "release")
    return drills.run_config({"fail_chunks": [HELD_CHUNK], "mode": "pause", "release_file": release, "slow_seconds": 3600})


def held_in_chunk(pg_instance: dg.DagsterInstance):
    """The step's log of its fault, once chunk 1's step is paused inside its op (the hour's lease taken)."""
    dagster_run = only_run(pg_instance)
    if dagster_run is None:
        return None
    pausing = f"faults: simulated pause in chunk {HELD_CHUNK}"
    logs = pg_instance.all_logs(dagster_run.run_id)  # a log message is no Dagster event: no type to filter on
    return next((record for record in logs if record.step_key == HELD_STEP and pausing in record.user_message), None)


def workers_of(pg_instance: dg.DagsterInstance, run_id: str, step_key: str) -> list[str]:
    """The Celery workers that took the step, in order (a redelivered step is taken again)."""
    return [
        event.engine_event_data.metadata["Celery worker"].value
        for event in records(pg_instance, run_id, dg.DagsterEventType.ENGINE_EVENT)
        if event.step_key == step_key and "Celery worker" in event.engine_event_data.metadata
    ]


def finish_within_bound(deployed: Deployment, run, killed_at: float) -> float:
    """Wait at most ``BOUND`` seconds for the run's process; the seconds from the kill to its end."""
    try:
        code = run.wait(timeout=BOUND)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the run did not end within {BOUND} s of the kill; its log:\n{deployed.log(run)[-3000:]}") from None
    assert code == 0, deployed.log(run)[-3000:]
    return time.time() - killed_at


def assert_whole_hour(deployed: Deployment, pg_instance: dg.DagsterInstance, clean: dict) -> None:
    raw = defs.load_asset_value("raw_volume", partition_key=drills.PARTITION, instance=pg_instance)
    output = defs.load_asset_value("consolidated_output", partition_key=drills.PARTITION, instance=pg_instance)
    pd.testing.assert_frame_equal(output, expected_from_raw(raw, drills.PARTITION)["valid"], check_dtype=False)
    assert_same_tables(deployed.data_dir, clean)  # processed_chunks too: no row counted twice


def test_killed_worker_steps_go_to_a_new_worker_and_the_run_completes(cluster, instance, clean_tables, broker):  # noqa: F811
    first = cluster.start_worker(concurrency=2)
    run = cluster.start_run(paused(cluster))
    drills.wait_for(lambda: held_in_chunk(instance), f"chunk {HELD_CHUNK} paused in its step", [run, first])
    run_id = only_run(instance).run_id
    assert workers_of(instance, run_id, HELD_STEP) == [worker_name(first)]

    Deployment.stop(first, signal.SIGKILL)  # the worker and its pool die mid-step, acknowledging nothing
    killed_at = time.time()
    (cluster.tmp_path / "release").touch()  # the step delivered again no longer pauses
    second = cluster.start_worker(concurrency=2)
    seconds = finish_within_bound(cluster, run, killed_at)
    print(f"\n{urlsplit(broker).scheme}: worker SIGKILLed mid-step -> run SUCCESS in {seconds:.1f} s")

    assert only_run(instance).status == dg.DagsterRunStatus.SUCCESS
    assert workers_of(instance, run_id, HELD_STEP)[-1] == worker_name(second)  # delivered again, same run
    started = [e.step_key for e in records(instance, run_id, dg.DagsterEventType.STEP_START)].count(HELD_STEP)
    assert started >= 2  # it ran twice: once in the killed worker, once in the new one
    Deployment.stop(second)
    assert_whole_hour(cluster, instance, clean_tables)


def test_killed_pool_process_step_is_put_back_and_the_run_completes(cluster, instance, clean_tables, broker):  # noqa: F811
    worker = cluster.start_worker(concurrency=2)
    run = cluster.start_run(paused(cluster))
    held = drills.wait_for(lambda: held_in_chunk(instance), f"chunk {HELD_CHUNK} paused in its step", [run, worker])
    run_id = only_run(instance).run_id
    step_pid = next(e.pid for e in records(instance, run_id, dg.DagsterEventType.STEP_START) if e.step_key == HELD_STEP)
    assert held.step_key == HELD_STEP and step_pid != worker.pid

    os.kill(step_pid, signal.SIGKILL)  # only the pool process running the step dies (as under the OOM killer)
    killed_at = time.time()
    (cluster.tmp_path / "release").touch()
    seconds = finish_within_bound(cluster, run, killed_at)
    print(f"\n{urlsplit(broker).scheme}: pool process SIGKILLed mid-step -> run SUCCESS in {seconds:.1f} s")

    assert only_run(instance).status == dg.DagsterRunStatus.SUCCESS
    assert workers_of(instance, run_id, HELD_STEP) == [worker_name(worker)] * 2  # put back, taken again
    Deployment.stop(worker)
    assert_whole_hour(cluster, instance, clean_tables)


def test_step_that_always_kills_its_process_fails_the_run_then_reexecution_completes(cluster, instance, clean_tables, broker):  # noqa: F811
    worker = cluster.start_worker(concurrency=2)
    started_at = time.time()
    run = cluster.start_run(drills.run_config({"fail_chunks": [HELD_CHUNK], "mode": "kill"}))  # every attempt dies
    try:
        code = run.wait(timeout=BOUND)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the run did not end within {BOUND} s: the step is taken again forever") from None
    print(f"\n{urlsplit(broker).scheme}: step killing its process each time -> run FAILURE in {time.time() - started_at:.1f} s")
    failed = only_run(instance)
    assert code != 0 and failed.status == dg.DagsterRunStatus.FAILURE
    assert "WorkerLostError" in cluster.log(run)
    assert workers_of(instance, failed.run_id, HELD_STEP) == [worker_name(worker)] * (WORKER_LOST_RETRIES + 1)

    resumed = cluster.start_run(drills.run_config(), parent_run_id=failed.run_id)  # faults spare re-executions
    finish_within_bound(cluster, resumed, time.time())
    resumed_run = next(r for r in instance.get_runs() if r.parent_run_id == failed.run_id)
    assert resumed_run.status == dg.DagsterRunStatus.SUCCESS
    Deployment.stop(worker)
    assert_whole_hour(cluster, instance, clean_tables)
