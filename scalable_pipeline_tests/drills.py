"""Recovery drills: run the main job out of process against a temp DAGSTER_HOME and data root.

Each run happens in a freshly spawned Python process that sets ``DAGSTER_HOME`` and
``SCALABLE_PIPELINE_DATA_DIR`` before Dagster starts its forkserver, so step processes see this
drill's data root (a forkserver keeps the environment it started with). ``wait_for`` is the wait of every
test that waits on other processes: it polls for the event it needs and fails at once when one ends early.
"""

import multiprocessing
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import dagster as dg

from scalable_pipeline.assembly.project import scalable_data_processing_job
from scalable_pipeline.publishing.versioned_store import VersionedStore

PARTITION = "2026-01-05-10:00"
CHUNKS = 4
SCALE = 0.2
WAIT_SECONDS = 300  # a generous bound: every wait ends early on the event it waits for
POLL_SECONDS = 0.2
T = TypeVar("T")


def run_config(faults: dict | None = None, chunks: int = CHUNKS, scale: float = SCALE, mode: str | None = None) -> dict:
    """The drill's resources; ``mode``: the auto executor's mode for the run (``multiprocess``: a process per step)."""
    resources = {
        "scaling": {"config": {"chunk_count": chunks}},
        "source": {"config": {"scale": scale}},
    }
    if faults:
        resources["faults"] = {"config": faults}
    return {"resources": resources, **({"execution": {"config": {"mode": mode}}} if mode else {})}


def _execute(home: str, data_dir: str, config: dict, partition: str, parent_run_id: str | None, in_process: bool) -> None:
    os.environ["DAGSTER_HOME"], os.environ["SCALABLE_PIPELINE_DATA_DIR"] = home, data_dir

    with dg.instance_for_test(temp_dir=home) as instance:
        if in_process:  # the whole run in this process: a ``kill`` fault kills the run itself
            scalable_data_processing_job().execute_in_process(
                run_config=config, instance=instance, partition_key=partition, raise_on_error=False
            )
            return
        execute_partition(scalable_data_processing_job, instance, config, partition, parent_run_id)


def execute_partition(
    job_fn, instance: dg.DagsterInstance, config: dict, partition: str, parent_run_id: str | None = None
) -> dg.JobExecutionResult:
    """Run the job ``job_fn`` returns (reconstructable, with its own executor) for ``partition``; with
    ``parent_run_id``, as a re-execution from that run's failure."""
    reexecution = dg.ReexecutionOptions.from_failure(parent_run_id, instance) if parent_run_id else None
    return dg.execute_job(
        dg.reconstructable(job_fn),
        instance=instance,
        run_config=config,
        tags={"dagster/partition": partition},
        reexecution_options=reexecution,
        raise_on_error=False,
    )


def start_run(home, data_dir, config, partition=PARTITION, parent_run_id=None, in_process=False) -> multiprocessing.Process:
    process = multiprocessing.get_context("spawn").Process(
        target=_execute, args=(str(home), str(data_dir), config, partition, parent_run_id, in_process)
    )
    process.start()
    return process


def run(home, data_dir, config, partition=PARTITION, parent_run_id=None, in_process=False) -> int:
    """Run to the end; returns the driver's exit code (negative: killed by that signal)."""
    process = start_run(home, data_dir, config, partition, parent_run_id, in_process)
    process.join(timeout=300)
    return process.exitcode


def latest_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    return instance.get_runs(limit=1)[0]


def step_events(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> list:
    return [record.dagster_event for record in instance.all_logs(run_id, of_type=event_type)]


def chunk_steps_started(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return sorted(
        event.step_key
        for event in step_events(instance, run_id, dg.DagsterEventType.STEP_START)
        if event.step_key.startswith("processed_chunks.process_chunk[")
    )


def chunk_steps_started_anywhere(instance: dg.DagsterInstance) -> bool:
    """Whether the newest run has started a chunk step (it holds the partition's lease by then)."""
    runs = instance.get_runs(limit=1)
    return bool(runs) and bool(chunk_steps_started(instance, runs[0].run_id))


def published_tables(data_dir) -> dict:
    store = VersionedStore(data_dir)
    return {asset: store.read_published_table(asset, PARTITION) for asset in ("processed_chunks", "consolidated_output")}


def wait_for(condition: Callable[[], T], what: str, watched: Sequence[subprocess.Popen] = (), timeout: float = WAIT_SECONDS) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail at once if a ``watched``
    process has ended, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        ended = [(process.args, process.returncode) for process in watched if process.poll() is not None]
        assert not ended, f"waiting for {what}: a process ended early: {ended}"
        assert time.monotonic() < deadline, f"gave up waiting {timeout:.0f} s for {what}"
        time.sleep(POLL_SECONDS)
    return value
