"""The instance database restarting in the middle of a run, on every executor; the daemon and the webserver after it.

The tests start a private PostgreSQL cluster (``initdb`` into a temporary folder, a free port of its own; as
root, run as the ``postgres`` OS user) and stop or restart only that one, never the shared server. They run
when ``SCALABLE_PIPELINE_TEST_POSTGRES_URL`` turns the service tests on and the PostgreSQL server binaries are
installed; Celery also needs ``SCALABLE_PIPELINE_TEST_REDIS_URL`` (this file uses its own Redis database).

A run (``deploy/dagster.yaml``: runs and events in PostgreSQL) holds chunk 1 until the test has seen its
STEP_START in the event log; the test then stops the cluster, lets chunk 1 go (it ends and writes its events
while the database is down), and starts the cluster again at once (a restart) or after ``LONG_OUTAGE``
seconds, longer than Dagster's retries of a failed connection (5, from 0.2 s doubling: about 6 s). The run
either rides through, or fails and is re-executed from failure; either way the hour published is the clean
run's, never a part of it. On Celery the database stays down until a chunk step has failed without recording
any event, which re-execution from failure does not run again (``fan_out_ranges`` shuffles that chunk).
"""

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg2
import pytest

from scalable_pipeline.core.dagster_home import PROJECT_DAGSTER_YAML
from scalable_pipeline.execution.executors import EXECUTOR_ENV
from scalable_pipeline.observing.read_model import recorded_versions
from scalable_pipeline_tests import drills
from scalable_pipeline_tests.test_celery_workers import TIMEOUT, Deployment, instance, step_keys  # noqa: F401  (fixture)
from scalable_pipeline_tests.test_restart_drills import assert_same_tables, clean_tables  # noqa: F401  (fixture)

POSTGRES_URL = os.environ.get("SCALABLE_PIPELINE_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("SCALABLE_PIPELINE_TEST_REDIS_URL")
REDIS_DB = 11  # this file's own Redis database: other tests and CI use theirs


def server_binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    candidates = [Path(found).parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    return next((folder for folder in candidates if (folder / "pg_ctl").exists()), None)


PG_BIN = server_binaries()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.services,
    pytest.mark.skipif(not POSTGRES_URL, reason="SCALABLE_PIPELINE_TEST_POSTGRES_URL is not set (PostgreSQL tests off)"),
    pytest.mark.skipif(PG_BIN is None, reason="no PostgreSQL server binaries (initdb, pg_ctl) for a private cluster"),
]
LONG_OUTAGE = 15.0  # seconds the cluster stays down: longer than Dagster's connection retries
CHUNK_1 = "processed_chunks.process_chunk[chunk_00001]"
PROJECT_ROOT = PROJECT_DAGSTER_YAML.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateCluster:
    """A PostgreSQL cluster of this test module: its own folder, port and socket; stopped and removed at the end."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="scalable_pipeline_pg_"))
        self.data, self.log, self.port = self.root / "data", self.root / "server.log", free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres OS user
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                pytest.skip("running as root and there is no postgres OS user to own a private cluster")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.command("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:  # start and restart read these: no -o to repeat
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\n"
            )
        self.running = False

    def command(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / program), *args], check=True, capture_output=True)

    def pg_ctl(self, *args: str) -> None:
        self.command("pg_ctl", "-D", str(self.data), "-l", str(self.log), *args)

    def start(self) -> None:
        self.pg_ctl("-w", "start")
        self.running = True

    def stop(self) -> None:
        """A fast shutdown: open connections are closed, as when the service restarts."""
        self.pg_ctl("-m", "fast", "-w", "stop")
        self.running = False

    def connect(self, database: str = "postgres"):
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database)
        connection.autocommit = True
        return connection

    def new_database(self) -> str:
        """A new database; its SQLAlchemy URL."""
        name = f"scalable_pipeline_test_{uuid.uuid4().hex[:12]}"
        admin = self.connect()
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            admin.close()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        if self.running:
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    assert PG_BIN is not None
    private = PrivateCluster(PG_BIN)
    try:
        private.start()
        yield private
    finally:
        private.close()


def restart(cluster: PrivateCluster, outage: float, during=lambda: None) -> float:
    """Stop the cluster, call ``during`` while it is down, start it again after ``outage`` seconds; returns
    the time the stop began (``time.monotonic``)."""
    began = time.monotonic()
    cluster.stop()
    during()
    time.sleep(outage)
    cluster.start()
    return began


def redis_broker() -> str:
    parts = urlsplit(REDIS_URL or "")
    return urlunsplit((parts.scheme, parts.netloc, f"/{REDIS_DB}", "", ""))


NEEDS_REDIS = pytest.mark.skipif(not REDIS_URL, reason="SCALABLE_PIPELINE_TEST_REDIS_URL is not set (Celery tests off)")
EXECUTORS = [
    pytest.param("in_process", 0.0, id="in_process-restart"),
    pytest.param("in_process", LONG_OUTAGE, id="in_process-long-outage"),
    pytest.param("multiprocess", 0.0, id="multiprocess-restart"),
    pytest.param("multiprocess", LONG_OUTAGE, id="multiprocess-long-outage"),
    pytest.param("celery", 0.0, id="celery-restart", marks=NEEDS_REDIS),
]


@pytest.fixture
def deployment(tmp_path, cluster, data_dir):
    deployed = Deployment(tmp_path, cluster.new_database(), redis_broker(), data_dir)
    yield deployed
    deployed.close()


def chunk_1_held(pg_instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = pg_instance.get_runs(limit=1)
    return runs[0] if runs and CHUNK_1 in step_keys(pg_instance, runs[0].run_id, dg.DagsterEventType.STEP_START) else None


def assert_recorded_as_published(pg_instance: dg.DagsterInstance, data_dir: Path) -> None:
    """The instance recorded the version of every stage the data root publishes."""
    store = drills.VersionedStore(data_dir)
    for asset in ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output"):
        assert store.published(asset, drills.PARTITION).version in recorded_versions(pg_instance, asset, drills.PARTITION), asset


@pytest.mark.parametrize("executor, outage", EXECUTORS)
def test_run_rides_through_a_database_restart_or_is_reexecuted(executor, outage, deployment, instance, cluster, clean_tables):  # noqa: F811
    deployment.env[EXECUTOR_ENV] = executor
    workers = [deployment.start_worker()] if executor == "celery" else []
    release = deployment.tmp_path / "release"
    paused = drills.run_config({"fail_chunks": [1], "mode": "pause", "release_file": str(release), "slow_seconds": TIMEOUT})
    run = deployment.start_run(paused)
    first = drills.wait_for(lambda: chunk_1_held(instance), "chunk 1 held in its step", [run, *workers])

    fault = restart(cluster, outage, during=release.touch)  # chunk 1 ends and writes its events while the database is down
    exit_code = deployment.finish(run)
    ended = time.monotonic() - fault
    status = instance.get_run_by_id(first.run_id).status
    print(f"{executor}, database down {outage:.0f} s: run {status.value} {ended:.1f} s after the stop began")

    store = drills.VersionedStore(deployment.data_dir)
    if status != dg.DagsterRunStatus.SUCCESS:
        assert exit_code != 0
        assert store.published("consolidated_output", drills.PARTITION) is None  # never a part of the hour
        reexecute_from_failure(deployment, instance, first)
        print(f"{executor}: re-executed from failure in {time.monotonic() - fault - ended:.1f} s")
    else:
        assert exit_code == 0, deployment.log(run)[-3000:]
    for worker in workers:
        Deployment.stop(worker)
    assert_same_tables(deployment.data_dir, clean_tables)
    assert_recorded_as_published(instance, deployment.data_dir)


TASK_ENDED = re.compile(r"Task execute_plan\[[^\]]+\] (succeeded in|raised)")


def reexecute_from_failure(deployment: Deployment, pg_instance: dg.DagsterInstance, failed: dg.DagsterRun) -> dg.DagsterRun:
    """Mark ``failed`` failed if it could not record its end (what run monitoring or Terminate does), then
    re-execute it from failure to success."""
    if pg_instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.STARTED:
        pg_instance.report_run_failed(pg_instance.get_run_by_id(failed.run_id))
    resumed = deployment.start_run(drills.run_config(), parent_run_id=failed.run_id)
    assert deployment.finish(resumed) == 0, deployment.log(resumed)[-3000:]
    reexecution = pg_instance.get_runs(limit=1)[0]
    assert reexecution.parent_run_id == failed.run_id and reexecution.status == dg.DagsterRunStatus.SUCCESS
    return reexecution


@NEEDS_REDIS
def test_celery_outage_until_a_chunk_step_failed_without_any_event(deployment, instance, cluster, clean_tables):  # noqa: F811
    """One Celery pool process: chunk 1 is held, the database stops, chunk 1 ends and fails to record, then the
    next chunk step starts and fails before it can record anything; the database comes back once both tasks
    ended on the worker. Re-execution from failure does not see a step that left no event (Dagster retries
    the failed and the interrupted ones); ``fan_out_ranges`` shuffles its chunk, and the hour completes."""
    deployment.env[EXECUTOR_ENV] = "celery"
    worker = deployment.start_worker(concurrency=1)
    release = deployment.tmp_path / "release"
    paused = drills.run_config({"fail_chunks": [1], "mode": "pause", "release_file": str(release), "slow_seconds": TIMEOUT})
    run = deployment.start_run(paused)
    first = drills.wait_for(lambda: chunk_1_held(instance), "chunk 1 held in its step", [run, worker])

    fault = time.monotonic()
    cluster.stop()
    before = len(deployment.log(worker))
    release.touch()
    drills.wait_for(
        lambda: len(TASK_ENDED.findall(deployment.log(worker)[before:])) >= 2, "two tasks ended on the worker", [worker]
    )
    down = time.monotonic() - fault
    cluster.start()
    assert deployment.finish(run) != 0
    ended = time.monotonic() - fault
    print(
        f"celery, database down {down:.1f} s: run {instance.get_run_by_id(first.run_id).status.value} {ended:.1f} s after the stop began"
    )

    started = step_keys(instance, first.run_id, dg.DagsterEventType.STEP_START)
    silent = {index for index in range(drills.CHUNKS) if f"processed_chunks.process_chunk[chunk_{index:05d}]" not in started}
    assert silent, "a chunk step that recorded nothing"
    assert drills.VersionedStore(deployment.data_dir).published("consolidated_output", drills.PARTITION) is None
    reexecution = reexecute_from_failure(deployment, instance, first)
    print(f"celery: re-executed from failure in {time.monotonic() - fault - ended:.1f} s")
    shuffled_late = {
        int(match.group(1))
        for record in instance.all_logs(reexecution.run_id)
        if (match := re.match(r"chunk (\d+) has no checkpoint", record.user_message or ""))
    }
    assert shuffled_late == silent
    Deployment.stop(worker)
    assert_same_tables(deployment.data_dir, clean_tables)
    assert_recorded_as_published(instance, deployment.data_dir)


DAEMONS_QUERY = """{ runsOrError { ... on Runs { results { runId } } }
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatTime } } } }"""


def graphql(port: int) -> dict | None:
    """The webserver's answer (runs and daemon heartbeats, both read from the database); None while it cannot give one."""
    body = json.dumps({"query": DAEMONS_QUERY}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return None if answer.get("errors") or not answer.get("data") else answer["data"]


def console_script(name: str) -> str:
    """A console script of this Python's environment (beside its interpreter), else the one on the PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name) or name


def daemons_beating_since(port: int, since: float) -> dict[str, float] | None:
    """Each required daemon's last heartbeat, once the webserver answers and every one is healthy and later than ``since``."""
    answer = graphql(port)
    if answer is None or "results" not in answer["runsOrError"]:
        return None
    statuses = [s for s in answer["instance"]["daemonHealth"]["allDaemonStatuses"] if s["required"]]
    beats = {s["daemonType"]: s["lastHeartbeatTime"] or 0.0 for s in statuses if s["healthy"]}
    return beats if statuses and len(beats) == len(statuses) and min(beats.values()) > since else None


@pytest.mark.parametrize("outage", [pytest.param(0.0, id="restart"), pytest.param(LONG_OUTAGE, id="long-outage")])
def test_daemon_and_webserver_keep_working_after_the_database_is_back(outage, tmp_path, cluster, data_dir):
    deployment = Deployment(tmp_path, cluster.new_database(), redis_broker(), data_dir)
    deployment.env[EXECUTOR_ENV] = "multiprocess"
    port = free_port()
    try:
        daemon = deployment.start(
            [console_script("dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")], "daemon.log"
        )
        webserver = deployment.start(
            [
                sys.executable,
                "-m",
                "dagster_webserver",
                "-w",
                str(PROJECT_ROOT / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            "webserver.log",
        )
        processes = [daemon, webserver]
        drills.wait_for(
            lambda: daemons_beating_since(port, 0.0), "the webserver answering and every daemon's heartbeat", processes
        )

        fault = restart(cluster, outage)
        back = time.time()  # heartbeats are wall-clock timestamps
        answered = drills.wait_for(lambda: graphql(port), "the webserver answering again", processes)
        print(f"database down {outage:.0f} s: the webserver answered {time.monotonic() - fault:.1f} s after the stop began")
        assert "results" in answered["runsOrError"]
        drills.wait_for(lambda: daemons_beating_since(port, back), "a heartbeat of every daemon after the restart", processes)
        print(f"every daemon beat again {time.monotonic() - fault:.1f} s after the stop began")
        assert daemon.poll() is None and webserver.poll() is None
    finally:
        deployment.close()
