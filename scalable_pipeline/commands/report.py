"""report: one self-contained HTML file with charts over a range of hours (opens offline)."""

import argparse
from pathlib import Path

import dagster as dg

from scalable_pipeline.commands.options import add_pipeline_option, add_range_options, selected_hours
from scalable_pipeline.dagster_home import ensure_dagster_home
from scalable_pipeline.observed import check_keys, observe_hours
from scalable_pipeline.resources.data_store import default_data_dir


def register(commands) -> None:
    parser = commands.add_parser("report", help="write an HTML report with charts over a range of hours", description=__doc__)
    add_pipeline_option(parser)
    add_range_options(parser, "in the report")
    parser.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    parser.set_defaults(handler=report)


def write_report(instance: dg.DagsterInstance, root: Path, pipeline: str, partitions: list[str], output: Path) -> Path:
    from scalable_pipeline.report.html import render

    gates = check_keys()
    hours = observe_hours(instance, root, partitions, gates)
    output.write_text(render(pipeline, hours, [key.name for key in gates]), encoding="utf-8")
    return output


def report(args: argparse.Namespace) -> int:
    partitions = selected_hours(args)
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        path = write_report(instance, default_data_dir(), args.pipeline, partitions, Path(args.output))
    print(f"{path} ({len(partitions)} hours, {path.stat().st_size / 1e6:.1f} MB)")
    return 0
