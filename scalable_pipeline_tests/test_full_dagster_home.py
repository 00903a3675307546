"""A full disk under the Dagster home: the embedded SQLite instance fills up in the middle of a run.

``DAGSTER_HOME`` is a small tmpfs the test mounts (as root; skipped with the reason when mounting is not
permitted) and unmounts afterwards; the data root stays on the normal disk, so only the instance fills.
The run is the command line's (``scalable-pipeline run``, in a subprocess), with the ``faults`` resource
bound through its run config: chunk 1 pauses until the test has seen its STEP_START in the event log and
filled the tmpfs, so the instance runs out of space during the chunk steps. A second drill fills it the
moment ``consolidated_output`` is published, before its materialization is written.

What must hold: the command fails with one line naming the instance and the lack of space; no hour is
published without a materialization naming its version, or recorded without its data, except the one
gap the second drill opens (published, then the instance could not record it), which ``status`` shows;
once space is freed and the dead run is marked failed, a new run completes the hour: the whole-hour
result, recorded.
"""

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from scalable_pipeline.core.dagster_home import PROJECT_DAGSTER_YAML
from scalable_pipeline.observing.read_model import PIPELINE_ASSETS, recorded_versions
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.drills import wait_for
from scalable_pipeline_tests.test_pipeline import expected_from_raw

pytestmark = pytest.mark.slow

PARTITION = "2026-01-05-10:00"
TMPFS_SIZE = "8m"  # a run of this hour leaves about 0.8 MB in the instance
TIMEOUT = 300  # seconds; every wait ends early on the event it waits for
CHUNK_1 = "processed_chunks.process_chunk[chunk_00001]"

# The command line with a fault bound through its run config (``FAULT``) and, optionally, the instance's
# file system filled right after consolidated_output is published (``FILL_AFTER_PUBLISH``, a file to write).
DRIVER = """
import json, sys
from scalable_pipeline.cli import run as run_command
from scalable_pipeline.cli.main import main
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.drills import wait_for
from scalable_pipeline_tests.test_full_dagster_home import fill

settings = json.loads(sys.argv[1])
command_config = run_command.run_config

def with_fault(args, build, synthetic):
    config = command_config(args, build, synthetic)
    if settings["fault"]:
        config["resources"]["faults"] = {"config": settings["fault"]}
    return config

publish = VersionedStore.publish

def publish_then_fill(store, stored, run_id="", action="publish"):
    published = publish(store, stored, run_id, action)
    if stored.asset == "consolidated_output":
        fill(settings["fill_after_publish"])
    return published

run_command.run_config = with_fault
if settings["fill_after_publish"]:
    VersionedStore.publish = publish_then_fill
sys.exit(main(sys.argv[2:]))
"""


def fill(path: str | Path) -> Path:
    """Write zeros to ``path`` until its file system has no space left."""
    block = bytes(1 << 16)
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return Path(path)


@pytest.fixture
def small_home(tmp_path):
    """An empty tmpfs of ``TMPFS_SIZE`` as DAGSTER_HOME, unmounted at the end."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(home)], check=False, capture_output=True, text=True
        )
    except OSError as error:  # no mount command
        pytest.skip(f"cannot mount a tmpfs for DAGSTER_HOME: {error}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for DAGSTER_HOME (needs root): {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield home
    finally:
        if subprocess.run(["umount", str(home)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(home)], check=True)  # a process of the run still had a file open


class Command:
    """The command line in subprocesses of their own sessions, against ``home`` and the data root."""

    def __init__(self, home: Path, data_dir: Path, tmp_path: Path):
        self.home, self.data_dir, self.tmp_path = home, data_dir, tmp_path
        self.env = {**os.environ, "DAGSTER_HOME": str(home), "SCALABLE_PIPELINE_DATA_DIR": str(data_dir)}
        self.env.pop("SCALABLE_PIPELINE_EXECUTOR", None)  # --multiprocess: the job's own executor
        self.processes: list[subprocess.Popen] = []

    def start(self, argv: list[str], fault: dict | None = None, fill_after_publish: Path | None = None) -> subprocess.Popen:
        settings = json.dumps({"fault": fault, "fill_after_publish": str(fill_after_publish) if fill_after_publish else None})
        index = len(self.processes)
        with open(self.tmp_path / f"out-{index}.log", "w") as out, open(self.tmp_path / f"err-{index}.log", "w") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", DRIVER, settings, *argv], env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        self.processes.append(process)
        return process

    def output(self, process: subprocess.Popen) -> tuple[str, str]:
        index = self.processes.index(process)
        return (self.tmp_path / f"out-{index}.log").read_text(), (self.tmp_path / f"err-{index}.log").read_text()

    def finish(self, process: subprocess.Popen) -> int:
        try:
            return process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the command did not end in {TIMEOUT} s: {self.output(process)}") from None

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        process = self.start(argv)
        code = self.finish(process)
        return (code, *self.output(process))

    def close(self) -> None:
        """Stop what is left of the processes this test started (their sessions: a run and its step processes)."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)


@pytest.fixture
def command(small_home, data_dir, tmp_path):
    small_home.joinpath("dagster.yaml").write_bytes(PROJECT_DAGSTER_YAML.read_bytes())  # as the command line sets it up
    runner = Command(small_home, data_dir, tmp_path)
    yield runner
    runner.close()


@pytest.fixture
def instance(command):
    """The instance of the tmpfs home, its SQLite files created before the run starts."""
    with dg.DagsterInstance.from_config(str(command.home)) as home_instance:
        yield home_instance


def run_argv(*extra: str) -> list[str]:
    return ["run", "--partition", PARTITION, "--chunks", "4", "--scale", "0.2", *extra]


def chunk_1_started(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = instance.get_runs(limit=1)
    if not runs:
        return None
    started = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_START)
    return runs[0] if any(record.step_key == CHUNK_1 for record in started) else None


def assert_names_the_full_instance(stderr: str, home: Path) -> None:
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("scalable-pipeline run: error: ") and PARTITION in line, stderr[-3000:]
    assert f"Dagster instance at {home} (DAGSTER_HOME)" in line and "no space left" in line, line


def recorded_in_run(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Asset -> the version each ASSET_MATERIALIZATION of the run recorded."""
    return {
        record.asset_key.path[-1]: str(record.asset_materialization.metadata["version"].value)
        for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    }


def assert_nothing_lost(instance: dg.DagsterInstance, store: VersionedStore, run_id: str, unrecorded: set[str]) -> None:
    """Every published version is named by a recorded materialization (but those of ``unrecorded``: published,
    then the instance could not record them), and every version the run recorded is stored and published."""
    for asset in PIPELINE_ASSETS:
        published = store.published(asset, PARTITION)
        known = recorded_versions(instance, asset, PARTITION)
        if asset in unrecorded:
            assert published is not None and published.version not in known, asset
        elif published is not None:
            assert published.version in known, f"{asset}: published {published.version}, recorded {known}"
    for asset, version in recorded_in_run(instance, run_id).items():
        published = store.published(asset, PARTITION)
        assert published is not None and published.version == version and Path(published.path).exists(), asset


def status(command: Command) -> str:
    code, out, err = command.run(["status", "--partition", PARTITION])
    assert code == 0, err
    return out


def assert_recovers(command: Command, instance: dg.DagsterInstance, failed: dg.DagsterRun) -> None:
    """Space is back: the dead run is marked failed (what Terminate in the UI does), a new run of the hour
    completes it with the whole-hour result, recorded."""
    instance.report_run_failed(instance.get_run_by_id(failed.run_id))
    started = time.monotonic()
    code, _, err = command.run(run_argv())
    assert code == 0, err[-3000:]
    print(f"a new run of the hour completed it in {time.monotonic() - started:.1f} s")
    store = VersionedStore(command.data_dir)
    latest = instance.get_runs(limit=1)[0]
    assert latest.status == dg.DagsterRunStatus.SUCCESS and latest.run_id != failed.run_id
    output = store.read_published_table("consolidated_output", PARTITION)
    expected = expected_from_raw(store.read_published_table("raw_volume", PARTITION), PARTITION)["valid"]
    pd.testing.assert_frame_equal(output, expected, check_dtype=False)
    assert (
        recorded_in_run(instance, latest.run_id)["consolidated_output"]
        == store.published("consolidated_output", PARTITION).version
    )
    assert_nothing_lost(instance, store, latest.run_id, unrecorded=set())
    assert "not recorded in the instance" not in status(command)


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_instance_filling_up_during_the_chunk_steps(executor, command, instance, tmp_path):
    release = tmp_path / "release"
    paused = {"fail_chunks": [1], "mode": "pause", "release_file": str(release), "slow_seconds": TIMEOUT}
    process = command.start(run_argv(*(["--multiprocess"] if executor == "multiprocess" else [])), fault=paused)
    failed = wait_for(lambda: chunk_1_started(instance), "chunk 1's STEP_START", [process])
    filler = fill(command.home / "filler")  # the instance's file system is full from here on
    full = time.monotonic()
    release.touch()
    assert command.finish(process) == 1
    print(f"{executor}: the command failed {time.monotonic() - full:.1f} s after the instance filled up")
    assert_names_the_full_instance(command.output(process)[1], command.home)

    filler.unlink()  # space is back: the instance can be read again
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.STARTED  # it could record no end
    store = VersionedStore(command.data_dir)
    assert store.published("consolidated_output", PARTITION) is None  # the chunk steps never completed
    assert set(recorded_in_run(instance, failed.run_id)) == {"raw_volume", "chunk_partitions"}
    assert_nothing_lost(instance, store, failed.run_id, unrecorded=set())
    assert_recovers(command, instance, failed)


def test_instance_filling_up_between_publish_and_record(command, instance):
    """The output is published (whole, audited), then the instance cannot record it: it stays readable,
    ``status`` shows it is not recorded, and the next run of the hour publishes and records the hour."""
    process = command.start(run_argv(), fill_after_publish=command.home / "filler")
    assert command.finish(process) == 1
    print(f"the command failed {time.time() - (command.home / 'filler').stat().st_mtime:.1f} s after the instance filled up")
    assert_names_the_full_instance(command.output(process)[1], command.home)

    (command.home / "filler").unlink()
    failed = instance.get_runs(limit=1)[0]
    assert failed.status == dg.DagsterRunStatus.STARTED
    store = VersionedStore(command.data_dir)
    assert "consolidated_output" not in recorded_in_run(instance, failed.run_id)
    assert_nothing_lost(instance, store, failed.run_id, unrecorded={"consolidated_output"})
    published = store.published("consolidated_output", PARTITION)
    flagged = re.search(rf"consolidated_output\s+│\s+{published.version}\s+│.*\n.*not recorded in the instance", status(command))
    assert flagged, "status shows the published version the instance does not know"
    assert_recovers(command, instance, failed)
