"""backfill: launch a backfill of a pipeline's hours through the daemon, as the UI's job page does.

The daemon submits runs of up to the pipeline's ``backfill_hours_per_run`` hours each (its
``BackfillPolicy``), every hour processed and gated on its own. Dagster's ``dagster job backfill`` launches
one run per hour whatever the policy. Needs ``dagster-daemon run`` (or ``dg dev``) on the same instance.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from scalable_pipeline.cli.options import (
    CliError,
    add_pipeline_option,
    hours_between,
    partition_key,
    pipeline_hour,
    pipeline_spec,
)
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.observing.read_model import PIPELINE_ASSETS
from scalable_pipeline.pipelines.build import PipelineBuild
from scalable_pipeline.pipelines.config import PipelineSpec

PROJECT = Path(__file__).resolve().parent.parent.parent
WORKSPACE = PROJECT / "workspace.yaml"
# The code location of workspace.yaml (a python_module entry is named after its module) and its repository.
LOCATION, REPOSITORY = "scalable_pipeline.definitions", "__repository__"
LAUNCH_BACKFILL = """mutation ($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } ... on InvalidStepError { invalidStepKey }
  ... on PartitionSetNotFoundError { message } ... on UnauthorizedError { message } } }"""


def register(commands) -> None:
    parser = commands.add_parser("backfill", help="backfill a range of hours through the daemon", description=__doc__)
    add_pipeline_option(parser)
    parser.add_argument("--from", dest="first", metavar="HOUR", type=partition_key, required=True, help="first hour")
    parser.add_argument("--to", dest="last", metavar="HOUR", type=partition_key, required=True, help="last hour, included")
    parser.set_defaults(handler=backfill)


def backfill_params(spec: PipelineSpec, hours: list[str]) -> dict:
    """What the UI sends from the job's page (*Materialize all...*, a range of hours): a backfill of the job's
    partition set, whose runs the daemon sizes by the assets' ``BackfillPolicy``."""
    build = PipelineBuild(spec)
    return {
        "selector": {
            "partitionSetName": f"{spec.name}_partition_set",
            "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
        },
        "assetSelection": [{"path": build.key(asset).path} for asset in PIPELINE_ASSETS],
        "partitionNames": hours,
        "fromFailure": False,
        "tags": [],
    }


def launch_backfill(spec: PipelineSpec, hours: list[str], env: Mapping[str, str] | None = None) -> str:
    """Launch the backfill of ``hours`` on the instance of ``$DAGSTER_HOME`` (of ``env``, default this process's); its id."""
    workspace = WORKSPACE
    graphql = Path(sys.executable).with_name("dagster-graphql")
    variables = json.dumps({"params": backfill_params(spec, hours)})
    with tempfile.TemporaryDirectory() as scratch:
        answer_file = Path(scratch) / "answer.json"
        completed = subprocess.run(
            [str(graphql), "-w", str(workspace), "-o", str(answer_file), "-t", LAUNCH_BACKFILL, "-v", variables],
            cwd=workspace.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            answer = json.loads(answer_file.read_text())["data"]["launchPartitionBackfill"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CliError(f"dagster-graphql failed (exit {completed.returncode}): {completed.stderr.strip()[-500:]}") from None
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise CliError(f"the backfill was not launched: {answer.get('message') or answer['__typename']}")
    return answer["backfillId"]


def backfill(args: argparse.Namespace) -> int:
    spec = pipeline_spec(args.pipeline)
    partitions = spec.partitions_def
    first = pipeline_hour(args.first, "--from", spec.name, partitions)
    hours = hours_between(first, pipeline_hour(args.last, "--to", spec.name, partitions), partitions)
    home = ensure_dagster_home()
    backfill_id = launch_backfill(spec, hours)
    runs = -(-len(hours) // spec.backfill_hours_per_run)
    print(
        f"{spec.name}: backfill {backfill_id} of {len(hours)} hour(s), {hours[0]} to {hours[-1]}: at least {runs} run(s) "
        f"of up to {spec.backfill_hours_per_run} hours, submitted by the daemon (DAGSTER_HOME={home}); "
        f"UI: Overview > Backfills > {backfill_id}"
    )
    return 0
