"""run: materialize one hour, or every hour from --from to --to (one run each), with progress."""

import argparse
import contextlib
import os
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import dagster as dg
from rich.console import Console
from sqlalchemy.exc import DBAPIError

from scalable_pipeline.assembly.project import build_source, pipeline_job
from scalable_pipeline.cli.options import (
    CliError,
    Given,
    add_pipeline_option,
    given,
    hours_between,
    latest_hour,
    non_negative_float,
    partition_key,
    pipeline_hour,
    pipeline_spec,
    positive_int,
)
from scalable_pipeline.cli.progress import INVOCATION_TAG, ProgressDisplay, RunFollower
from scalable_pipeline.core.constants import JOB_NAME, PARTITION_TAG
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.execution.executors import AUTO_EXECUTOR, executor_choice, start_step_server
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.pipelines.config import PipelineSpec
from scalable_pipeline.sources.resource import SyntheticOrderSource


@dataclass(frozen=True)
class HourOutcome:
    partition: str
    run_id: str
    success: bool
    seconds: float
    metadata: dict  # asset name -> {metadata key: value} of what the run materialized
    failures: list[str]  # one line per failed step: the step and its reason


def register(commands) -> None:
    parser = commands.add_parser(
        "run", help=f"materialize hourly partitions with a pipeline's job (default {JOB_NAME})", description=__doc__
    )
    add_pipeline_option(parser)
    parser.add_argument(
        "--partition",
        metavar="HOUR",
        type=partition_key,
        help="one hour, e.g. 2026-01-05-10:00 (default: the latest complete hour)",
    )
    parser.add_argument(
        "--from", dest="first", metavar="HOUR", type=partition_key, help="first hour of a range (one run per hour, needs --to)"
    )
    parser.add_argument("--to", dest="last", metavar="HOUR", type=partition_key, help="last hour of the range, included")
    parser.add_argument(
        "--scale", type=non_negative_float, default=1.0, action=Given, help="volume multiplier of the synthetic source"
    )
    parser.add_argument("--seed", type=int, default=0, action=Given, help="random seed of the synthetic source")
    parser.add_argument("--chunks", type=positive_int, help="pin the number of chunks (default: the scaling resource decides)")
    parser.add_argument(
        "--multiprocess",
        action="store_true",
        help="run each step in its own process with the job's executor (its multiprocess mode) "
        "(default: every step in this process, faster on small machines; see docs/performance.md)",
    )
    parser.add_argument("--max-concurrent", type=positive_int, help="with --multiprocess: steps at once (default: CPU count)")
    parser.set_defaults(handler=run)


def selected_partitions(args: argparse.Namespace, spec: PipelineSpec) -> list[str]:
    """The hours the options select, each an hour of the pipeline ``spec`` (from its ``start``)."""
    if args.partition and (args.first or args.last):
        raise CliError("give either --partition or --from/--to, not both")
    if bool(args.first) != bool(args.last):
        raise CliError("--from and --to go together")
    hours = spec.partitions_def
    if args.first:
        first = pipeline_hour(args.first, "--from", spec.name, hours)
        return hours_between(first, pipeline_hour(args.last, "--to", spec.name, hours), hours)
    return [pipeline_hour(args.partition, "--partition", spec.name, hours) if args.partition else latest_hour(hours)]


def synthetic_source(spec: PipelineSpec) -> bool:
    """Whether the pipeline's orders come from the synthetic generator (its own source, else the project's)."""
    return spec.source["kind"] == "synthetic" if spec.source else isinstance(build_source(), SyntheticOrderSource)


def run_config(args: argparse.Namespace, build: PipelineBuild, synthetic: bool) -> dict:
    """Resource config of the pipeline ``build`` from the options (``--scale`` and ``--seed`` when given), and the
    level of Dagster's event log lines (``--verbose``: all)."""
    if args.max_concurrent and not args.multiprocess:
        raise CliError("--max-concurrent applies to --multiprocess only")
    source_options = {name: getattr(args, name) for name in ("scale", "seed") if given(args, name)}
    if source_options and not synthetic:
        where = "its configured source" if build.spec.source else "files (SCALABLE_PIPELINE_LANDING_DIR is set)"
        raise CliError(f"--scale and --seed apply to the synthetic source; {build.spec.name} reads orders from {where}")
    resources: dict = {build.resource_key("scaling"): {"config": {"chunk_count": args.chunks} if args.chunks else {}}}
    if source_options:
        resources[build.resource_key("source")] = {"config": source_options}
    config: dict = {
        "resources": resources,
        "loggers": {"console": {"config": {"log_level": "DEBUG" if args.verbose else "CRITICAL"}}},
    }
    if args.multiprocess:
        execution = {"mode": "multiprocess"} if executor_choice() == AUTO_EXECUTOR else {}
        if args.max_concurrent:
            execution["max_concurrent"] = args.max_concurrent
        if execution:
            config["execution"] = {"config": execution}
    return config


class InstanceUnavailable(RuntimeError):
    """The Dagster instance could not record (or read back) a run of an hour."""


# Free space under DAGSTER_HOME below which a failed write of the instance is reported as a full disk.
LOW_SPACE_BYTES = 2**20


def instance_unavailable(error: DBAPIError, partition: str, run_id: str | None) -> InstanceUnavailable:
    """``error`` of the instance's storage as one message naming the instance (``$DAGSTER_HOME``) and, when
    the file system under it is (nearly) full, the lack of space: SQLite then says only "database or disk is
    full" or "disk I/O error"."""
    home = os.environ.get("DAGSTER_HOME", "")
    free = shutil.disk_usage(home).free if os.path.isdir(home) else None
    reason = str(error.orig or error).strip().splitlines()[0]
    run = f" (run {run_id})" if run_id else ""
    space = (
        f"; no space left on the device of DAGSTER_HOME ({free // 1024} KiB free): free space there"
        if free is not None and free < LOW_SPACE_BYTES
        else ""
    )
    return InstanceUnavailable(
        f"{partition}{run}: the Dagster instance at {home} (DAGSTER_HOME) could not record the run: {reason}{space}. "
        "What the run published stays published and whole; a run the instance still shows as STARTED holds the hour "
        "until it is marked failed (UI: Terminate); then run the hour again"
    )


def failure_lines(result: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> list[str]:
    """Why the run failed, one line per failed step: a ``dg.Failure``'s description, else the error's message."""
    lines = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            reason = data.user_failure_data.description
        else:
            error = data.error
            while error and error.cause and "Error occurred while executing" in error.message:
                error = error.cause
            reason = error.message if error else "unknown error"
        lines.append(f"{event.step_key}: {' '.join(reason.split())}")
    return lines or ["the run failed before any step (see --verbose)"]


def execute_hour(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    partition: str,
    multiprocess: bool,
    config: dict,
    display: ProgressDisplay | None,
) -> HourOutcome:
    """One run of the job for ``partition``, followed on ``display`` while it runs."""
    invocation = uuid.uuid4().hex
    tags = {INVOCATION_TAG: invocation}
    started = time.perf_counter()
    follower = None
    if display:
        display.start_hour(partition)
        follower = RunFollower(instance, invocation, display.show)
        follower.start()
    try:
        try:
            result: dg.JobExecutionResult | dg.ExecuteInProcessResult
            if multiprocess:
                reconstructable = dg.build_reconstructable_job(pipeline_job.__module__, pipeline_job.__name__, (job.name,))
                result = dg.execute_job(
                    reconstructable, instance=instance, run_config=config, tags={**tags, PARTITION_TAG: partition}
                )
            else:
                result = job.execute_in_process(
                    run_config=config, instance=instance, partition_key=partition, raise_on_error=False, tags=tags
                )
        finally:
            if follower:
                follower.finish()
    except DBAPIError as error:  # the instance's storage failed: the run could not be recorded (or followed)
        raise instance_unavailable(error, partition, follower.run_id if follower else None) from error
    if display:
        display.end_hour(result.success)
    metadata = {
        event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
        if event.asset_key
    }
    failures = [] if result.success else failure_lines(result)
    return HourOutcome(partition, result.run_id, result.success, time.perf_counter() - started, metadata, failures)


def peak_rss_mb() -> float:
    usage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return usage / 1024


def summary_lines(outcome: HourOutcome) -> list[str]:
    raw, plan = outcome.metadata.get("raw_volume", {}), outcome.metadata.get("chunk_partitions", {})
    processed, output = outcome.metadata.get("processed_chunks", {}), outcome.metadata.get("consolidated_output", {})
    records = raw.get("total_records", 0)
    chunk_rate = processed.get("records_per_second")
    return [
        f"run {outcome.run_id} succeeded in {outcome.seconds:.2f} s",
        f"records in:   {records}",
        f"chunks:       {plan.get('chunk_count')} ({plan.get('processing_mode')}, batch_size {plan.get('batch_size')}, parallel_tasks {plan.get('parallel_tasks')})",
        f"valid:        {output.get('valid')}",
        f"invalid:      {processed.get('invalid')}",
        f"duplicates:   {processed.get('duplicates')}",
        f"records/s:    {records / outcome.seconds:,.0f} end to end"
        + (f"; {chunk_rate:,.0f} chunk compute" if isinstance(chunk_rate, (int, float)) else ""),
        f"peak memory:  {peak_rss_mb():,.0f} MB (largest process)",
        f"output:       {output.get('path')}",
    ]


def range_line(outcome: HourOutcome) -> str:
    raw, output = outcome.metadata.get("raw_volume", {}), outcome.metadata.get("consolidated_output", {})
    chunks = outcome.metadata.get("chunk_partitions", {}).get("chunk_count", "-")
    status = "ok" if outcome.success else "FAILED"
    return f"{outcome.partition}  {status:6}  records {raw.get('total_records', '-'):>9}  chunks {chunks:>3}  valid {output.get('valid', '-'):>9}  {outcome.seconds:6.1f} s  run {outcome.run_id}"


@contextlib.contextmanager
def child_stderr_discarded(enabled: bool) -> Iterator[TextIO]:
    """While enabled, step processes write their stderr to nowhere (each logs its start at DEBUG on its own
    console, whatever the run's logger config); yields the stream that still reaches the terminal."""
    if not enabled:
        yield sys.stderr
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    with open(os.devnull, "w") as sink, open(os.dup(terminal), "w") as stream:
        os.dup2(sink.fileno(), 2)
        try:
            yield stream
        finally:
            stream.flush()
            os.dup2(terminal, 2)
            os.close(terminal)


def run(args: argparse.Namespace) -> int:
    spec = pipeline_spec(args.pipeline)
    partitions = selected_partitions(args, spec)
    home = ensure_dagster_home()
    quiet_children = args.multiprocess and not args.verbose
    with child_stderr_discarded(quiet_children) as stderr:
        if args.multiprocess:
            start_step_server()  # it loads the project while this process does; its steps inherit the quiet stderr
        config = run_config(args, PipelineBuild(spec), synthetic_source(spec))
        job = pipeline_job(spec.name)
        display = None if args.verbose else ProgressDisplay(len(partitions), Console(file=stderr))
        with dg.DagsterInstance.get() as instance, display or contextlib.nullcontext():
            outcomes = [execute_hour(job, instance, partition, args.multiprocess, config, display) for partition in partitions]
    print(f"{spec.name}: {len(partitions)} hour(s), DAGSTER_HOME={home}")
    for outcome in outcomes:
        if len(outcomes) > 1:
            print(range_line(outcome))
        elif outcome.success:
            print("\n".join(summary_lines(outcome)))
        for line in outcome.failures:
            print(f"scalable-pipeline: {outcome.partition} failed (run {outcome.run_id}): {line}", file=sys.stderr)
    return 0 if all(outcome.success for outcome in outcomes) else 1
