"""vacuum: delete what the Delta tables stopped using more than retention_hours ago (the vacuum_tables job, now)."""

import argparse
import os
import sys

import dagster as dg

from scalable_pipeline.assembly.vacuum_tables import build_vacuum_tables
from scalable_pipeline.cli.options import add_pipeline_option, pipeline_spec
from scalable_pipeline.cli.run import failure_lines
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.pipelines.config import config_path, load_pipelines
from scalable_pipeline.publishing.data_store import DataStoreResource


def register(commands) -> None:
    parser = commands.add_parser("vacuum", help="delete the files the Delta tables no longer need", description=__doc__)
    add_pipeline_option(parser, every=True)
    parser.set_defaults(handler=vacuum)


def vacuum(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    if args.pipeline:
        pipeline_spec(args.pipeline)  # an unknown name is a usage error
    pipelines = load_pipelines(config_path(os.environ)).pipelines
    job, _schedule = build_vacuum_tables(pipelines)
    run_config = {
        "ops": {"vacuum_delta_tables": {"config": {"pipeline": args.pipeline}}},
        "loggers": {"console": {"config": {"log_level": "DEBUG" if args.verbose else "CRITICAL"}}},
    }
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False, resources={"data_store": DataStoreResource()}
        )
    if not result.success:
        for line in failure_lines(result):
            print(f"scalable-pipeline vacuum: error: {line}", file=sys.stderr)
        return 1
    for row in result.output_for_node("vacuum_delta_tables"):
        print(f"{row['pipeline']} {row['asset']}: {row['files']} file(s) of {row['versions']} version(s) deleted")
    return 0
