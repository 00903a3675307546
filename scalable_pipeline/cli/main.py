"""scalable-pipeline: run the hourly pipeline on the local instance, and see what it did.

Quiet by default (a progress display on stderr, a summary on stdout); errors are one line on stderr
with a non-zero exit status (2: a usage error, 1: a failed run or command).
"""

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from scalable_pipeline.cli import backfill, land, metrics, pools, report, rollback, run, status, vacuum
from scalable_pipeline.cli.options import CliError, Parser
from scalable_pipeline.cli.worker import add_worker_parser
from scalable_pipeline.pipelines.config import PipelineConfigError

PROG = "scalable-pipeline"


def package_version() -> str:
    try:
        return version("scalable_pipeline")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    """The main parser; each command module registers its subcommand (``register(commands)``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show Dagster's event log lines instead of the progress display")
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    main_parser = Parser(prog=PROG, description=__doc__)
    main_parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = main_parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    commands.add_parser = with_parents(commands.add_parser, common)  # type: ignore[method-assign]
    for command in (run, backfill, status, rollback, vacuum, report, metrics, land):
        command.register(commands)
    pools.add_command(commands)
    add_worker_parser(commands)
    return main_parser


def with_parents(add_parser, common: argparse.ArgumentParser):
    """``add_parser`` that gives every subcommand the common options (--verbose, --debug)."""

    def add(name: str, **kwargs):
        return add_parser(name, parents=[common, *kwargs.pop("parents", [])], **kwargs)

    return add


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0 done, 1 a failed run or command, 2 a usage error (also for ``--help``: 0)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # usage errors, --help and --version: already printed
        return int(stop.code or 0)
    try:
        return args.handler(args)
    except (CliError, PipelineConfigError) as error:  # a broken pipelines file is a usage error too
        print(f"{PROG} {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except Exception as error:
        if getattr(args, "debug", False):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{PROG} {args.command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
