"""rollback: point readers of one asset's hour back at an earlier good version (the rollback_partition job, recorded)."""

import argparse
import os
import sys

import dagster as dg

from scalable_pipeline.assembly.rollback_partition import (
    asset_key,
    build_rollback_partition,
    require_hour,
    rollback_target,
    target_store,
)
from scalable_pipeline.cli.options import CliError, partition_key
from scalable_pipeline.cli.run import failure_lines
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.core.paths import InvalidPartitionKey
from scalable_pipeline.observing.read_model import PIPELINE_ASSETS
from scalable_pipeline.pipelines.config import UnknownPipeline, config_path, load_pipelines
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.versioned_store import VersionedStore


def register(commands) -> None:
    parser = commands.add_parser("rollback", help="set an asset's hour back to an earlier good version", description=__doc__)
    parser.add_argument("asset", choices=PIPELINE_ASSETS, help="the asset")
    parser.add_argument("partition", type=partition_key, help="the hour, e.g. 2026-01-05-10:00")
    parser.add_argument("--version", help="a version published before (default: the one before the published version)")
    parser.add_argument("--reason", default="manual rollback (command line)", help="kept in the rollback record")
    parser.add_argument(
        "--pipeline",
        metavar="NAME",
        help="the pipeline whose asset it is, by its name in the pipelines file (default: the unprefixed one)",
    )
    parser.set_defaults(handler=rollback)


def previous_good_version(store: VersionedStore, asset: str, partition: str) -> str:
    """The good version just older than the published one."""
    published = store.published(asset, partition)
    if published is None:
        raise CliError(f"{asset} {partition} has nothing published: nothing to roll back")
    older = [version for version in store.good_versions(asset, partition) if version < published.version]
    if not older:
        raise CliError(f"{asset} {partition} has no good version older than the published {published.version}")
    return older[-1]


def rollback(args: argparse.Namespace) -> int:
    ensure_dagster_home()

    pipelines = load_pipelines(config_path(os.environ)).pipelines
    try:
        spec = rollback_target(pipelines, args.pipeline)
        require_hour(spec, args.partition)
    except (UnknownPipeline, InvalidPartitionKey) as error:
        raise CliError(str(error)) from None
    data_store = DataStoreResource()
    version = args.version or previous_good_version(target_store(data_store, spec).store(), args.asset, args.partition)
    config = {"asset": args.asset, "partition": args.partition, "version": version, "reason": args.reason}
    run_config = {
        "ops": {"set_published_version": {"config": {**config, **({"pipeline": args.pipeline} if args.pipeline else {})}}},
        "loggers": {"console": {"config": {"log_level": "DEBUG" if args.verbose else "CRITICAL"}}},
    }
    with dg.DagsterInstance.get() as instance:
        # The job alone (not every pipeline's definitions): the same job the definitions hold, over the same file.
        result = build_rollback_partition(pipelines).execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False, resources={"data_store": data_store}
        )
    if not result.success:
        for line in failure_lines(result):
            print(f"scalable-pipeline rollback: error: {line}", file=sys.stderr)
        return 1
    print(f"{asset_key(spec, args.asset).to_user_string()} {args.partition}: readers now get {version} (run {result.run_id})")
    return 0
