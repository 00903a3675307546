"""Where a run's wall time goes: each step's launch, start and end, from the instance's event log.

    DAGSTER_HOME=... python bench/timeline.py [RUN_ID]      (default: the newest run)

Prints one line per step: seconds after the run started when its worker was launched, when it started and
when it ended, and its own duration; then the run's span and the seconds no step was running.
"""

import sys

import dagster as dg

MARKS = {
    dg.DagsterEventType.STEP_WORKER_STARTING: "launch",
    dg.DagsterEventType.STEP_START: "start",
    dg.DagsterEventType.STEP_SUCCESS: "end",
    dg.DagsterEventType.STEP_FAILURE: "end",
    dg.DagsterEventType.STEP_SKIPPED: "end",
}


def step_marks(entries: list) -> dict[str, dict[str, float]]:
    """Per step, seconds after the run's first event: ``launch``, ``start``, ``end`` (those it reached)."""
    begun = entries[0].timestamp
    steps: dict[str, dict[str, float]] = {}
    for entry in entries:
        event = entry.dagster_event
        if event is not None and event.event_type in MARKS and event.step_key:
            steps.setdefault(event.step_key, {})[MARKS[event.event_type]] = entry.timestamp - begun
    return steps


def no_step_running(steps: dict[str, dict[str, float]], finished: float) -> float:
    """Seconds of the run's span (0 to ``finished``) in which no step was between its start and its end."""
    spans = sorted((m["start"], m["end"]) for m in steps.values() if "start" in m and "end" in m)
    idle, reached = 0.0, 0.0
    for start, end in spans:
        idle += max(0.0, start - reached)
        reached = max(reached, end)
    return idle + max(0.0, finished - reached)


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        run_id = sys.argv[1] if len(sys.argv) > 1 else instance.get_run_records(limit=1)[0].dagster_run.run_id
        entries = instance.all_logs(run_id)
    steps = step_marks(entries)
    finished = entries[-1].timestamp - entries[0].timestamp
    print(f"run {run_id}: {finished:.2f} s from its first event to its last")
    print(f"{'step':48} {'launch':>7} {'start':>7} {'end':>7} {'own':>6}")
    for key, marks in sorted(steps.items(), key=lambda item: item[1].get("start", item[1].get("end", 0.0))):
        start, end = marks.get("start"), marks.get("end")
        own = f"{end - start:6.2f}" if start is not None and end is not None else "     -"
        cells = [f"{marks[m]:7.2f}" if m in marks else "      -" for m in ("launch", "start", "end")]
        print(f"{key[:48]:48} {' '.join(cells)} {own}")
    print(f"no step running: {no_step_running(steps, finished):.2f} s")


if __name__ == "__main__":
    main()
