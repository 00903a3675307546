"""Definitions load time with 1, 10 and 50 pipelines, and the run time of each processing path for a small hour.

    python bench/definitions_load.py                 # load: 1, 10, 50 pipelines, median of 3 fresh interpreters
    python bench/definitions_load.py --counts 1 100  # other sizes
    python bench/definitions_load.py --paths         # also: one small hour on each path, in process
    python bench/definitions_load.py --validate      # also: `dagster definitions validate` (the code location's load)

Load = import ``scalable_pipeline.definitions`` with ``SCALABLE_PIPELINE_CONFIG`` naming a generated pipelines
file (its module-level ``defs`` is built once, as ``dagster definitions validate`` and the UI build it), then
resolve every job (what both do next), in a fresh interpreter each time. ``--validate`` also times the whole
``dagster definitions validate -w workspace.yaml`` command: the CLI's start-up, the load, and the snapshot of
every job (run config schema included) that the code location builds, as the UI's code server does.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PINNED = {"cpu_usage_percent": 10, "memory_usage_percent": 10, "available_workers": 2, "queue_length": 0, "chunk_count": 3}
PATH_SCALING = {
    "single_step": {"single_step_below": 10**9},
    "fan_out": {},
    "fan_out_priority": {"priority_above": 0},
}
START, SMALL_HOUR = "2026-01-01-00:00", "2026-01-05-05:00"  # a Monday, 1,639 records


def pipelines_file(count: int, folder: Path) -> Path:
    """``count`` pipelines: the main one and ``count - 1`` prefixed ones, each with a schedule and a time rule."""
    entries = [{"name": "scalable_data_processing", "key_prefix": [], "schedule": "0 * * * *"}]
    entries += [
        {
            "name": f"tenant_{i:03d}",
            "source": {"kind": "synthetic", "scale": 0.5, "seed": i},
            "schedule": "15 * * * *",
            "priority": i % 5,
            "time_rules": [{"name": "business_hours", "hours": "9-17", "scaling": {"chunk_count": 4}}],
        }
        for i in range(1, count)
    ]
    path = folder / f"pipelines-{count}.yaml"
    path.write_text(json.dumps({"pools": {"chunk_processing": 4}, "pipelines": entries}))  # JSON is YAML
    return path


LOAD = """
import time
started, cpu = time.perf_counter(), time.process_time()
from scalable_pipeline.definitions import defs  # built from $SCALABLE_PIPELINE_CONFIG, once
jobs = defs.resolve_all_job_defs()
print(time.perf_counter() - started, time.process_time() - cpu, len(jobs))
"""


def load_seconds(path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one load in a fresh interpreter: the CPU figure holds on a busy machine too."""
    env = {**os.environ, "SCALABLE_PIPELINE_CONFIG": str(path)}
    out = subprocess.run([sys.executable, "-c", LOAD], env=env, check=True, capture_output=True, text=True)
    wall, cpu, _ = out.stdout.split()
    return float(wall), float(cpu)


def validate_seconds(path: Path, home: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``dagster definitions validate`` on ``path`` (CPU: the command's own, user + system)."""
    env = {**os.environ, "SCALABLE_PIPELINE_CONFIG": str(path), "DAGSTER_HOME": str(home)}
    command = [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"]
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, env=env, cwd=Path(__file__).resolve().parent.parent, check=True, capture_output=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def path_seconds(folder: Path) -> dict[str, float]:
    """Wall time of one small-hour run per path (in process, a fresh data root and instance each)."""
    import dagster as dg

    from scalable_pipeline.assembly.project import build_definitions

    entries = [{"name": path, "start": START, "scaling": {**PINNED, **scaling}} for path, scaling in PATH_SCALING.items()]
    config = folder / "paths.yaml"
    config.write_text(json.dumps({"pipelines": entries}))
    defs = build_definitions(config)
    seconds = {}
    for path in PATH_SCALING:
        os.environ["SCALABLE_PIPELINE_DATA_DIR"] = str(folder / f"data-{path}")
        with dg.DagsterInstance.ephemeral() as instance:
            started = time.perf_counter()
            result = defs.resolve_job_def(path).execute_in_process(partition_key=SMALL_HOUR, instance=instance)
            seconds[path] = time.perf_counter() - started
            assert result.success
    return seconds


def table(what: str, measure: Callable[[int], tuple[float, float]], args: argparse.Namespace) -> None:
    """One row per pipeline count: the median wall and CPU seconds of ``args.repeats`` measurements, and each one."""
    print(f"| pipelines | {what}, wall (median) | CPU (median) | runs (wall/CPU) |\n|---:|---:|---:|---|")
    for count in args.counts:
        runs = [measure(count) for _ in range(args.repeats)]
        wall, cpu = (statistics.median(r[i] for r in runs) for i in (0, 1))
        listed = ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs)
        print(f"| {count} | {wall:.2f} s | {cpu:.2f} s | {listed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paths", action="store_true", help="also time a small hour on each processing path")
    parser.add_argument("--validate", action="store_true", help="also time `dagster definitions validate`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table("load + resolve every job", lambda count: load_seconds(pipelines_file(count, folder)), args)
        if args.validate:
            (folder / "home").mkdir()
            print()
            table(
                "`dagster definitions validate`",
                lambda count: validate_seconds(pipelines_file(count, folder), folder / "home"),
                args,
            )
        if args.paths:
            print("\n| path | small hour (1,639 records), in process |\n|---|---:|")
            for path, seconds in path_seconds(folder).items():
                print(f"| {path} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
