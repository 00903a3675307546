"""Option types and checks shared by the subcommands: every bad value is a one-line usage error."""

import argparse
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.core.paths import InvalidPartitionKey, require_partition_key
from scalable_pipeline.observing.read_model import ObservedPipeline, find_pipeline
from scalable_pipeline.pipelines.config import PipelineSpec, UnknownPipeline, config_path, find_spec

REPORT_HOURS = 168  # a week of hours: the default span of report and metrics


class CliError(Exception):
    """A problem the user can fix: printed as one line on stderr, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it has none (None, False) or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (``<prog>: error: ...``), exit status 2."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Given(argparse.Action):
    """Stores the value and remembers that the user gave the option (to reject options that do not apply)."""

    def __call__(self, parser, namespace, values, _option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", set()), self.dest}


def given(args: argparse.Namespace, dest: str) -> bool:
    return dest in getattr(args, "given", set())


def partition_key(text: str) -> str:
    """An hourly partition key; whether the selected pipeline has that hour is checked once it is known (``pipeline_hour``)."""
    try:
        return require_partition_key(text)
    except InvalidPartitionKey as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def pipeline_hour(key: str, option: str, pipeline: str, partitions: dg.TimeWindowPartitionsDefinition) -> str:
    """``key``, given as ``option``, if it is an hour of ``pipeline`` (one of its ``partitions``); else a usage error."""
    try:
        return require_partition_key(key, partitions, pipeline)
    except InvalidPartitionKey as error:
        raise CliError(f"{option}: {error}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: at least 1")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: a finite number >= 0")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def latest_hour(partitions: dg.TimeWindowPartitionsDefinition) -> str:
    """The last complete hour of a pipeline's ``partitions`` (its newest); a usage error before its first hour has ended."""
    key = partitions.get_last_partition_key()
    if key is None:
        raise CliError(f"no hour has ended yet since the pipeline's start, {partitions.start.strftime(PARTITION_FORMAT)}")
    return key


def hours_between(first: str, last: str, partitions: dg.TimeWindowPartitionsDefinition) -> list[str]:
    """Every hourly partition key from ``first`` to ``last``, both included."""
    if partitions.time_window_for_partition_key(first).start > partitions.time_window_for_partition_key(last).start:
        raise CliError(f"--from {first} is after --to {last}")
    return list(partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))


def hours_before(last: str, count: int, partitions: dg.TimeWindowPartitionsDefinition) -> str:
    """The key ``count - 1`` hours before ``last`` (or the first partition)."""
    start = partitions.time_window_for_partition_key(last).start
    return max(start - timedelta(hours=count - 1), partitions.start).strftime(PARTITION_FORMAT)


def add_pipeline_option(parser: argparse.ArgumentParser, every: bool = False) -> None:
    """``--pipeline NAME``: a pipeline of the pipelines file (checked when the command runs); ``every``: by default all."""
    parser.add_argument(
        "--pipeline",
        metavar="NAME",
        default=None if every else JOB_NAME,
        help="a pipeline of the pipelines file ($SCALABLE_PIPELINE_CONFIG or the shipped one)"
        + (" (default: every pipeline of the file)" if every else ""),
    )


def pipeline_spec(name: str) -> PipelineSpec:
    """The entry of the pipelines file that ``--pipeline`` names; an unknown name is a usage error."""
    try:
        return find_spec(config_path(os.environ), name)
    except UnknownPipeline as error:
        raise CliError(f"--pipeline: {error}") from None


def pipeline_named(name: str, data_root: Path) -> ObservedPipeline:
    """The pipeline ``--pipeline`` names, read back under ``data_root``; an unknown name is a usage error."""
    try:
        return find_pipeline(name, data_root)
    except UnknownPipeline as error:
        raise CliError(f"--pipeline: {error}") from None


def add_range_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--from`` / ``--to``: a range of hours (default: the last week up to the latest complete hour)."""
    parser.add_argument(
        "--from",
        dest="first",
        metavar="HOUR",
        type=partition_key,
        help=f"first hour {what} (default: {REPORT_HOURS - 1} hours before --to)",
    )
    parser.add_argument(
        "--to", dest="last", metavar="HOUR", type=partition_key, help=f"last hour {what} (default: the latest complete hour)"
    )


def selected_hours(args: argparse.Namespace, pipeline: str, partitions: dg.TimeWindowPartitionsDefinition) -> list[str]:
    """The hours ``--from`` and ``--to`` select, of ``pipeline`` (its ``partitions``)."""
    last = pipeline_hour(args.last, "--to", pipeline, partitions) if args.last else latest_hour(partitions)
    first = (
        pipeline_hour(args.first, "--from", pipeline, partitions) if args.first else hours_before(last, REPORT_HOURS, partitions)
    )
    return hours_between(first, last, partitions)
