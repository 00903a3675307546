"""status: per asset of one hour, the published version, the last gate results, checkpoints and rollbacks."""

import argparse
import sys
from pathlib import Path

import dagster as dg
from rich.console import Console
from rich.table import Table

from scalable_pipeline.cli.options import add_pipeline_option, latest_hour, partition_key, pipeline_hour, pipeline_named
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.core.paths import partition_dirname
from scalable_pipeline.observing.read_model import PIPELINE_ASSETS, HourRecord, publishing_table_version, recorded_versions
from scalable_pipeline.publishing.data_store import default_data_dir
from scalable_pipeline.publishing.versioned_store import VersionedStore


def register(commands) -> None:
    parser = commands.add_parser(
        "status", help="what is published for an hour, its gates, checkpoints and rollbacks", description=__doc__
    )
    add_pipeline_option(parser)
    parser.add_argument("--partition", metavar="HOUR", type=partition_key, help="the hour (default: the latest complete hour)")
    parser.set_defaults(handler=status)


def checkpoint_counts(root: Path, partition: str) -> dict[str, tuple[int, int]]:
    """Per plan fingerprint with checkpoints of the hour: (chunks done, ranges done)."""
    folder = root / "checkpoints" / partition_dirname(partition)
    plans = sorted(path for path in folder.iterdir() if path.is_dir()) if folder.is_dir() else []
    return {plan.name: (len(list(plan.glob("chunk-*.json"))), len(list(plan.glob("range-*.json")))) for plan in plans}


NOT_RECORDED = "[red]not recorded in the instance[/red] (its run ended before recording it): run the hour again"


def versions_table(hour: HourRecord, store: VersionedStore, pipeline: str, recorded: dict[str, dict[str, int | None]]) -> Table:
    """Per asset: the published version (with the Delta table version whose commit published it, for the table
    assets, as its materialization or manual rollback recorded it; flagged when no materialization in ``recorded``
    names it) and its rollbacks."""
    table = Table(title=f"{pipeline}, hour {hour.partition}: what readers get", title_justify="left")
    for column in ("asset", "published version", "rollbacks (newest last)"):
        table.add_column(column)
    for asset in PIPELINE_ASSETS:
        published = store.published(asset, hour.partition)
        rollbacks = [r for r in hour.rollbacks if r.asset == asset]
        rollback_text = "\n".join(f"{r.kind}: {r.gate or r.reason} -> {r.restored_version or '(none)'}" for r in rollbacks[-3:])
        version = published.version if published else "(none)"
        if published and published.version not in recorded[asset]:
            version += f"\n{NOT_RECORDED}"
        table_version = publishing_table_version(published.version, recorded[asset], rollbacks) if published else None
        version += f"\ntable version {table_version}" if table_version is not None else ""
        table.add_row(asset, version, rollback_text or "-")
    return table


def gates_table(hour: HourRecord) -> Table:
    table = Table(title="gates: newest evaluation", title_justify="left")
    for column in ("asset", "gate", "severity", "result", "score", "threshold"):
        table.add_column(column)
    order = {asset: index for index, asset in enumerate(PIPELINE_ASSETS)}
    for gate in sorted(hour.gates.values(), key=lambda g: (order.get(g.asset, 99), g.check)):
        result = "passed" if gate.passed else "[red]FAILED[/red]"
        score = "-" if gate.score is None else f"{gate.score:.4g}"
        threshold = "-" if gate.threshold is None else f"{gate.threshold:.4g}"
        table.add_row(gate.asset, gate.check, gate.severity, result, score, threshold)
    return table


def status(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    pipeline = pipeline_named(args.pipeline, default_data_dir())
    hours = pipeline.partitions_def
    partition = pipeline_hour(args.partition, "--partition", pipeline.name, hours) if args.partition else latest_hour(hours)
    root = pipeline.root  # the pipeline's own data root
    with dg.DagsterInstance.get() as instance:
        [hour] = pipeline.observe(instance, [partition])
        keys = {asset: dg.AssetKey([*pipeline.key_prefix, asset]) for asset in PIPELINE_ASSETS}
        recorded = {asset: recorded_versions(instance, key, partition) for asset, key in keys.items()}
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(versions_table(hour, VersionedStore(root), pipeline.name, recorded))
    console.print(gates_table(hour) if hour.gates else "gates: no evaluation recorded")
    checkpoints = checkpoint_counts(root, partition)
    console.print(
        "checkpoints: "
        + (
            "; ".join(f"plan {plan}: {chunks} chunk(s), {ranges} range(s)" for plan, (chunks, ranges) in checkpoints.items())
            or "none"
        )
    )
    last = hour.runs[0].dagster_run if hour.runs else None
    console.print(f"runs: {len(hour.runs)}" + (f", newest {last.run_id} {last.status.value}" if last else ""))
    return 0
