"""Orchestration cost of the three executors on the same fan-out, the main job's wall on each, workers.

    PYTHONPATH=$PWD python bench/celery_overhead.py [--only fanout sizes workers] [--fanouts 16 64]
        [--fanout-scale 1] [--scales 100 1000] [--pg-url URL] [--broker URL]

Every measurement is one CLI run (``python -m scalable_pipeline run``) of the peak hour in a fresh
process, on a fresh PostgreSQL database and a fresh data root (no history, no checkpoint reuse), so
in process, multiprocess and Celery differ only in the executor:

- ``in_process``: the CLI's default (every step in the run's process);
- ``multiprocess``: ``--multiprocess --max-concurrent 2``, the job's tuned executor (forkserver, project
  preloaded);
- ``celery``: ``SCALABLE_PIPELINE_EXECUTOR=celery``, ``--multiprocess``, against ``scalable-pipeline
  worker`` processes started (and stopped) here; one worker with concurrency 2 unless said otherwise.

``fanout``: a small hour (``--fanout-scale``, compute near zero) pinned to each chunk count; the
marginal wall per step is (wall at the larger count - wall at the smaller) / the extra steps (a range
step comes with each chunk step); the in-step overhead is the median chunk step's wall (first event to
success) minus its compute seconds (``throughput.step_overheads``: for multiprocess from the process
start, for Celery from the step's start in the worker). ``sizes``: the main job at each ``--scales``
(100: ~1.1M records, 1000: ~11M), chunks planned by the scaling resource. ``workers``: Celery at the
smallest scale with ``--worker-chunks`` (8) pinned: one worker of concurrency 1, one of concurrency 2,
two of concurrency 1. Prints Markdown tables and writes JSON to
``bench/results/celery_overhead-<time>.json``.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from statistics import median

import dagster as dg
import psutil
import psycopg2

REPO = Path(__file__).resolve().parents[1]
PARTITION = "2026-01-05-10:00"
EXECUTORS = ("in_process", "multiprocess", "celery")


@contextmanager
def deployment(pg_server: str, broker: str, executor: str, workers: tuple[int, ...]):
    """A fresh database, DAGSTER_HOME and data root; Celery workers of the given concurrencies."""
    name = f"bench_celery_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg_server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    root = Path(tempfile.mkdtemp(prefix="bench_celery_"))
    (root / "home").mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", root / "home" / "dagster.yaml")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DAGSTER_HOME": str(root / "home"),
        "DAGSTER_PG_URL": f"postgresql+psycopg2://{pg_server.split('://', 1)[1].rsplit('/', 1)[0]}/{name}",
        "SCALABLE_PIPELINE_DATA_DIR": str(root / "data"),
        "SCALABLE_PIPELINE_EXECUTOR": executor if executor == "celery" else "multiprocess",
        "SCALABLE_PIPELINE_CELERY_BROKER": broker,
        "SCALABLE_PIPELINE_CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
    }
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "scalable_pipeline", "worker", "--concurrency", str(concurrency)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for concurrency in (workers if executor == "celery" else ())
    ]
    try:
        yield env
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
        shutil.rmtree(root, ignore_errors=True)
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run_figures(env: dict, run_id: str) -> dict:
    """Steps that ran, and the median in-step overhead of the chunk steps."""
    from scalable_pipeline.scaling.history import step_overheads

    os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        overheads = step_overheads(instance, run_id)
        steps = len(instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS))
    return {"steps": steps, "in_step_overhead_s": round(median(overheads), 3) if overheads else None}


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (niced processes included)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def run_once(pg_server: str, broker: str, executor: str, scale: float, chunks: int | None, workers=(2,)) -> dict:
    argv = [sys.executable, "-m", "scalable_pipeline", "run", "--partition", PARTITION, "--scale", str(scale)]
    argv += ["--chunks", str(chunks)] if chunks else []
    argv += ["--multiprocess", "--max-concurrent", "2"] if executor == "multiprocess" else []
    argv += ["--multiprocess"] if executor == "celery" else []
    with deployment(pg_server, broker, executor, workers) as env:
        before, started = busy_cpu_seconds(), time.perf_counter()
        output = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=3600).stdout
        busy, elapsed = busy_cpu_seconds() - before, time.perf_counter() - started
        match = re.search(r"run (\S+) succeeded in ([\d.]+) s", output)
        if not match:
            raise RuntimeError(f"{executor} scale {scale} chunks {chunks} failed:\n{output[-2000:]}")
        run_id, wall = match.group(1), float(match.group(2))
        row = {
            "executor": executor,
            "workers": list(workers) if executor == "celery" else None,
            "scale": scale,
            "records": int(re.search(r"records in:\s+(\d+)", output).group(1)),
            "chunks": int(re.search(r"chunks:\s+(\d+)", output).group(1)),
            "wall_s": wall,
            **run_figures(env, run_id),
            "process_wall_s": round(elapsed, 2),
            "machine_busy_cores": round(busy / elapsed, 2),
        }
    print(json.dumps(row), flush=True)
    return row


def fanout_rows(rows: list[dict], fanouts: list[int]) -> list[str]:
    small, large = min(fanouts), max(fanouts)
    lines = [
        f"| executor | wall, {small} chunks | wall, {large} chunks | marginal wall per step | in-step overhead ({small} / {large}) |",
        "|---|---:|---:|---:|---:|",
    ]
    for executor in EXECUTORS:
        by = {r["chunks"]: r for r in rows if r["executor"] == executor}
        if small in by and large in by:
            marginal = (by[large]["wall_s"] - by[small]["wall_s"]) / (by[large]["steps"] - by[small]["steps"])
            lines.append(
                f"| {executor} | {by[small]['wall_s']:.1f} s | {by[large]['wall_s']:.1f} s | {marginal:.2f} s | "
                f"{by[small]['in_step_overhead_s']} / {by[large]['in_step_overhead_s']} s |"
            )
    return lines


def size_rows(rows: list[dict]) -> list[str]:
    lines = ["| records | executor | chunks | wall | busy cores (whole machine, of 2) |", "|---:|---|---:|---:|---:|"]
    lines += [
        f"| {r['records']:,} | {r['executor']} | {r['chunks']} | {r['wall_s']:.1f} s | {r['machine_busy_cores']} |" for r in rows
    ]
    return lines


def worker_rows(rows: list[dict]) -> list[str]:
    lines = ["| workers (concurrency each) | records | chunks | wall |", "|---|---:|---:|---:|"]
    lines += [f"| {r['workers']} | {r['records']:,} | {r['chunks']} | {r['wall_s']:.1f} s |" for r in rows]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["fanout", "sizes", "workers"], default=["fanout", "sizes", "workers"])
    parser.add_argument("--fanouts", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--fanout-scale", type=float, default=1.0)
    parser.add_argument("--scales", nargs="+", type=float, default=[100, 1000])
    parser.add_argument("--worker-chunks", type=int, default=8, help="chunks pinned for the workers comparison")
    parser.add_argument("--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS))
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    results: dict[str, list[dict]] = {}
    tables: list[str] = []
    if "fanout" in args.only:
        results["fanout"] = [
            run_once(args.pg_url, args.broker, executor, args.fanout_scale, chunks)
            for chunks in args.fanouts
            for executor in args.executors
        ]
        tables += ["### Same fan-out", *fanout_rows(results["fanout"], args.fanouts), ""]
    # The smallest size, then the workers at that size, then the larger sizes: the long runs come last.
    sizes = sorted(args.scales)
    if "sizes" in args.only:
        results["sizes"] = [run_once(args.pg_url, args.broker, executor, sizes[0], None) for executor in args.executors]
    if "workers" in args.only:
        results["workers"] = [
            run_once(args.pg_url, args.broker, "celery", sizes[0], args.worker_chunks, workers)
            for workers in ((1,), (2,), (1, 1))
        ]
        tables += ["### Celery workers", *worker_rows(results["workers"]), ""]
    if "sizes" in args.only:
        results["sizes"] += [run_once(args.pg_url, args.broker, ex, scale, None) for scale in sizes[1:] for ex in args.executors]
        tables += ["### Main job", *size_rows(results["sizes"]), ""]
    print("\n".join(tables))
    out = REPO / "bench" / "results" / f"celery_overhead-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
