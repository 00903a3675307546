"""Option types and checks shared by the subcommands: every bad value is a one-line usage error."""

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from scalable_pipeline.core.constants import HOURLY_PARTITIONS, JOB_NAME
from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.core.paths import InvalidPartitionKey, require_partition_key
from scalable_pipeline.observing.read_model import ObservedPipeline, find_pipeline
from scalable_pipeline.pipelines.config import UnknownPipeline

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

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", set()), self.dest}


def given(args: argparse.Namespace, dest: str) -> bool:
    return dest in getattr(args, "given", set())


def partition_key(text: str) -> str:
    try:
        return require_partition_key(text)
    except InvalidPartitionKey as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


def latest_hour() -> str:
    """The last complete hour (the newest partition)."""
    key = HOURLY_PARTITIONS.get_last_partition_key()
    assert key is not None, "the hourly partitions start in the past"
    return key


def hours_between(first: str, last: str, partitions: dg.TimeWindowPartitionsDefinition = HOURLY_PARTITIONS) -> list[str]:
    """Every hourly partition key from ``first`` to ``last``, both included."""
    if partitions.time_window_for_partition_key(first).start > partitions.time_window_for_partition_key(last).start:
        raise CliError(f"--from {first} is after --to {last}")
    return list(partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))


def hours_before(last: str, count: int, partitions: dg.TimeWindowPartitionsDefinition = HOURLY_PARTITIONS) -> str:
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


def selected_hours(args: argparse.Namespace, partitions: dg.TimeWindowPartitionsDefinition = HOURLY_PARTITIONS) -> list[str]:
    last = args.last or latest_hour()
    return hours_between(args.first or hours_before(last, REPORT_HOURS, partitions), last, partitions)
