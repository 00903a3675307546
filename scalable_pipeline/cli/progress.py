"""A live view of pipeline runs: hours done, the current stage, chunks and ranges done.

It follows each run's events in the Dagster instance (polled from a background thread while the run
executes, in this process or in step processes), so it shows the same progress whatever the executor.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from scalable_pipeline.core.metadata import metadata_number

# Tag on a run started by the command line, to find its run id while it starts (any executor).
INVOCATION_TAG = "scalable_pipeline/invocation"
FOLLOWED_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_OUTPUT,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
}
POLL_SECONDS = 0.25


def step_kind(step_key: str | None) -> str | None:
    """``chunk`` or ``range`` for the steps that process one (every path's: ``process_chunk``,
    ``process_chunk_priority``, ``process_range_priority``, a prefixed pipeline's ``<name>__process_chunk``)."""
    op = (step_key or "").split("[")[0].split(".")[-1].split("__")[-1]
    return "chunk" if op.startswith("process_chunk") else "range" if op.startswith("process_range") else None


@dataclass
class RunView:
    """What one run's events say so far."""

    stage: str = "starting"
    chunks: int | None = None  # planned, known once chunk_partitions is materialized
    ranges: int | None = None
    chunks_done: int = 0
    ranges_done: int = 0

    def apply(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        kind = step_kind(entry.step_key)
        if event.event_type == dg.DagsterEventType.STEP_START:
            self.stage = entry.step_key or self.stage
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            self.chunks_done += kind == "chunk"
            self.ranges_done += kind == "range"
        elif event.event_type == dg.DagsterEventType.STEP_OUTPUT and kind == "chunk":
            # a chunk step also processes the ranges it completes, when the plan lets it (no range step for those)
            self.ranges_done += int(metadata_number(event.step_output_data.metadata, "ranges_processed") or 0)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            self.stage = f"{entry.step_key} failed"
        elif event.asset_key and event.step_materialization_data:
            metadata = event.step_materialization_data.materialization.metadata
            if event.asset_key.path[-1] == "chunk_partitions":
                chunks, ranges = metadata_number(metadata, "chunk_count"), metadata_number(metadata, "range_count")
                self.chunks = None if chunks is None else int(chunks)
                self.ranges = None if ranges is None else int(ranges)
            elif event.asset_key.path[-1] == "processed_chunks":  # every chunk and range done, checkpointed ones too
                self.chunks_done = max(self.chunks_done, int(metadata_number(metadata, "chunks") or 0))
                self.ranges_done = max(self.ranges_done, int(metadata_number(metadata, "ranges") or 0))


class RunFollower(threading.Thread):
    """Polls the events of the run tagged ``invocation`` and hands the updated view to ``show``."""

    def __init__(self, instance: dg.DagsterInstance, invocation: str, show: Callable[[RunView], None]):
        super().__init__(daemon=True)
        self.instance, self.invocation, self.show = instance, invocation, show
        self.view = RunView()
        self.run_id: str | None = None
        self.cursor: str | None = None
        self.done = threading.Event()

    def poll(self) -> None:
        if self.run_id is None:
            found = self.instance.get_run_records(dg.RunsFilter(tags={INVOCATION_TAG: self.invocation}), limit=1)
            if not found:
                return
            self.run_id = found[0].dagster_run.run_id
        connection = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, of_type=FOLLOWED_EVENTS)
        for record in connection.records:
            self.view.apply(record.event_log_entry)
        self.cursor = connection.cursor
        self.show(self.view)

    def run(self) -> None:
        while not self.done.wait(POLL_SECONDS):
            self.poll()

    def finish(self) -> None:
        """Stop polling, then read what the run left (its last events)."""
        self.done.set()
        self.join()
        self.poll()


class ProgressDisplay:
    """Hours, chunks and ranges as progress bars on stderr (stdout keeps the summary)."""

    def __init__(self, hours: int, console: Console | None = None):
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self.hours = self.progress.add_task("hours", total=hours)
        self.chunks: TaskID | None = None
        self.ranges: TaskID | None = None
        self.partition = ""

    def __enter__(self) -> "ProgressDisplay":
        self.progress.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.progress.stop()

    def start_hour(self, partition: str) -> None:
        for task in (self.chunks, self.ranges):
            if task is not None:
                self.progress.remove_task(task)
        self.chunks = self.progress.add_task("  chunks", total=None)
        self.ranges = self.progress.add_task("  ranges", total=None)
        self.partition = partition
        self.progress.update(self.hours, description=f"hour {partition}")

    def show(self, view: RunView) -> None:
        assert self.chunks is not None and self.ranges is not None
        self.progress.update(self.hours, description=f"hour {self.partition} · {view.stage}")
        self.progress.update(self.chunks, total=view.chunks, completed=view.chunks_done)
        self.progress.update(self.ranges, total=view.ranges, completed=view.ranges_done)

    def end_hour(self, success: bool) -> None:
        self.progress.update(self.hours, description=f"hour {self.partition} · {'done' if success else 'FAILED'}")
        self.progress.advance(self.hours)
