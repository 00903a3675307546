"""Issue 24: hours per minute through the daemon by the way a backfill is launched, against a do-nothing floor; and
one hour's latency from the UI against the in-process paths.

    python bench/backfill_speed.py [--only backfills latency] [--hours 48 168] [--rounds 1] [--ways floor cli page]
                                   [--first 2026-01-05-00:00]
                                   [--scale 1] [--slots 2] [--sample 4] [--latency-runs 5]
                                   [--latency-first 2026-01-06-09:00] [--postgres [URL]] [--timeout 7200] [--keep]

``backfills``: per ``--hours`` N and round, three backfills of the same N hours one after the other (the order
rotates each round), each on a fresh Dagster home (the repository's ``dagster.yaml``, SQLite; ``--postgres``:
``deploy/dagster.yaml`` on a scratch database), a fresh data root and a ``dagster-daemon run`` of its own, healthy
before the launch:

- ``floor``: ``dagster job backfill`` of ``bench/backfill_floor.py`` (two assets doing nothing, in the run's process,
  a code location of its own): what a run per hour costs Dagster itself;
- ``cli``: ``dagster job backfill`` of the pipeline's job (Dagster's CLI queues one run per hour, whatever the
  assets' BackfillPolicy);
- ``page``: the backfill the job's page in the UI launches (``launchPartitionBackfill`` on the job's partition set,
  through ``dagster-graphql``): the daemon submits its runs, ranges of hours per run where a BackfillPolicy says so.

The pipeline is ``bench/week_backfill.py``'s (synthetic source at ``--scale``, chunk pool at ``--slots``, the
shipped executor setting, ``auto``). From the instance's run records: hours per minute from the launch to the last run's end, the
runs the backfill made; checks: every run succeeded, every hour covered by a successful run (its partition tag or
its range tags), and ``--sample`` hours (and the 10:00 peak) equal to the whole-hour computation; the CPU seconds
of the daemon's process group (runs and steps included, as far as their parents waited for them) and the launch,
and ``others_cores``, the cores the rest of the machine used meanwhile (above ~0.3 of 2, the times are inflated).
Then per N and way: the median hours per minute and the median of wall / the floor's wall in the same round.

``latency``: four Dagster homes and data roots, one per way to run one hour, alternated over ``--latency-runs``
hours from ``--latency-first`` (after one unmeasured hour each): ``ui``, the webserver and the daemon kept up
(``bench/ui_launch.py``) and the hour launched as the Materialize dialog launches one partition, from the press to
RUN_SUCCESS in the run's events; ``ui_floor``, the same for the floor's hour from a webserver and daemon of its own
(what a run launched from the UI costs Dagster itself: the queue, the run's process, two steps); ``cli``, ``python -m scalable_pipeline run --partition HOUR`` (in process), its
process's wall; ``execute_in_process``, ``bench/run_stages.py`` in a fresh process, the call's own seconds. Medians,
and each measured hour checked against the whole-hour computation.

The ~10M-record hour on each launch path beside one DuckDB query: ``python bench/suite.py --only launches --sizes 900``.

Raw results: ``bench/results/backfill-speed-<date>-<time>.json``, rewritten as each measurement ends. Exit status 1
if a check failed or a backfill did not end.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import psutil
from run_stages import ASSETS
from ui_launch import launch_hour, run_moments, ui_servers
from week_backfill import (
    JOB,
    REPO,
    RESULTS,
    busy_seconds,
    compare_sample,
    hours_from,
    machine,
    make_home,
    pipeline_env,
    sample_of,
    wait,
    write_pipelines,
)

# This checkout's package and its test helpers, ahead of any installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scalable_pipeline.cli.pools import apply_pool_limits
from scalable_pipeline.core.constants import PARTITION_RANGE_TAGS, PARTITION_TAG
from scalable_pipeline.pipelines.config import load_pipelines
from scalable_pipeline_tests.daemon import (
    WORKSPACE,
    daemon_ready,
    dagster_job_backfill,
    live_members,
    start_daemon,
    stop_daemon,
)
from scalable_pipeline_tests.postgres_database import scratch_database

FLOOR_JOB = "backfill_floor"  # also the name of its code location
FLOOR_ASSETS = ("floor_first", "floor_second")
FLOOR_WORKSPACE = REPO / "bench" / "backfill_floor_workspace.yaml"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_PROGRESS_BACKFILL = {"REQUESTED", "CANCELING", "FAILING"}
READY_SECONDS = 600


def backfill_command(env: dict, hours: list[str]) -> None:
    """``python -m scalable_pipeline backfill``: the backfill the job's page launches (the daemon submits its runs)."""
    command = [sys.executable, "-m", "scalable_pipeline", "backfill", "--from", hours[0], "--to", hours[-1]]
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)


@dataclass(frozen=True)
class Way:
    """A way to launch a backfill: its job, the workspace its daemon loads, and the launch (environment, hours)."""

    name: str
    job: str
    workspace: Path
    launch: Callable[[dict, list[str]], object]


WAYS = (
    Way("floor", FLOOR_JOB, FLOOR_WORKSPACE, lambda env, hours: dagster_job_backfill(env, FLOOR_JOB, hours, FLOOR_WORKSPACE)),
    Way("cli", JOB, WORKSPACE, lambda env, hours: dagster_job_backfill(env, JOB, hours)),
    Way("page", JOB, WORKSPACE, lambda env, hours: backfill_command(env, hours)),
)


@dataclass(frozen=True)
class Setting:
    """A fresh Dagster home, data root and environment under ``root``."""

    root: Path
    home: Path
    data: Path
    env: dict


@contextmanager
def fresh_setting(parent: Path, name: str, args: argparse.Namespace) -> Iterator[Setting]:
    """A home (on a scratch PostgreSQL database with ``--postgres``, dropped on exit), a data root and the environment
    of both, with the pool limits of ``args.pipelines`` applied."""
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    database = scratch_database(args.postgres, "scalable_pipeline_bench") if args.postgres else nullcontext(None)
    with database as database_url:
        make_home(root / "home", database_url)
        setting = Setting(
            root, root / "home", root / "data", pipeline_env(root / "home", root / "data", args.pipelines, database_url)
        )
        with open_instance(setting) as instance:
            apply_pool_limits(instance, load_pipelines(args.pipelines))
        yield setting


def open_instance(setting: Setting) -> dg.DagsterInstance:
    """The setting's instance, opened in this process (deploy/dagster.yaml reads its database URL from the environment)."""
    if "DAGSTER_PG_URL" in setting.env:
        os.environ["DAGSTER_PG_URL"] = setting.env["DAGSTER_PG_URL"]
    return dg.DagsterInstance.from_config(str(setting.home))


def alive(process: subprocess.Popen, log: Path) -> None:
    """Raise, with the end of its log (its folder is removed without --keep), if the daemon has exited."""
    if process.poll() is not None:
        raise RuntimeError(f"the daemon exited ({process.returncode}); {log} ends:\n{log.read_text(errors='replace')[-3000:]}")


def group_cpu_seconds(group: int) -> float:
    """CPU seconds of the live processes of a process group and of the children they waited for (the code server
    waits for the runs it launched, a run for its steps)."""
    total = 0.0
    for member in live_members(group):
        with suppress(psutil.Error):
            times = member.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of the commands it waited for (the launches)."""
    return sum(
        usage.ru_utime + usage.ru_stime for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def backfill_done(instance: dg.DagsterInstance, job: str) -> bool:
    """No backfill is still submitting, and every run of ``job`` (there is one at least) has ended."""
    if any(backfill.status.value in IN_PROGRESS_BACKFILL for backfill in instance.get_backfills()):
        return False
    runs = instance.get_runs(dg.RunsFilter(job_name=job))
    return bool(runs) and all(run.is_finished for run in runs)


def hours_of(tags: dict, hours: list[str]) -> list[str]:
    """The hours a run processes: its partition, or every hour of its range."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = (tags.get(tag) for tag in PARTITION_RANGE_TAGS)
    return hours[hours.index(start) : hours.index(end) + 1] if start in hours and end in hours else []


def one_backfill(args: argparse.Namespace, way: Way, hours: list[str], workdir: Path) -> dict:
    """``way``'s backfill of ``hours`` on a fresh setting and daemon: its figures and checks from the run records."""
    with fresh_setting(workdir, way.name, args) as setting, open_instance(setting) as instance:
        log = setting.root / "daemon.log"
        daemon = start_daemon(setting.env, log, workspace=way.workspace)
        try:
            wait(lambda: alive(daemon, log) or daemon_ready(instance), READY_SECONDS, "the daemon to be healthy", poll=1)
            cpu_before = (busy_seconds(), group_cpu_seconds(daemon.pid), own_cpu_seconds())
            launched_at = time.time()
            way.launch(setting.env, hours)
            launch_seconds = time.time() - launched_at
            wait(lambda: alive(daemon, log) or backfill_done(instance, way.job), args.timeout, "every run to end", poll=2)
            busy, ours, own = (
                after - before
                for after, before in zip(
                    (busy_seconds(), group_cpu_seconds(daemon.pid), own_cpu_seconds()), cpu_before, strict=True
                )
            )
            others = max(0.0, (busy - ours - own) / (time.time() - launched_at))
        finally:
            stop_daemon(daemon, timeout=120)
        records = instance.get_run_records(dg.RunsFilter(job_name=way.job))
        backfills = [backfill.status.value for backfill in instance.get_backfills()]
    runs = [
        {
            "hours": hours_of(record.dagster_run.tags, hours),
            "status": record.dagster_run.status.value,
            "start": record.start_time,
            "end": record.end_time,
            "parent_run_id": record.dagster_run.parent_run_id,
        }
        for record in records
    ]
    covered = {hour for run in runs if run["status"] == "SUCCESS" for hour in run["hours"]}
    ended = [run for run in runs if run["start"] and run["end"]]
    wall = max(run["end"] for run in ended) - launched_at
    verdicts = compare_sample(setting.data, sample_of(hours, args.sample)) if way.job == JOB else {}
    return {
        "way": way.name,
        "hours": len(hours),
        "first_hour": hours[0],
        "runs": len(runs),
        "runs_by_status": dict(Counter(run["status"] for run in runs)),
        "backfill_statuses": backfills,
        "launch_command_seconds": launch_seconds,
        "first_run_start_seconds": min(run["start"] for run in ended) - launched_at,
        "wall_seconds": wall,
        "hours_per_minute": len(hours) / (wall / 60),
        "run_seconds_median": statistics.median(run["end"] - run["start"] for run in ended),
        "cpu_seconds": ours + own,
        "others_cores": others,
        "sample": verdicts,
        "checks": {
            "every_run_succeeded": all(run["status"] == "SUCCESS" for run in runs),
            "every_hour_covered": covered == set(hours),
            "sample_equal_to_whole_hour": all(verdict.startswith("equal") for verdict in verdicts.values()),
        },
        "run_records": runs,
    }


def backfills(args: argparse.Namespace, workdir: Path, report: Callable[[dict], None]) -> dict:
    """Every way's backfill of each ``--hours``, rounds alternating the ways; per N and way the medians."""
    results: list[dict] = []
    for round_index in range(args.rounds):
        for count in args.hours:
            hours = hours_from(args.first, count)
            ways = [way for way in WAYS if way.name in args.ways]
            shift = round_index % len(ways)
            for way in ways[shift:] + ways[:shift]:
                print(f"round {round_index + 1}: {count} hours, {way.name} ...", file=sys.stderr, flush=True)
                try:
                    result = one_backfill(args, way, hours, workdir)
                except (TimeoutError, RuntimeError, subprocess.CalledProcessError) as error:
                    stderr = getattr(error, "stderr", None) or b""
                    result = {"way": way.name, "hours": count, "error": f"{error} {stderr.decode()[-2000:]}".strip()}
                results.append({"round": round_index + 1, **result})
                print(f"  {line_of(results[-1])}", file=sys.stderr, flush=True)
                report({"runs": results})
    passed = all("checks" in result and all(result["checks"].values()) for result in results)
    return {"runs": results, "summary": backfill_summary(args, results), "checks": {"every_backfill_ended_and_passed": passed}}


def line_of(result: dict) -> str:
    if "error" in result:
        return f"{result['way']}: ERROR {result['error'][:200]} ..."
    failed = [name for name, ok in result["checks"].items() if not ok]
    return (
        f"{result['way']}: {result['hours_per_minute']:.2f} hours/min ({result['wall_seconds']:.0f} s, {result['runs']} runs,"
        f" first run started after {result['first_run_start_seconds']:.1f} s, others used {result['others_cores']:.1f} cores)"
        + (f" FAILED {failed}" if failed else "")
    )


def backfill_summary(args: argparse.Namespace, results: list[dict]) -> list[dict]:
    """Per N and way: median hours per minute, runs, and the median of wall / floor wall of the same round."""
    rows = []
    for count in args.hours:
        floor = {
            r["round"]: r["wall_seconds"] for r in results if r["hours"] == count and r["way"] == "floor" and "error" not in r
        }
        for way in WAYS:
            done = [r for r in results if r["hours"] == count and r["way"] == way.name and "error" not in r]
            if not done:
                continue
            ratios = [r["wall_seconds"] / floor[r["round"]] for r in done if r["round"] in floor]
            rows.append(
                {
                    "hours": count,
                    "way": way.name,
                    "hours_per_minute": round(statistics.median(r["hours_per_minute"] for r in done), 2),
                    "wall_s": round(statistics.median(r["wall_seconds"] for r in done), 1),
                    "x_floor_wall": round(statistics.median(ratios), 2) if ratios else None,
                    "runs": sorted({r["runs"] for r in done}),
                    "cpu_s": round(statistics.median(r["cpu_seconds"] for r in done)),
                    "others_cores": round(statistics.median(r["others_cores"] for r in done), 1),
                    "checks_passed": all(all(r["checks"].values()) for r in done),
                }
            )
    return rows


def timed(command: list[str], env: dict, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started, done


def latency(args: argparse.Namespace, workdir: Path, report: Callable[[dict], None]) -> dict:
    """One hour at a time from the UI (webserver and daemon up), the floor's hour from its own UI, by the CLI and by
    execute_in_process, alternated."""
    hours = hours_from(args.latency_first, args.latency_runs + 1)  # the first is a warm-up, not counted
    runs: list[dict] = []
    with ExitStack() as stack:
        ui, floor, cli, in_process = (
            stack.enter_context(fresh_setting(workdir, name, args)) for name in ("ui", "ui_floor", "cli", "in_process")
        )
        instance, floor_instance = stack.enter_context(open_instance(ui)), stack.enter_context(open_instance(floor))
        port = stack.enter_context(ui_servers(ui.env, ui.root, instance, READY_SECONDS))
        floor_port = stack.enter_context(
            ui_servers(floor.env, floor.root, floor_instance, READY_SECONDS, workspace=FLOOR_WORKSPACE)
        )
        for index, hour in enumerate(hours):
            run_id, pressed = launch_hour(port, hour, ASSETS["all"])
            moments = run_moments(instance, run_id, pressed, args.timeout)
            if not moments["success"]:
                raise RuntimeError(f"the run of {hour} launched from the UI failed: {run_id}")
            floor_id, floor_pressed = launch_hour(floor_port, hour, list(FLOOR_ASSETS), FLOOR_JOB, FLOOR_JOB)
            floor_moments = run_moments(floor_instance, floor_id, floor_pressed, args.timeout)
            if not floor_moments["success"]:
                raise RuntimeError(f"the floor's run of {hour} launched from its UI failed: {floor_id}")
            cli_wall, _ = timed([sys.executable, "-m", "scalable_pipeline", "run", "--partition", hour], cli.env, args.timeout)
            command = [sys.executable, str(REPO / "bench" / "run_stages.py"), "--partition", hour, "--scale", str(args.scale)]
            stages_wall, done = timed([*command, "--assets", "all", "--executor", "in_process"], in_process.env, args.timeout)
            own = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
            runs.append(
                {
                    "hour": hour,
                    "warm_up": index == 0,
                    "ui": moments,
                    "ui_floor": floor_moments,
                    "cli_wall_seconds": cli_wall,
                    "execute_in_process_seconds": own,
                    "execute_in_process_wall_seconds": stages_wall,
                }
            )
            print(f"  {hour}: {latency_line(runs[-1])}", file=sys.stderr, flush=True)
            report({"runs": runs})
        measured = [run["hour"] for run in runs if not run["warm_up"]]
        verdicts = {setting.root.name: compare_sample(setting.data, measured) for setting in (ui, cli, in_process)}
    counted = [run for run in runs if not run["warm_up"]]
    medians = {
        "ui_press_to_run_success_s": statistics.median(run["ui"]["seconds"] for run in counted),
        "ui_press_to_run_start_s": statistics.median(run["ui"]["started_s"] for run in counted),
        "ui_floor_press_to_run_success_s": statistics.median(run["ui_floor"]["seconds"] for run in counted),
        "ui_floor_press_to_run_start_s": statistics.median(run["ui_floor"]["started_s"] for run in counted),
        "cli_wall_s": statistics.median(run["cli_wall_seconds"] for run in counted),
        "execute_in_process_s": statistics.median(run["execute_in_process_seconds"] for run in counted),
        "execute_in_process_wall_s": statistics.median(run["execute_in_process_wall_seconds"] for run in counted),
    }
    equal = all(verdict.startswith("equal") for by_hour in verdicts.values() for verdict in by_hour.values())
    return {"runs": runs, "medians": medians, "sample": verdicts, "checks": {"every_measured_hour_equal_to_whole_hour": equal}}


def latency_line(run: dict) -> str:
    return (
        f"ui {run['ui']['seconds']:.1f} s (run started at {run['ui']['started_s']:.1f} s),"
        f" floor's ui {run['ui_floor']['seconds']:.1f} s (started at {run['ui_floor']['started_s']:.1f} s),"
        f" cli {run['cli_wall_seconds']:.1f} s, execute_in_process {run['execute_in_process_seconds']:.1f} s"
        f" ({run['execute_in_process_wall_seconds']:.1f} s with its process)" + (" [warm-up]" if run["warm_up"] else "")
    )


MEASUREMENTS = {"backfills": backfills, "latency": latency}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS), default=list(MEASUREMENTS))
    parser.add_argument("--hours", nargs="+", type=int, default=[48, 168], help="hours per backfill (default 48 168)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the three backfills per --hours")
    parser.add_argument(
        "--ways",
        nargs="+",
        choices=[way.name for way in WAYS],
        default=[way.name for way in WAYS],
        help="launch ways (default all)",
    )
    parser.add_argument("--first", default="2026-01-05-00:00", help="the first hour of every backfill")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic source scale (default 1, as shipped)")
    parser.add_argument("--slots", type=int, default=2, help="slots of the chunk pool (default 2, as week_backfill)")
    parser.add_argument("--sample", type=int, default=4, help="hours of each pipeline backfill compared with the whole hour")
    parser.add_argument("--latency-runs", type=int, default=5, help="hours measured per way (after one warm-up)")
    parser.add_argument("--latency-first", default="2026-01-06-09:00", help="the first (warm-up) hour of the latency")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, help=f"PostgreSQL server (default {DEFAULT_POSTGRES})")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds to wait for a backfill or a run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="backfill_speed_"))
    args.pipelines = workdir / "pipelines.yaml"
    write_pipelines(args.pipelines, args.scale, args.slots)
    started = datetime.now(timezone.utc)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"backfill-speed-{started:%Y%m%d-%H%M%S}.json"
    results = {
        "command": " ".join(["python", "bench/backfill_speed.py", *sys.argv[1:]]),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "measurements": {},
    }

    def report(name: str) -> Callable[[dict], None]:
        def write(partial: dict) -> None:
            results["measurements"][name] = partial
            path.write_text(json.dumps(results, indent=2, default=str))

        return write

    passed = True
    try:
        for name in args.only:
            try:
                outcome = MEASUREMENTS[name](args, workdir, report(name))
            except (TimeoutError, RuntimeError, OSError, subprocess.SubprocessError) as error:
                outcome = {**results["measurements"].get(name, {}), "error": repr(error), "checks": {"completed": False}}
                print(f"{name}: ERROR {error!r}", file=sys.stderr)
            report(name)(outcome)
            passed &= all(outcome["checks"].values())
    finally:
        results["machine"]["load_average_at_end"] = os.getloadavg()
        path.write_text(json.dumps(results, indent=2, default=str))
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for name, outcome in results["measurements"].items():
        print(f"## {name}")
        for row in outcome.get("summary", []):
            print(json.dumps(row))
        if "medians" in outcome:
            print(json.dumps({key: round(value, 2) for key, value in outcome["medians"].items()}))
    print(f"raw results: {path.relative_to(REPO)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
