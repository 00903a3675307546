"""Definitions load time with 1, 10 and 50 pipelines, and the run time of each processing path for a small hour.

    python bench/definitions_load.py                 # load: 1, 10, 50 pipelines, median of 3 fresh interpreters
    python bench/definitions_load.py --counts 1 100  # other sizes
    python bench/definitions_load.py --paths         # also: one small hour on each path, in process
    python bench/definitions_load.py --validate      # also: `dagster definitions validate` (the code location's load)
    python bench/definitions_load.py --counts 50 --repeats 10 --baseline ../other-checkout  # before/after, alternated

Load = import ``scalable_pipeline.definitions`` with ``SCALABLE_PIPELINE_CONFIG`` naming a generated pipelines
file (its module-level ``defs`` is built once, as ``dagster definitions validate`` and the UI build it), then
resolve every job (what both do next), in a fresh interpreter each time. ``--validate`` also times the whole
``dagster definitions validate -w workspace.yaml`` command: the CLI's start-up, the load, and the snapshot of
every job (run config schema included) that the code location builds, as the UI's code server does.

``--baseline DIR`` loads the same pipelines file from another git checkout of the project too, alternating with
this one run by run, so that a busy machine slows both alike. Every invocation writes its runs, the commits
and the load average before and after to ``bench/results/definitions-load-<date>-<time>.json``.
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
from datetime import datetime
from pathlib import Path

PINNED = {"cpu_usage_percent": 10, "memory_usage_percent": 10, "available_workers": 2, "queue_length": 0, "chunk_count": 3}
PATH_SCALING = {
    "single_step": {"single_step_below": 10**9},
    "fan_out": {},
    "fan_out_priority": {"priority_above": 0},
}
START, SMALL_HOUR = "2026-01-01-00:00", "2026-01-05-05:00"  # a Monday, 1,639 records
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


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


# The libraries the package imports when its definitions load (Dagster and what the steps compute with); any
# Dagster code location pays for them, however few its pipelines. The probe times them apart from the project's own
# load: its modules, the definitions built from $SCALABLE_PIPELINE_CONFIG, and every job resolved.
LOAD = """
import time
started, cpu = time.perf_counter(), time.process_time()
import dagster, deltalake, numpy, pandas, psutil, pyarrow.compute, pyarrow.csv, pyarrow.feather, pyarrow.parquet
libraries = time.perf_counter() - started
from scalable_pipeline.definitions import defs  # built once
jobs = defs.resolve_all_job_defs()
print(time.perf_counter() - started, time.process_time() - cpu, libraries, len(jobs))
"""


def load_seconds(path: Path, checkout: Path = REPO) -> tuple[float, float, float]:
    """(wall, CPU, libraries' wall) seconds of one load of ``checkout``'s definitions in a fresh interpreter: the CPU
    figure holds on a busy machine better than the wall one; wall less the libraries is the project's own load."""
    env = {**os.environ, "SCALABLE_PIPELINE_CONFIG": str(path), "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", LOAD], env=env, cwd=checkout, check=True, capture_output=True, text=True)
    wall, cpu, libraries, _ = out.stdout.split()
    return float(wall), float(cpu), float(libraries)


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


Runs = list[tuple[float, ...]]  # (wall, CPU) or, for a load, (wall, CPU, libraries' wall)
LOAD_COLUMNS = "libraries' import, wall (median) | project's own load, wall (median) | "


def row(label: str, runs: Runs) -> str:
    """The median wall and CPU seconds of ``runs`` (for a load, also the libraries' import and the rest), each run."""
    wall, cpu = (statistics.median(r[i] for r in runs) for i in (0, 1))
    split = ""
    if len(runs[0]) == 3:
        libraries, own = statistics.median(r[2] for r in runs), statistics.median(r[0] - r[2] for r in runs)
        split = f"{libraries:.2f} s | **{own:.2f} s** | "
    return f"| {label} | {wall:.2f} s | {cpu:.2f} s | {split}{', '.join(f'{r[0]:.2f}/{r[1]:.2f}' for r in runs)} |"


def table(what: str, measure: Callable[[int], tuple[float, ...]], args: argparse.Namespace, columns: str = "") -> dict[int, Runs]:
    """One row per pipeline count: the median wall and CPU seconds of ``args.repeats`` measurements, and each one."""
    rule = "---:|" * columns.count("|")
    print(f"| pipelines | {what}, wall (median) | CPU (median) | {columns}runs (wall/CPU) |\n|---:|---:|---:|{rule}---|")
    runs = {}
    for count in args.counts:
        runs[count] = [measure(count) for _ in range(args.repeats)]
        print(row(str(count), runs[count]))
    return runs


def commit_of(checkout: Path) -> str:
    """The checkout's commit, ``+edits`` when its tracked files differ from it."""
    git = ["git", "-C", str(checkout)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout
    edited = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], check=True, capture_output=True, text=True)
    return commit.strip() + ("+edits" if edited.stdout.strip() else "")


def compared(folder: Path, args: argparse.Namespace) -> dict[int, dict[str, Runs]]:
    """Loads of this checkout and of ``args.baseline``, alternated (which goes first alternates too)."""
    print(f"| pipelines, checkout | load + resolve every job, wall (median) | CPU (median) | {LOAD_COLUMNS}runs (wall/CPU) |")
    print("|---|---:|---:|---:|---:|---|")
    runs: dict[int, dict[str, Runs]] = {}
    checkouts = {"this": REPO, "baseline": args.baseline.resolve()}
    for count in args.counts:
        path, runs[count] = pipelines_file(count, folder), {name: [] for name in checkouts}
        for repeat in range(args.repeats):
            for name in list(checkouts)[:: 1 if repeat % 2 == 0 else -1]:
                runs[count][name].append(load_seconds(path, checkouts[name]))
        for name, measured in runs[count].items():
            print(row(f"{count}, {name}", measured))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paths", action="store_true", help="also time a small hour on each processing path")
    parser.add_argument("--validate", action="store_true", help="also time `dagster definitions validate`")
    parser.add_argument("--baseline", type=Path, help="another checkout of the project, loaded alternately with this one")
    args = parser.parse_args()
    started = datetime.now()
    report: dict[str, object] = {"argv": sys.argv[1:], "commit": commit_of(REPO), "loadavg_before": os.getloadavg()}
    if args.baseline:
        report["baseline_commit"] = commit_of(args.baseline)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.baseline:
            report["load"] = compared(folder, args)
        else:
            report["load"] = table(
                "load + resolve every job", lambda count: load_seconds(pipelines_file(count, folder)), args, LOAD_COLUMNS
            )
        if args.validate:
            (folder / "home").mkdir()
            print()
            report["validate"] = table(
                "`dagster definitions validate`",
                lambda count: validate_seconds(pipelines_file(count, folder), folder / "home"),
                args,
            )
        if args.paths:
            print("\n| path | small hour (1,639 records), in process |\n|---|---:|")
            report["paths"] = paths = path_seconds(folder)
            for path, seconds in paths.items():
                print(f"| {path} | {seconds:.2f} s |")
    report["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"definitions-load-{started:%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nload average before/after (1, 5, 15 min): {report['loadavg_before']} / {report['loadavg_after']}")
    print(f"raw results: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
