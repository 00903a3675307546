"""report: one self-contained HTML file with charts over a range of hours (opens offline)."""

import argparse
from pathlib import Path

import dagster as dg

from scalable_pipeline.cli.options import add_pipeline_option, add_range_options, pipeline_named, selected_hours
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.observing.read_model import ObservedPipeline
from scalable_pipeline.observing.report import render
from scalable_pipeline.publishing.data_store import default_data_dir


def register(commands) -> None:
    parser = commands.add_parser("report", help="write an HTML report with charts over a range of hours", description=__doc__)
    add_pipeline_option(parser)
    add_range_options(parser, "in the report")
    parser.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    parser.set_defaults(handler=report)


def write_report(
    instance: dg.DagsterInstance, root: Path, pipeline: str | ObservedPipeline, partitions: list[str], output: Path
) -> Path:
    """The report of ``pipeline`` (a name in the pipelines file, its data under the data root ``root``) over ``partitions``."""
    observed = pipeline if isinstance(pipeline, ObservedPipeline) else pipeline_named(pipeline, root)
    hours = observed.observe(instance, partitions)
    output.write_text(render(observed.name, hours, [key.name for key in observed.gates]), encoding="utf-8")
    return output


def report(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    root = default_data_dir()
    pipeline = pipeline_named(args.pipeline, root)
    partitions = selected_hours(args, pipeline.name, pipeline.partitions_def)
    with dg.DagsterInstance.get() as instance:
        path = write_report(instance, root, pipeline, partitions, Path(args.output))
    print(f"{path} ({len(partitions)} hours, {path.stat().st_size / 1e6:.1f} MB)")
    return 0
