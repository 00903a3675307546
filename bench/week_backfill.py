"""A week through the daemon: a 168-hour backfill on PostgreSQL, 4 runs at once, the chunk pool at 2 slots.

    python bench/week_backfill.py [--hours 168] [--first 2026-01-05-00:00] [--scale 1] [--slots 2] [--sample 8]
                                  [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--keep]

Makes its own database on the PostgreSQL server (dropped at the end), a Dagster home with
``deploy/dagster.yaml`` (runs, events and pool slots in that database; the queue at 4 runs, one per hour), a
data root and a pipelines file holding the shipped pipeline (unprefixed keys, synthetic source at ``--scale``)
with the pool ``chunk_processing`` at ``--slots``. It starts ``dagster-daemon run``, launches ``dagster job
backfill`` over the hours and waits until every run has ended. Then, from the instance: every hour succeeded;
never more than ``--slots`` steps of the pool at once (each from its STEP_START to its end) nor more runs than
the queue allows (RUN_START to end); no slot claimed or queued for afterwards; and a sample of hours equal to
the whole-hour computation (``bench/plain_pandas.py`` on the published raw hour). It prints the hours per
minute (from the backfill's launch to the last run's end) and writes everything, each run's times included, to
``bench/results/week-backfill-<date>-<time>.json``. Exit status 1 if a check fails.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import psutil
import yaml
from plain_pandas import process as whole_hour

# This checkout's package and its test helpers (the daemon, a scratch database), ahead of any installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.cli.pools import apply_pool_limits
from scalable_pipeline.execution.executors import EXECUTOR_ENV
from scalable_pipeline.pipelines.config import CONFIG_ENV, load_pipelines
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.daemon import dagster_job_backfill, start_daemon, stop_daemon
from scalable_pipeline_tests.postgres_database import scratch_database

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
JOB = "scalable_data_processing"
POOL = "chunk_processing"
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
STEP_STARTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED}
STEP_ENDS = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY}


def hours_from(first: str, count: int) -> list[str]:
    start = datetime.strptime(first, PARTITION_FORMAT)
    return [(start + timedelta(hours=n)).strftime(PARTITION_FORMAT) for n in range(count)]


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one moment (an end sorts before a start at the same moment)."""
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in moments:
        running += change
        peak = max(peak, running)
    return peak


def pool_ops(pipelines: Path) -> set[str]:
    """Ops of the job that carry the pool (chunk and range steps and their priority forms)."""
    job = build_definitions(pipelines).resolve_job_def(JOB)
    graph = next(node.definition for node in job.graph.nodes if node.name.endswith("processed_chunks"))
    return {node.name for node in graph.nodes if node.definition.pool == POOL}


def pool_step_intervals(instance: dg.DagsterInstance, run_id: str, ops: set[str]) -> list[tuple[float, float]]:
    """(start, end) of every attempt of every pool step of the run."""
    opened: dict[str, float] = {}
    intervals = []
    for entry in instance.all_logs(run_id, of_type=STEP_STARTS | STEP_ENDS):
        event = entry.dagster_event
        if event is None or not event.step_key or event.step_key.split(".")[-1].split("[")[0] not in ops:
            continue
        if event.event_type in STEP_STARTS:
            opened[event.step_key] = entry.timestamp
        elif event.step_key in opened:
            intervals.append((opened.pop(event.step_key), entry.timestamp))
    return intervals


def slots_in_use(instance: dg.DagsterInstance) -> dict:
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return {"limit": info.slot_count, "claimed": len(info.claimed_slots), "pending": len(info.pending_steps)}


def sample_of(hours: list[str], size: int) -> list[str]:
    picked = {hours[round(n * (len(hours) - 1) / max(size - 1, 1))] for n in range(min(size, len(hours)))}
    peak = [hour for hour in hours if hour.endswith("-10:00")]  # the day's busiest hour
    return sorted(picked | set(peak[:1]))


def compare_sample(data: Path, hours: list[str]) -> dict[str, str]:
    """Per hour: ``equal``, or what differs between the published output and the whole-hour computation."""
    store = VersionedStore(data)
    verdicts = {}
    for hour in hours:
        raw = store.read_published_table("raw_volume", hour)
        expected = whole_hour(raw, pd.to_datetime(hour, format=PARTITION_FORMAT, utc=True))
        output = store.read_published_table("consolidated_output", hour).reset_index(drop=True)
        try:
            pd.testing.assert_frame_equal(output, expected, check_dtype=False)
            verdicts[hour] = f"equal ({len(output)} rows of {len(raw)})"
        except AssertionError as difference:
            verdicts[hour] = f"DIFFERENT: {str(difference)[:300]}"
    return verdicts


def wait(condition, timeout: float, what: str, poll: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return result


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, every process) since boot."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


def machine() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO, check=False)
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit.stdout.strip(),
        "uncommitted_changes": bool(dirty.stdout.strip()),
    }


def write_pipelines(path: Path, scale: float, slots: int) -> None:
    """A pipelines file holding the shipped pipeline (unprefixed keys, synthetic source at ``scale``), its pool at ``slots``."""
    path.write_text(
        textwrap.dedent(f"""
        pools: {{{POOL}: {slots}}}
        pipelines:
          - name: {JOB}
            key_prefix: []
            start: "2026-01-01-00:00"
            pool: {POOL}
            source: {{kind: synthetic, scale: {scale}}}
        """)
    )


def make_home(home: Path, database_url: str | None) -> dict:
    """A Dagster home with ``deploy/dagster.yaml`` (runs and events in PostgreSQL at ``database_url``) or, without one,
    the repository's ``dagster.yaml`` (SQLite in the home); returns the instance's settings."""
    home.mkdir()
    shutil.copyfile(REPO / ("deploy/dagster.yaml" if database_url else "dagster.yaml"), home / "dagster.yaml")
    return yaml.safe_load((home / "dagster.yaml").read_text())


def pipeline_env(home: Path, data: Path, pipelines: Path, database_url: str | None) -> dict:
    """The environment of the daemon, the CLIs and this process: the instance, the pipelines file, the data root,
    the shipped executor setting (``auto``), and this checkout first on the path of every process they start."""
    return this_checkout_first(
        {
            **{name: value for name, value in os.environ.items() if name != EXECUTOR_ENV},
            "DAGSTER_HOME": str(home),
            **({"DAGSTER_PG_URL": database_url} if database_url else {}),
            CONFIG_ENV: str(pipelines),
            "SCALABLE_PIPELINE_DATA_DIR": str(data),
        }
    )


def this_checkout_first(env: dict) -> dict:
    """``env`` with this checkout first on ``PYTHONPATH``: the processes it starts (daemon, code servers, runs) import it."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}


def run_week(args: argparse.Namespace, workdir: Path, database_url: str) -> dict:
    hours = hours_from(args.first, args.hours)
    home, data, pipelines = workdir / "home", workdir / "data", workdir / "pipelines.yaml"
    instance_config = make_home(home, database_url)
    max_runs = instance_config["run_coordinator"]["config"]["max_concurrent_runs"]
    write_pipelines(pipelines, args.scale, args.slots)
    env = pipeline_env(home, data, pipelines, database_url)
    os.environ.update({key: env[key] for key in ("DAGSTER_HOME", "DAGSTER_PG_URL", CONFIG_ENV, "SCALABLE_PIPELINE_DATA_DIR")})
    ops = pool_ops(pipelines)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        apply_pool_limits(instance, load_pipelines(pipelines))
        daemon = start_daemon(env, workdir / "daemon.log", cwd=REPO)
        try:
            launched_at = time.time()
            dagster_job_backfill(env, JOB, hours)
            queued_at = time.time()
            print(f"{len(hours)} runs queued in {queued_at - launched_at:.1f} s", file=sys.stderr)

            def finished() -> bool:
                if daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited ({daemon.returncode}); see {workdir / 'daemon.log'}")
                runs = instance.get_runs(dg.RunsFilter(job_name=JOB))
                done = sum(run.is_finished for run in runs)
                print(f"\r{done}/{len(hours)} runs ended, {time.time() - launched_at:.0f} s", end="", file=sys.stderr)
                return len(runs) >= len(hours) and done == len(runs)

            wait(finished, args.timeout, "every run to end")
            print(file=sys.stderr)
            # A run frees its slots as it ends; the daemon frees a dead run's after free_slots_after_run_end_seconds.
            slots_after = wait(
                lambda: (used := slots_in_use(instance))["claimed"] == 0 and used["pending"] == 0 and used,
                float(instance_config["run_monitoring"].get("free_slots_after_run_end_seconds", 60)) + 120,
                "the pool's slots to be free",
            )
        finally:
            stop_daemon(daemon, timeout=120)

        records = instance.get_run_records(dg.RunsFilter(job_name=JOB))
        runs = [
            {
                "partition": record.dagster_run.tags.get("dagster/partition"),
                "run_id": record.dagster_run.run_id,
                "status": record.dagster_run.status.value,
                "start": record.start_time,
                "end": record.end_time,
                "parent_run_id": record.dagster_run.parent_run_id,
            }
            for record in records
        ]
        pool_intervals = [interval for run in runs for interval in pool_step_intervals(instance, run["run_id"], ops)]

    succeeded = {run["partition"] for run in runs if run["status"] == "SUCCESS"}
    run_intervals = [(run["start"], run["end"]) for run in runs if run["start"] and run["end"]]
    durations = sorted(end - start for start, end in run_intervals)
    last_end = max(end for _, end in run_intervals)
    wall = last_end - launched_at
    sample = sample_of(hours, args.sample)
    verdicts = compare_sample(data, sample)
    checks = {
        "every_hour_succeeded": succeeded == set(hours),
        "pool_steps_within_slots": most_at_once(pool_intervals) <= args.slots,
        "runs_within_queue_limit": most_at_once(run_intervals) <= max_runs,
        "no_slot_held_after": slots_after["claimed"] == 0 and slots_after["pending"] == 0,
        "sample_equal_to_whole_hour": all(verdict.startswith("equal") for verdict in verdicts.values()),
    }
    return {
        "hours": len(hours),
        "first_hour": hours[0],
        "last_hour": hours[-1],
        "scale": args.scale,
        "pool_slots": args.slots,
        "max_concurrent_runs": max_runs,
        "runs": len(runs),
        "runs_by_status": {status: sum(run["status"] == status for run in runs) for status in {run["status"] for run in runs}},
        "hours_failed": sorted(set(hours) - succeeded),
        "queue_seconds": queued_at - launched_at,
        "wall_seconds": wall,
        "hours_per_minute": len(hours) / (wall / 60),
        "first_run_start_to_last_end_seconds": last_end - min(start for start, _ in run_intervals),
        "run_seconds": {
            "median": statistics.median(durations),
            "p95": durations[int(0.95 * (len(durations) - 1))],
            "max": durations[-1],
        },
        "most_runs_at_once": most_at_once(run_intervals),
        "most_pool_steps_at_once": most_at_once(pool_intervals),
        "pool_step_attempts": len(pool_intervals),
        "slots_after": slots_after,
        "sample": verdicts,
        "checks": checks,
        "run_records": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=int, default=168, help="hours in the backfill (default a week)")
    parser.add_argument("--first", default="2026-01-05-00:00", help="the first hour (default Monday 2026-01-05 00:00)")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic source scale (default 1, as shipped)")
    parser.add_argument("--slots", type=int, default=2, help="slots of the chunk pool (default 2)")
    parser.add_argument("--sample", type=int, default=8, help="hours compared with the whole-hour computation")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="server to make a database on"
    )
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait for the runs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the database is dropped anyway)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="week_backfill_"))
    started, before = datetime.now(timezone.utc), machine()
    try:
        with scratch_database(args.postgres, "scalable_pipeline_bench") as database_url:
            result = run_week(args, workdir, database_url)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    report = {
        "command": " ".join(["python", "bench/week_backfill.py", *sys.argv[1:]]),
        "date": started.isoformat(timespec="seconds"),
        "machine": {**before, "load_average_at_end": os.getloadavg()},
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"week-backfill-{started:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    figures = {
        key: report[key] for key in ("hours", "wall_seconds", "hours_per_minute", "most_runs_at_once", "most_pool_steps_at_once")
    }
    print(json.dumps({**figures, "run_seconds": report["run_seconds"], "checks": report["checks"]}, indent=2))
    print(f"{report['hours']} hours in {report['wall_seconds'] / 60:.1f} min: {report['hours_per_minute']:.2f} hours per minute")
    print(f"raw results: {path.relative_to(REPO)}")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
