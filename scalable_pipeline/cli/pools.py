"""Apply the pipelines file's pool limits to the Dagster instance: ``python -m scalable_pipeline pools``.

Each shared pool gets its capacity less the slots reserved in it, each reserved pool its slots
(``decisions/pools.py``); the same as ``dagster instance concurrency set <pool> <limit>`` for every pool.
"""

import argparse
import os
from pathlib import Path

import dagster as dg

from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.pipelines.config import PipelinesConfig, config_path, load_pipelines


def apply_pool_limits(instance: dg.DagsterInstance, config: PipelinesConfig) -> dict[str, int]:
    """Set every pool's slot limit on ``instance``; returns them."""
    limits = config.pool_limits
    for pool, limit in sorted(limits.items()):
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return limits


def pools(args: argparse.Namespace) -> int:
    home = ensure_dagster_home()
    config = load_pipelines(Path(args.config) if args.config else config_path(os.environ))
    with dg.DagsterInstance.get() as instance:
        limits = apply_pool_limits(instance, config)
    print(f"pool limits from {config.path} (DAGSTER_HOME={home}):")
    for pool, limit in sorted(limits.items()):
        print(f"  {pool}: {limit}")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``pools`` on the CLI's subcommands."""
    parser = commands.add_parser("pools", help="apply the pool limits of the pipelines file to the Dagster instance")
    parser.add_argument("--config", help="pipelines file (default: $SCALABLE_PIPELINE_CONFIG, else the shipped one)")
    parser.set_defaults(handler=pools)
