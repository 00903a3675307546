"""The benchmark suite of issue 9: one command, a Markdown table per measurement, JSON in bench/results/.

    python bench/suite.py [--quick] [--only NAME ...] [--sizes SCALE ...] [--repeats N] [--runs N] [--huge]

Every run is a fresh subprocess timed from start to exit (``wall``, Python start-up included) under a
sampler that reads the whole process tree every 50 ms: ``peak`` is the largest sum of RSS over the tree
(forked processes share pages, so it overstates a multiprocess run a little), ``cpu`` is user+sys of
the tree, ``sys`` its kernel part (on this VM mostly page faults, whose cost varies from run to run with
how the host backs the guest's memory: the same plain script took 3.9-9.9 s of sys for the same ~127k
faults). ``work`` is the time a run reports itself (the job's execution; the plain script after its
imports). Ratios compare runs of the same invocation, alternated, medians of ``--repeats``.
``others_cores``: the CPU cores the rest of the machine used meanwhile; above ~0.3 on 2 cores the run shared
the CPU with other work and its times are inflated.

Measurements (``--only``; the default is the first four, plus ``huge`` with ``--huge``):

- ``stages``: the processing stages (chunk_partitions, processed_chunks, consolidated_output) against
  ``bench/plain_pandas.py`` on the same stored raw hour, per ``--sizes`` (synthetic ``--scale``; peak
  hour 2026-01-17-10:00, 11,169 records at scale 1). raw_volume is materialized once; every measured run gets a fresh data root
  holding only the published raw hour (no checkpoints to reuse) and the same instance. Each output is
  checked to be identical, column by column, to the plain script's.
- ``slope``: seconds per extra chunk step, least squares over pinned chunk counts, at the smallest size,
  in process, under Dagster's stock multiprocess executor (spawn) and under the job's own executor.
- ``restart``: after chunk 8 of 16 fails, the re-execution from failure as a share of a full run (job
  executor, largest size); the restarted output must equal the full run's. The re-execution's wall is split
  (``restart_breakdown``, from its event log as ``bench/timeline.py`` reads it) into start-up, run creation,
  seconds with no step running, the failed chunk's own step and the other steps; ``fixed_share`` is the first
  three over the full run: the share a restart costs however little failed.
- ``tuning``: ``--runs`` CLI runs (default strategy, in process) of fresh partitions on one instance at the
  largest size; per run the orchestration overhead share from the event log (defined in ``overhead_share``).
- ``huge``: the CLI run and the plain script on the 100M-record hour (``--scale 9000``) under a memory cap.
- ``profile``: pyinstrument profiles of the stages in process per size (text in bench/results/).
- ``duckdb``: ``bench/prototype_duckdb.py`` (whole hour, and per order_id range) against the plain script.
- ``launches``: the stages on each launch path (in process, the job's executor, launched from the UI through the
  daemon with ``bench/ui_launch.py``) beside DuckDB's whole-hour query, all on one stored raw hour (issue 24: the
  ~10M-record hour is ``--sizes 900``); ``work_x_duckdb`` is each one's own seconds over the query's.
- ``cores``: the plain script alone against two copies at once (largest size): the speedup two processes get
  from this machine's cores, the ceiling of any parallel executor's gain over one process.
- ``baseline``: the stages in process of this tree against the same stages of another checkout
  (``--baseline PATH``, its repository root: its own ``bench/run_stages.py`` and package), alternated on one
  stored raw hour with the plain script; both outputs are checked against the plain one.
"""

import argparse
import itertools
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import pyarrow.dataset as ds
from week_backfill import busy_seconds

from scalable_pipeline.publishing.versioned_store import VersionedStore

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
# The 2026 peak hour nearest the 11.1M records at --scale 1000 (11,169 at scale 1; hours vary by day).
PARTITION = "2026-01-17-10:00"
MB = 2**20
GB = 2**30


@dataclass
class Measured:
    wall: float
    cpu: float
    sys: float  # of ``cpu``: kernel time, mostly page faults; on this VM it varies with how the host backs memory
    peak: int
    returncode: int
    stdout: str
    stderr: str
    others: float  # CPU cores the rest of the machine used meanwhile (average): the noise indicator
    killed_at: int | None = None

    @property
    def report(self) -> dict:
        """The JSON line the command printed last (its own figures), or {}."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def require_success(self, what: str) -> "Measured":
        if self.returncode:
            raise RuntimeError(f"{what} failed (exit {self.returncode}):\n{self.stdout[-2000:]}\n{self.stderr[-4000:]}")
        return self


WARM_MEMORY = {"bytes": 0}  # --warm-memory-gb


def warm_memory() -> None:
    """Touch ``--warm-memory-gb`` and free it just before a run: on a VM whose host backs guest memory lazily
    (and takes freed pages back), a run's first touch of a page costs a host fault; warmed, every variant
    starts with backed pages and the comparison is of the code, not of the host's memory state."""
    if WARM_MEMORY["bytes"]:
        block = np.ones(WARM_MEMORY["bytes"], dtype=np.uint8)
        del block


def measure(command: list[str], env: dict, limit_bytes: int | None = None) -> Measured:
    """Run ``command`` to its end, sampling its process tree every 50 ms; kill the tree above ``limit_bytes``
    (and make it the kernel's first choice when memory runs out).

    CPU: the larger of the children's rusage (exact for every waited-for descendant) and the sum over
    the sampled processes of their last seen user+sys (catches processes nobody waits for, such as a
    multiprocessing forkserver and the steps it forks).
    """
    warm_memory()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_before = busy_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=first_to_kill if limit_bytes else None,
    )
    root = psutil.Process(process.pid)
    cpu: dict[int, float] = {}
    kernel: dict[int, float] = {}
    peak, killed_at = 0, None
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, killed_at
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            rss = 0
            for member in tree:
                try:
                    rss += member.memory_info().rss
                    times = member.cpu_times()
                    cpu[member.pid] = times.user + times.system
                    kernel[member.pid] = times.system
                except psutil.Error:
                    pass
            peak = max(peak, rss)
            if limit_bytes and rss > limit_bytes and killed_at is None:
                killed_at = rss
                for member in reversed(tree):
                    with suppress(psutil.Error):
                        member.kill()
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    tree_cpu = max(waited, sum(cpu.values()))
    tree_sys = max(after.ru_stime - before.ru_stime, sum(kernel.values()))
    others = max(0.0, (busy_seconds() - machine_before - tree_cpu) / wall)
    return Measured(wall, tree_cpu, tree_sys, peak, process.returncode, stdout, stderr, others, killed_at)


def first_to_kill() -> None:
    """In a capped run's process: if memory runs out before the sampler acts, the kernel kills this tree first."""
    with suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("1000")


class Workspace:
    """A Dagster instance (DAGSTER_HOME) and a data root in a temporary directory."""

    def __init__(self, root: Path):
        self.root, self.home, self.data = root, root / "home", root / "data"
        self.home.mkdir(parents=True)
        self.data.mkdir()
        shutil.copyfile(REPO / "dagster.yaml", self.home / "dagster.yaml")

    def env(self, data: Path | None = None) -> dict:
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "SCALABLE_PIPELINE_DATA_DIR": str(data or self.data),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }

    @contextmanager
    def scratch_data(self) -> Iterator[Path]:
        """A fresh data root on the same instance holding only the published raw hour (hard links)."""
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.root))
        shutil.copytree(self.data / "tables" / "raw_volume", data / "tables" / "raw_volume", copy_function=os.link)
        try:
            yield data
        finally:
            shutil.rmtree(data, ignore_errors=True)


def published_path(data: Path, asset: str, partition: str = PARTITION) -> Path:
    """The data of the published version (a file or a directory), found through its pointer or its Delta table."""
    for pointer in (data / "tables" / asset).glob("*/published.json"):
        document = json.loads(pointer.read_text())
        if document["partition"] == partition:
            return data / document["path"]  # an absolute path stays absolute
    return Path(VersionedStore(data).require_published(asset, partition).path)


def row_count(path: Path) -> int:
    return ds.dataset(path, format="parquet").count_rows()


def difference(expected: Path, actual: Path) -> str | None:
    """None when both Parquet tables (files or directories) hold the same columns and values in the same order."""
    left, right = ds.dataset(expected, format="parquet"), ds.dataset(actual, format="parquet")
    if sorted(left.schema.names) != sorted(right.schema.names):
        return f"columns {left.schema.names} != {right.schema.names}"
    if left.count_rows() != right.count_rows():
        return f"rows {left.count_rows()} != {right.count_rows()}"
    for name in left.schema.names:
        a, b = left.to_table(columns=[name]).column(name), right.to_table(columns=[name]).column(name)
        if not a.equals(b.cast(a.type)):
            return f"column {name} differs"
    return None


def checked(expected: Path, actual: Path) -> str:
    problem = difference(expected, actual)
    if problem:
        raise AssertionError(f"{actual} differs from {expected}: {problem}")
    return f"identical ({row_count(actual):,} rows)"


def run_stages(*options: str) -> list[str]:
    return [sys.executable, str(BENCH / "run_stages.py"), "--partition", PARTITION, *options]


def plain(raw: Path, out: Path) -> list[str]:
    return [sys.executable, str(BENCH / "plain_pandas.py"), str(raw), str(out), "--partition", PARTITION]


def cli(partition: str, scale: float) -> list[str]:
    return [sys.executable, "-m", "scalable_pipeline", "run", "--partition", partition, "--scale", str(scale)]


def materialize_raw(workspace: Workspace, scale: float) -> Measured:
    return measure(run_stages("--assets", "raw", "--scale", str(scale)), workspace.env()).require_success("raw_volume")


@dataclass(frozen=True)
class Variant:
    """One way to process the stored raw hour: its command (from the raw data and a scratch data root) and its output."""

    name: str
    command: Callable[[Path, Path], list[str]]
    output: Callable[[Path], Path]


def stages_variant(name: str, executor: str, scale: float) -> Variant:
    return Variant(
        name,
        lambda raw, data: run_stages("--assets", "stages", "--executor", executor, "--scale", str(scale)),
        lambda data: published_path(data, "consolidated_output"),
    )


def chunk_count(run: Measured) -> object:
    report = run.report
    return report.get("metadata", {}).get("chunk_partitions", {}).get("chunk_count", report.get("chunks"))


def summary(name: str, runs: list[Measured], **extra) -> dict:
    """Medians (and the wall's range) of repeated runs of one variant."""
    walls = [m.wall for m in runs]
    works = [m.report["seconds"] for m in runs if "seconds" in m.report]
    return {
        "variant": name,
        **extra,
        "wall_s": round(statistics.median(walls), 2),
        "wall_range_s": f"{min(walls):.2f}-{max(walls):.2f}",
        "work_s": round(statistics.median(works), 2) if works else None,
        "cpu_s": round(statistics.median(m.cpu for m in runs), 2),
        "sys_s": round(statistics.median(m.sys for m in runs), 2),
        "peak_mb": round(statistics.median(m.peak for m in runs) / MB),
        "others_cores": round(statistics.median(m.others for m in runs), 1),
    }


def compare_with_plain(args: argparse.Namespace, scale: float, variants: list[Variant]) -> list[dict]:
    """Alternate the plain script and ``variants`` on one stored raw hour; each output must equal the plain one."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workspace = Workspace(Path(tmp))
        raw_run = materialize_raw(workspace, scale)
        raw = published_path(workspace.data, "raw_volume")
        reference = Path(tmp) / "plain.parquet"
        baseline = Variant("plain pandas", lambda raw, data: plain(raw, reference), lambda data: reference)
        runs: dict[str, list[Measured]] = {variant.name: [] for variant in [baseline, *variants]}
        outputs: dict[str, str] = {}
        for _ in range(args.repeats):
            for variant in [baseline, *variants]:
                with workspace.scratch_data() as data:
                    runs[variant.name].append(
                        measure(variant.command(raw, data), workspace.env(data)).require_success(variant.name)
                    )
                    outputs[variant.name] = "reference" if variant is baseline else checked(reference, variant.output(data))
        records = row_count(raw)
        rows = [
            summary(name, measured, records=records, chunks=chunk_count(measured[-1]), output=outputs[name])
            for name, measured in runs.items()
        ]
        for row in rows:
            row["wall_x"] = round(row["wall_s"] / rows[0]["wall_s"], 2)
            row["work_x"] = round(row["work_s"] / rows[0]["work_s"], 2)
            row["cpu_x"] = round(row["cpu_s"] / rows[0]["cpu_s"], 2)
            row["peak_x"] = round(row["peak_mb"] / rows[0]["peak_mb"], 2)
        return [*rows, summary("raw_volume, materialized once (not compared)", [raw_run], records=records)]


def stages_vs_plain(args: argparse.Namespace) -> list[dict]:
    rows = []
    for scale in args.sizes:
        variants = [
            stages_variant("stages, in process", "in_process", scale),
            stages_variant("stages, job executor", "job", scale),
        ]
        rows += [{"scale": scale, **row} for row in compare_with_plain(args, scale, variants)]
    return rows


EXECUTORS = {"in process": "in_process", "stock multiprocess (spawn)": "spawn", "job executor (forkserver, preloaded)": "job"}


def step_overhead_slope(args: argparse.Namespace) -> list[dict]:
    """Job seconds against pinned chunk counts per executor; the slope is the cost of one more chunk step."""
    scale = min(args.sizes)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workspace = Workspace(Path(tmp))
        materialize_raw(workspace, scale)
        records = row_count(published_path(workspace.data, "raw_volume"))
        seconds: dict[tuple[str, int], list[Measured]] = {}
        for _ in range(args.repeats):
            for executor in EXECUTORS.values():
                for chunks in args.chunk_counts:
                    with workspace.scratch_data() as data:
                        options = ("--assets", "stages", "--executor", executor, "--scale", str(scale), "--chunks", str(chunks))
                        run = measure(run_stages(*options), workspace.env(data)).require_success(f"{executor} {chunks} chunks")
                        assert chunk_count(run) == chunks, f"asked for {chunks} chunks, got {chunk_count(run)}"
                        seconds.setdefault((executor, chunks), []).append(run)
    rows = []
    for name, executor in EXECUTORS.items():
        work = [statistics.median(run.report["seconds"] for run in seconds[executor, chunks]) for chunks in args.chunk_counts]
        cpu = [statistics.median(run.cpu for run in seconds[executor, chunks]) for chunks in args.chunk_counts]
        rows.append(
            {
                "executor": name,
                "records": records,
                **{
                    f"{chunks} chunks: job s / cpu s": f"{w:.2f} / {c:.2f}"
                    for chunks, w, c in zip(args.chunk_counts, work, cpu, strict=True)
                },
                "slope_s_per_chunk_step": round(float(np.polyfit(args.chunk_counts, work, 1)[0]), 3),
                "cpu_slope_s_per_chunk_step": round(float(np.polyfit(args.chunk_counts, cpu, 1)[0]), 3),
            }
        )
    return rows


def restart_cost(args: argparse.Namespace, chunks: int = 16, failing: int = 8) -> list[dict]:
    """A full run, and (on a fresh data root, same instance) a run whose chunk ``failing`` fails, then its re-execution."""
    scale = max(args.sizes)
    options = ("--assets", "all", "--executor", "job", "--scale", str(scale), "--chunks", str(chunks))
    full, failed, resumed, output, breakdowns = [], [], [], "", []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            workspace = Workspace(Path(tmp))
            full.append(measure(run_stages(*options), workspace.env()).require_success("full run"))
            restart_data = Path(tmp) / "restart-data"
            failed.append(measure(run_stages(*options, "--fail-chunk", str(failing)), workspace.env(restart_data)))
            assert failed[-1].report.get("success") is False, (
                f"the run with a failing chunk did not fail: {failed[-1].stderr[-2000:]}"
            )
            reexecute = ("--fail-chunk", str(failing), "--reexecute", failed[-1].report["run_id"])
            resumed.append(measure(run_stages(*options, *reexecute), workspace.env(restart_data)).require_success("re-execution"))
            breakdowns.append(restart_breakdown(workspace.home, resumed[-1], failing))
            output = checked(
                published_path(workspace.data, "consolidated_output"), published_path(restart_data, "consolidated_output")
            )
    records = full[-1].report["metadata"]["raw_volume"]["total_records"]
    rows = [
        summary(f"full run ({chunks} chunks)", full, records=records),
        summary(f"run with chunk {failing} failing", failed, records=records),
        summary(
            "re-execution from failure",
            resumed,
            records=records,
            output=f"vs full run: {output}",
            **{key: round(statistics.median(b[key] for b in breakdowns), 2) for key in breakdowns[0]},
        ),
    ]
    for row in rows:
        row["wall_share"] = round(row["wall_s"] / rows[0]["wall_s"], 3)
        row["work_share"] = round(row["work_s"] / rows[0]["work_s"], 3)
    fixed = sum(rows[2][key] for key in ("startup_s", "run_creation_s", "no_step_running_s"))
    rows[2]["fixed_share"] = round(fixed / rows[0]["wall_s"], 3)  # the part of the share no less failing work removes
    return rows


def parallel_ceiling(args: argparse.Namespace) -> list[dict]:
    """The plain script alone, then two copies at once on the same stored raw hour (alternating): how much
    faster two processes finish two hours' work than one does, i.e. what a second core can give at most."""
    scale = max(args.sizes)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workspace = Workspace(Path(tmp))
        materialize_raw(workspace, scale)
        raw = published_path(workspace.data, "raw_volume")
        outputs = [Path(tmp) / f"plain-{copy}.parquet" for copy in (1, 2)]
        pair = ["bash", "-c", f"{shlex.join(plain(raw, outputs[0]))} & {shlex.join(plain(raw, outputs[1]))} & wait"]
        alone: list[Measured] = []
        together: list[Measured] = []
        for _ in range(args.repeats):
            alone.append(measure(plain(raw, outputs[0]), workspace.env()).require_success("plain script"))
            together.append(measure(pair, workspace.env()).require_success("two plain scripts at once"))
        records = row_count(raw)
    rows = [summary("plain script, alone", alone, records=records), summary("two at once", together, records=records)]
    rows[1]["speedup_of_two_processes"] = round(2 * rows[0]["wall_s"] / rows[1]["wall_s"], 2)
    return rows


def restart_breakdown(home: Path, run: Measured, failing: int) -> dict[str, float]:
    """Where a re-execution's wall goes: the process's start-up (imports, definitions, instance) before the
    job is called, creating the run before its first event, the seconds of its span in which no step was
    running (step processes starting, gaps), the failed chunk's own step (its ranges run in it), and the
    other steps' own time. The first three are what any restart costs, however little failed."""
    from timeline import no_step_running, step_marks

    entries = run_logs(home, run.report["run_id"])
    marks = step_marks(entries)
    span = entries[-1].timestamp - entries[0].timestamp
    own = {key: m["end"] - m["start"] for key, m in marks.items() if "start" in m and "end" in m}
    failed = sum(seconds for key, seconds in own.items() if f"chunk_{failing:05d}" in key)
    return {
        "startup_s": run.wall - run.report["seconds"],
        "run_creation_s": run.report["seconds"] - span,
        "no_step_running_s": no_step_running(marks, span),
        "failed_chunk_step_s": failed,
        "other_steps_s": sum(own.values()) - failed,
    }


def overhead_share(entries: list) -> dict:
    """Orchestration overhead of one in-process run, from its event log.

    The run's span is RUN_START to RUN_SUCCESS/RUN_FAILURE. Each interval between consecutive events is
    charged to the event that ends it: intervals ending in LOADED_INPUT (an input manager loaded data) or
    STEP_OUTPUT (the op's body ran until it yielded) are compute; every other interval (run and step
    start and end, resource set-up, type checks, handled outputs, materialization and check events, the
    gaps between steps) is orchestration. overhead_share = 1 - compute / span. An interval also holds the
    write of the event that opens it (about 10 ms on SQLite), so this is a lower bound; with parallel
    steps the events interleave and the split is not meaningful.
    """
    import dagster as dg

    kinds = dg.DagsterEventType
    compute_kinds = {kinds.LOADED_INPUT, kinds.STEP_OUTPUT}
    events = [(entry.timestamp, entry.dagster_event.event_type) for entry in entries if entry.dagster_event]
    start = next(at for at, kind in events if kind == kinds.RUN_START)
    end = max(at for at, kind in events if kind in (kinds.RUN_SUCCESS, kinds.RUN_FAILURE))
    compute = sum(at - before for (before, _), (at, kind) in itertools.pairwise(events) if kind in compute_kinds and at > start)
    return {
        "events": len(events),
        "run_span_s": round(end - start, 2),
        "compute_s": round(compute, 2),
        "overhead_share": round(1 - compute / (end - start), 3),
    }


def run_logs(home: Path, run_id: str | None = None) -> list:
    """The event log of run ``run_id`` (default: the latest) of the instance in ``home``."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        return list(instance.all_logs(run_id or instance.get_runs(limit=1)[0].run_id))


def last_run_overhead(home: Path) -> dict:
    """The latest run's overhead share, and its records and chunk plan from its materialization metadata."""
    entries = run_logs(home)
    metadata = {
        materialization.asset_key.path[-1]: {key: value.value for key, value in materialization.metadata.items()}
        for materialization in (entry.asset_materialization for entry in entries)
        if materialization
    }
    plan = metadata["chunk_partitions"]
    return {
        "records": metadata["raw_volume"]["total_records"],
        "chunks": plan["chunk_count"],
        "mode": plan.get("processing_mode"),
        **overhead_share(entries),
    }


def overhead_over_runs(args: argparse.Namespace) -> list[dict]:
    """``--runs`` CLI runs (default strategy, in process) of fresh partitions (10:00 of consecutive days), one instance."""
    scale = max(args.sizes)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workspace = Workspace(Path(tmp))
        for day in range(1, args.runs + 1):
            partition = f"2026-01-{day + 4:02d}-10:00"
            run = measure(cli(partition, scale), workspace.env()).require_success(f"CLI run {partition}")
            rows.append(
                {
                    "run": day,
                    "partition": partition,
                    "wall_s": round(run.wall, 2),
                    "peak_mb": round(run.peak / MB),
                    "others_cores": round(run.others, 1),
                    **last_run_overhead(workspace.home),
                }
            )
    return rows


def outcome(run: Measured, cap: int) -> str:
    if run.killed_at:
        return f"killed at {run.killed_at / GB:.1f} GB (cap {cap / GB:.1f} GB)"
    if run.returncode:
        return f"failed (exit {run.returncode}): {(run.stderr.strip().splitlines() or [''])[-1][:200]}"
    return "completed"


def huge_hour(args: argparse.Namespace, scale: float = 9000) -> list[dict]:
    """The whole CLI run, then the plain script on its raw hour, each killed above the memory cap."""
    cap = int(min(args.mem_cap_gb * GB, psutil.virtual_memory().available - GB))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workspace = Workspace(Path(tmp))
        pipeline = measure(cli(PARTITION, scale), workspace.env(), cap)
        rows = [{**summary("CLI run (in process, default strategy)", [pipeline]), "outcome": outcome(pipeline, cap)}]
        try:
            raw = published_path(workspace.data, "raw_volume")
        except FileNotFoundError:
            return [*rows, {"variant": "plain pandas", "outcome": "not run: no raw hour was published"}]
        reference = Path(tmp) / "plain.parquet"
        baseline = measure(plain(raw, reference), workspace.env(), cap)
        rows.append({**summary("plain pandas", [baseline]), "outcome": outcome(baseline, cap)})
        if not pipeline.returncode and not baseline.returncode:
            rows[0]["outcome"] += "; output " + checked(reference, published_path(workspace.data, "consolidated_output"))
        for row in rows:
            row["records"] = row_count(raw)
        return rows


# Profile categories, by function name (pandas, pyarrow and Dagster names, not the pipeline's own).
PROFILE_CATEGORIES = {
    "parquet_write_s": {"to_parquet", "write_table"},
    "parquet_read_s": {"read_parquet", "read_row_groups", "read_table"},
    "sort_s": {"sort_values"},
    "dedup_s": {"duplicated", "drop_duplicates"},
    "concat_s": {"concat"},
}


def profile_breakdown(session_path: Path) -> dict:
    """Seconds of the profiled job: pipeline code (frames of the package, outermost) and, inside it, the
    PROFILE_CATEGORIES (outermost match); Dagster = the rest of execute_in_process, of which event-log writes."""
    from pyinstrument.session import Session

    totals: dict[str, float] = {}

    def add(key: str, seconds: float) -> None:
        totals[key] = totals.get(key, 0.0) + seconds

    def walk(frame, in_pipeline: bool, in_dagster: bool) -> None:
        if frame.function == "execute_in_process" and not in_dagster:
            add("job_s", frame.time)
            in_dagster = True
        elif in_dagster and not in_pipeline and "/scalable_pipeline/" in (frame.file_path or ""):
            add("pipeline_code_s", frame.time)
            in_pipeline = True
        elif in_dagster and not in_pipeline and frame.function == "store_event":
            add("event_log_writes_s", frame.time)
        if in_pipeline:
            category = next((name for name, functions in PROFILE_CATEGORIES.items() if frame.function in functions), None)
            if category:
                add(category, frame.time)
                return
        for child in frame.children:
            walk(child, in_pipeline, in_dagster)

    walk(Session.load(str(session_path)).root_frame(), False, False)
    totals["dagster_s"] = totals.get("job_s", 0.0) - totals.get("pipeline_code_s", 0.0)
    return {key: round(value, 1) for key, value in totals.items()}


def profiles(args: argparse.Namespace) -> list[dict]:
    """pyinstrument (wall clock) over the stages in process, per size: session, text report and breakdown."""
    rows = []
    for scale in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            workspace = Workspace(Path(tmp))
            materialize_raw(workspace, scale)
            session = RESULTS / f"{args.stamp}-profile-scale{scale:g}.pyisession"
            options = ("--partition", PARTITION, "--assets", "stages", "--executor", "in_process", "--scale", str(scale))
            with workspace.scratch_data() as data:
                command = [
                    sys.executable,
                    "-m",
                    "pyinstrument",
                    "-r",
                    "pyisession",
                    "-o",
                    str(session),
                    str(BENCH / "run_stages.py"),
                ]
                run = measure([*command, *options], workspace.env(data)).require_success("profiled run")
            text = session.with_suffix(".txt")
            subprocess.run(
                [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text", "-o", str(text)], check=True
            )
            records = row_count(published_path(workspace.data, "raw_volume"))
            rows.append(
                {
                    **summary("stages, in process, profiled", [run], records=records, chunks=chunk_count(run)),
                    **profile_breakdown(session),
                    "profile": text.name,
                }
            )
    return rows


def duckdb(name: str, output: str, *options: str) -> Variant:
    """bench/prototype_duckdb.py on the stored raw hour, writing ``output`` in the scratch data root."""
    command = [sys.executable, str(BENCH / "prototype_duckdb.py"), "--partition", PARTITION, *options]
    return Variant(name, lambda raw, data: [*command, str(raw), str(data / output)], lambda data: data / output)


def duckdb_prototype(args: argparse.Namespace) -> list[dict]:
    """bench/prototype_duckdb.py, whole hour and per order_id range, against the plain script."""
    rows = []
    for scale in args.sizes:
        variants = [
            duckdb("duckdb, whole hour", "duckdb.parquet"),
            duckdb(f"duckdb, {args.ranges} order_id ranges", "duckdb-ranges", "--ranges", str(args.ranges)),
        ]
        rows += [{"scale": scale, **row} for row in compare_with_plain(args, scale, variants)]
    return rows


def launch_paths(args: argparse.Namespace) -> list[dict]:
    """The stages of the stored raw hour on each launch path beside one DuckDB query of the same rules: in process
    (execute_in_process), under the job's own executor (execute_job, as ``dagster job execute`` runs a job) and
    launched from the UI (bench/ui_launch.py: the webserver and the daemon started for the run, which the daemon
    launches in a process of its own under the job's executor; its work is the press to RUN_SUCCESS, its wall, CPU
    and peak include the servers). ``work_x_duckdb``: the work over the DuckDB query's."""
    ui = [sys.executable, str(BENCH / "ui_launch.py"), "--partition", PARTITION, "--assets", "stages"]
    rows = []
    for scale in args.sizes:
        variants = [
            duckdb("duckdb, whole hour", "duckdb.parquet"),
            stages_variant("stages, in process", "in_process", scale),
            stages_variant("stages, job executor", "job", scale),
            Variant(
                "stages, launched from the UI", lambda raw, data: ui, lambda data: published_path(data, "consolidated_output")
            ),
        ]
        compared = compare_with_plain(args, scale, variants)[:-1]  # the last row is raw_volume's, not compared
        query = next(row["work_s"] for row in compared if row["variant"] == variants[0].name)
        rows += [{"scale": scale, **row, "work_x_duckdb": round(row["work_s"] / query, 2)} for row in compared]
    return rows


def tree_stages(name: str, repo: Path, scale: float) -> Variant:
    """The stages in process with ``repo``'s package and its own ``bench/run_stages.py``."""
    command = ["env", f"PYTHONPATH={repo}", sys.executable, str(repo / "bench" / "run_stages.py"), "--partition", PARTITION]
    options = ["--assets", "stages", "--executor", "in_process", "--scale", str(scale)]
    return Variant(name, lambda raw, data: [*command, *options], lambda data: published_path(data, "consolidated_output"))


def against_baseline(args: argparse.Namespace) -> list[dict]:
    """The stages in process, this tree against the checkout ``--baseline`` (alternated, same raw hour)."""
    if not args.baseline:
        raise SystemExit("baseline: name the other checkout with --baseline PATH")
    other = Path(args.baseline).resolve()
    rows = []
    for scale in args.sizes:
        variants = [tree_stages("stages, this tree", REPO, scale), tree_stages(f"stages, baseline {other}", other, scale)]
        rows += [{"scale": scale, **row} for row in compare_with_plain(args, scale, variants)]
    return rows


MEASUREMENTS: dict[str, Callable[[argparse.Namespace], list[dict]]] = {
    "stages": stages_vs_plain,
    "slope": step_overhead_slope,
    "restart": restart_cost,
    "tuning": overhead_over_runs,
    "huge": huge_hour,
    "profile": profiles,
    "duckdb": duckdb_prototype,
    "launches": launch_paths,
    "cores": parallel_ceiling,
    "baseline": against_baseline,
}


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows])


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def machine() -> dict:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / GB, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "commit": commit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repeat, scales 9 and 100, fewer chunk counts and runs")
    parser.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS), help="run only these measurements")
    parser.add_argument("--sizes", nargs="+", type=float, help="synthetic scales (default 9 100 1000; quick: 9 100)")
    parser.add_argument("--repeats", type=int, help="runs per variant, median reported (default 3; quick: 1)")
    parser.add_argument("--runs", type=int, help="tuning: runs in the sequence (default 5; quick: 3)")
    parser.add_argument("--chunk-counts", nargs="+", type=int, help="slope: pinned chunk counts (default 1 16 64; quick: 1 4 16)")
    parser.add_argument("--ranges", type=int, default=8, help="duckdb: order_id ranges of the per-range variant")
    parser.add_argument(
        "--warm-memory-gb", type=float, default=0.0, help="touch this much memory before every run (see warm_memory)"
    )
    parser.add_argument("--baseline", metavar="PATH", help="baseline: the other checkout's repository root")
    parser.add_argument("--huge", action="store_true", help="also the 100M-record hour (--scale 9000; long)")
    parser.add_argument("--mem-cap-gb", type=float, default=20.0, help="huge: kill a run whose process tree exceeds this")
    args = parser.parse_args()
    WARM_MEMORY["bytes"] = int(args.warm_memory_gb * GB)
    args.sizes = args.sizes or ([9, 100] if args.quick else [9, 100, 1000])
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.runs = args.runs or (3 if args.quick else 5)
    args.chunk_counts = args.chunk_counts or ([1, 4, 16] if args.quick else [1, 16, 64])
    args.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    names = args.only or ["stages", "slope", "restart", "tuning", *(["huge"] if args.huge else [])]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.stamp}.json"
    results = {
        "started": args.stamp,
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k != "stamp"},
        "measurements": {},
    }
    print(f"{results['machine']}; results in {path}\n", flush=True)
    for name in names:
        started = time.perf_counter()
        rows = MEASUREMENTS[name](args)
        results["measurements"][name] = {
            "doc": MEASUREMENTS[name].__doc__,
            "seconds": round(time.perf_counter() - started),
            "rows": rows,
        }
        path.write_text(json.dumps(results, indent=2, default=str))
        print(f"## {name} ({time.perf_counter() - started:.0f} s)\n\n{markdown(rows)}\n", flush=True)


if __name__ == "__main__":
    main()
