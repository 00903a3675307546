"""Command line: run the main job for one hour on the local instance and print a summary."""

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalable_pipeline.constants import JOB_NAME, PARTITION_TAG
from scalable_pipeline.dagster_home import ensure_dagster_home
from scalable_pipeline.pipelines import pool_limits
from scalable_pipeline.sources.landing_files import DEFAULT_PATTERN
from scalable_pipeline.storage.paths import InvalidPartitionKey, require_partition_key

DEFAULT_PARTITION = "2024-01-01-10:00"  # a peak hour


def run_config(args: argparse.Namespace, synthetic_source: bool) -> dict:
    """Resource config from the options; --scale and --seed apply to the synthetic source only."""
    resources: dict = {"scaling": {"config": {"chunk_count": args.chunks} if args.chunks else {}}}
    if synthetic_source:
        resources["source"] = {"config": {"scale": args.scale, "seed": args.seed}}
    config: dict = {"resources": resources}
    if args.multiprocess and args.max_concurrent:
        config["execution"] = {"config": {"max_concurrent": args.max_concurrent}}
    return config


def summary_lines(result, seconds: float) -> list[str]:
    metadata = {
        event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }
    raw, plan = metadata.get("raw_volume", {}), metadata.get("chunk_partitions", {})
    processed, output = metadata.get("processed_chunks", {}), metadata.get("consolidated_output", {})
    peak_rss_mb = (
        max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    )
    return [
        f"run {result.run_id} {'succeeded' if result.success else 'FAILED'} in {seconds:.2f} s",
        f"records in:   {raw.get('total_records', '?')}",
        f"chunks:       {plan.get('chunk_count', '?')} ({plan.get('processing_mode', '?')}, batch_size {plan.get('batch_size', '?')}, parallel_tasks {plan.get('parallel_tasks', '?')})",
        f"valid:        {output.get('valid', '?')}",
        f"invalid:      {processed.get('invalid', '?')}",
        f"duplicates:   {processed.get('duplicates', '?')}",
        f"records/s:    {raw.get('total_records', 0) / seconds:,.0f} (end to end)",
        f"peak memory:  {peak_rss_mb:,.0f} MB (largest process)",
        f"output:       {output.get('path', 'not published')}",
    ]


def run(args: argparse.Namespace) -> int:
    try:
        require_partition_key(args.partition)
    except InvalidPartitionKey as error:
        print(f"scalable-pipeline: error: {error}", file=sys.stderr)
        return 2
    home = ensure_dagster_home()
    from scalable_pipeline.definitions import build_source, scalable_data_processing_job
    from scalable_pipeline.resources.source import SyntheticOrderSource

    config = run_config(args, isinstance(build_source(), SyntheticOrderSource))

    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result: dg.JobExecutionResult | dg.ExecuteInProcessResult
        if args.multiprocess:
            job = dg.reconstructable(scalable_data_processing_job)
            result = dg.execute_job(job, instance=instance, run_config=config, tags={PARTITION_TAG: args.partition})
        else:
            result = scalable_data_processing_job().execute_in_process(
                run_config=config, instance=instance, partition_key=args.partition, raise_on_error=False
            )
        seconds = time.perf_counter() - started
        print(f"{JOB_NAME} partition {args.partition} (DAGSTER_HOME={home})")
        print("\n".join(summary_lines(result, seconds)))
        return 0 if result.success else 1


def write_blocks(path: Path, blocks: Iterator[pd.DataFrame]) -> int:
    """Write the blocks one after another as one CSV or Parquet file; returns the record count."""
    records, writer = 0, None
    for index, block in enumerate(blocks):
        if path.suffix == ".csv":
            block.to_csv(path, index=False, mode="a" if index else "w", header=not index)
        else:
            table = pa.Table.from_pandas(block, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
        records += len(block)
    if writer:
        writer.close()
    return records


def land(args: argparse.Namespace) -> int:
    """Write synthetic hours as landing files, to try the file source on realistic data."""
    from scalable_pipeline.constants import HOURLY_PARTITIONS
    from scalable_pipeline.resources.source import LandingFileSource, SyntheticOrderSource

    synthetic = SyntheticOrderSource(scale=args.scale, seed=args.seed)
    landing = LandingFileSource(landing_dir=args.landing_dir, pattern=args.pattern)
    for partition in args.partitions:
        hour_start = pd.Timestamp(HOURLY_PARTITIONS.time_window_for_partition_key(require_partition_key(partition)).start)
        path = landing.path_for(hour_start)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = write_blocks(path, synthetic.iter_hour(hour_start))
        print(f"{partition}: {records} records -> {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="scalable-pipeline", description=__doc__)
    commands = main_parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help=f"materialize one hourly partition with the {JOB_NAME} job")
    run_parser.add_argument("--partition", default=DEFAULT_PARTITION, help="hourly partition key, e.g. 2024-01-01-10:00")
    run_parser.add_argument("--scale", type=float, default=1.0, help="volume multiplier of the synthetic source")
    run_parser.add_argument("--seed", type=int, default=0)
    run_parser.add_argument("--chunks", type=int, help="pin the number of chunks (default: the scaling resource decides)")
    run_parser.add_argument(
        "--multiprocess",
        action="store_true",
        help="run each step in its own process with the job's executor, as `dagster dev` and the schedule do "
        "(default: every step in this process, faster on small machines; see README figures)",
    )
    run_parser.add_argument("--max-concurrent", type=int, help="with --multiprocess: steps at once (default: CPU count)")
    run_parser.set_defaults(handler=run)

    land_parser = commands.add_parser("land", help="write synthetic hours as landing files (simulation, for the file source)")
    land_parser.add_argument("landing_dir")
    land_parser.add_argument("partitions", nargs="+", help="hourly partition keys")
    land_parser.add_argument("--pattern", default=DEFAULT_PATTERN, help="file of an hour (.parquet or .csv)")
    land_parser.add_argument("--scale", type=float, default=1.0)
    land_parser.add_argument("--seed", type=int, default=0)
    land_parser.set_defaults(handler=land)
    pool_limits.add_command(commands)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
