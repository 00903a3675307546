"""One hour of the job launched as the UI's Materialize dialog launches one partition ("Launch 1 run"), through
``dagster-webserver`` and ``dagster-daemon``.

    python bench/ui_launch.py --partition 2026-01-17-10:00 [--assets all|stages] [--timeout 1800]

Starts the webserver and the daemon on the project's workspace (instance and data root from the environment:
``DAGSTER_HOME``, ``SCALABLE_PIPELINE_DATA_DIR``, ``SCALABLE_PIPELINE_CONFIG``) and waits until the webserver has
loaded the code location and every daemon is healthy. Then does what the dialog does once its button is pressed:
asks the job for the partition's run config and tags (``pipelineOrError.partition``) and sends
``launchPipelineExecution`` with the selected assets and their checks. The run is queued; the daemon launches it
in a process of its own, under the job's executor. Prints one JSON line: the run's id, its success, and
``seconds`` from the press to the run's RUN_SUCCESS event (``created_s`` and ``started_s``: to the run's
creation and its RUN_START). ``bench/suite.py --only launches`` runs it once per measured hour; the wall, CPU and
peak it measures include the servers. ``bench/backfill_speed.py`` uses its functions with the servers kept up.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from run_stages import ASSETS
from week_backfill import this_checkout_first, wait

# This checkout's package and its test helpers, ahead of any installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scalable_pipeline.cli.backfill import LOCATION, REPOSITORY
from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline_tests.daemon import WORKSPACE, daemon_ready, start_daemon, stop_daemon
from scalable_pipeline_tests.webserver import free_port, graphql, start_webserver

READY_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
# The dialog's assets, as the UI loads them when Materialize is clicked: their checks, with the jobs that run them.
CHECKS_QUERY = """query ($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) {
  assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name jobNames } } } } }"""
# What the dialog asks once its button is pressed (fetchTagsAndConfigForAssetJob), then what it sends.
PARTITION_QUERY = """query ($job: String!, $location: String!, $repository: String!, $partition: String!,
  $keys: [AssetKeyInput!]!) {
  pipelineOrError(params: {pipelineName: $job, repositoryName: $repository, repositoryLocationName: $location}) {
    __typename ... on Pipeline { partition(partitionName: $partition, selectedAssetKeys: $keys) {
      runConfigOrError { ... on PartitionRunConfig { yaml } ... on PythonError { message } }
      tagsOrError { ... on PartitionTags { results { key value } } ... on PythonError { message } } } } } }"""
LAUNCH_RUN = """mutation ($executionParams: ExecutionParams!) { launchPipelineExecution(executionParams: $executionParams) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
END_EVENTS = {dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}


def location_loaded(port: int) -> bool:
    try:
        entries = graphql(port, READY_QUERY)["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, TypeError):  # not answering yet
        return False
    return bool(entries) and all(entry["locationOrLoadError"]["__typename"] == "RepositoryLocation" for entry in entries)


@contextmanager
def ui_servers(
    env: dict, logs: Path, instance: dg.DagsterInstance, timeout: float = 600, workspace: Path = WORKSPACE
) -> Iterator[int]:
    """The webserver (on a free port, yielded) and the daemon on ``workspace`` (default the project's), each in its own
    process group, once the webserver has loaded the code location and the daemons are healthy; both stopped on exit.
    Their output goes to ``logs``."""
    port = free_port()
    daemon = start_daemon(env, logs / "daemon.log", workspace=workspace)
    webserver = start_webserver(env, logs / "webserver.log", port, workspace)
    try:

        def ready() -> bool:
            for name, server in (("daemon", daemon), ("webserver", webserver)):
                if server.poll() is not None:
                    raise RuntimeError(f"the {name} exited ({server.returncode}); see {logs / (name + '.log')}")
            return location_loaded(port) and daemon_ready(instance)

        wait(ready, timeout, "the webserver and the daemon", poll=0.5)
        yield port
    finally:
        stop_daemon(webserver)
        stop_daemon(daemon, timeout=120)


def launch_hour(port: int, hour: str, assets: list[str], job: str = JOB_NAME, location: str = LOCATION) -> tuple[str, float]:
    """Launch ``hour`` of ``job`` (in code location ``location``) for ``assets`` (and their checks) as the dialog's
    "Launch 1 run" does: the run's id, and the moment (``time.time()``) the button was pressed."""
    keys = [{"path": [asset]} for asset in assets]
    checks = [
        {"assetKey": {"path": node["assetKey"]["path"]}, "name": check["name"]}
        for node in graphql(port, CHECKS_QUERY, {"keys": keys})["assetNodes"]
        for check in node["assetChecksOrError"].get("checks", [])
        if job in check["jobNames"]
    ]
    pressed = time.time()
    variables = {"job": job, "location": location, "repository": REPOSITORY, "partition": hour, "keys": keys}
    partition = graphql(port, PARTITION_QUERY, variables)["pipelineOrError"]["partition"]
    if "yaml" not in partition["runConfigOrError"] or "results" not in partition["tagsOrError"]:
        raise RuntimeError(f"the partition's config or tags: {partition}")
    params = {
        "mode": "default",
        "executionMetadata": {"tags": partition["tagsOrError"]["results"]},
        "runConfigData": partition["runConfigOrError"]["yaml"],
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": REPOSITORY,
            "pipelineName": job,
            "assetSelection": keys,
            "assetCheckSelection": checks,
        },
    }
    launched = graphql(port, LAUNCH_RUN, {"executionParams": params})["launchPipelineExecution"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launchPipelineExecution: {launched}")
    return launched["run"]["runId"], pressed


def run_moments(instance: dg.DagsterInstance, run_id: str, since: float, timeout: float) -> dict:
    """Once the run has ended: its status, and seconds from ``since`` to its creation, its RUN_START and its end event."""
    record = wait(
        lambda: (found := instance.get_run_record_by_id(run_id)) is not None and found.dagster_run.is_finished and found,
        timeout,
        f"run {run_id} to end",
        poll=0.5,
    )
    moments = {
        entry.dagster_event.event_type: entry.timestamp
        for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.RUN_START, *END_EVENTS})
        if entry.dagster_event
    }
    ended = next(moments[kind] for kind in END_EVENTS if kind in moments)
    started = moments.get(dg.DagsterEventType.RUN_START)
    return {
        "run_id": run_id,
        "success": record.dagster_run.status == dg.DagsterRunStatus.SUCCESS,
        "created_s": record.create_timestamp.timestamp() - since,
        "started_s": started - since if started else None,
        "seconds": ended - since,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--partition", required=True, help="the hour, e.g. 2026-01-17-10:00")
    parser.add_argument("--assets", choices=["all", "stages"], default="all", help="the job's assets, or all but raw_volume")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the servers, then for the run")
    args = parser.parse_args()
    home = Path(os.environ["DAGSTER_HOME"])
    logs = home / "ui-logs"
    logs.mkdir(exist_ok=True)
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        ui_servers(this_checkout_first(dict(os.environ)), logs, instance, args.timeout) as port,
    ):
        run_id, pressed = launch_hour(port, args.partition, ASSETS[args.assets])
        moments = run_moments(instance, run_id, pressed, args.timeout)
    print(json.dumps(moments))
    return 0 if moments["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
