"""One run of the main job for the benchmark suite, in this (fresh) process; prints one JSON line.

Uses only the job ``scalable_data_processing``, its asset keys and its resource config, against the
instance in ``$DAGSTER_HOME`` and the data root in ``$SCALABLE_PIPELINE_DATA_DIR`` (both set by the caller):

    python bench/run_stages.py --assets raw|stages|all --executor in_process|job|spawn --partition P --scale S
        [--chunks N] [--fail-chunk K] [--reexecute RUN_ID]

``stages`` is chunk_partitions, processed_chunks and consolidated_output against the published raw hour.
Executors: ``in_process`` (as the CLI's default), ``job`` (the job's own executor, as ``dagster job execute``,
the UI and the schedule run it; when that executor forks step processes, it boots their server first, as the
CLI's ``--multiprocess`` does: ``executors.start_step_server``),
``spawn`` (Dagster's stock multiprocess executor: a fresh interpreter per step).
"""

import argparse
import json
import sys
import time

import dagster as dg

ASSETS = {
    "raw": ["raw_volume"],
    "stages": ["chunk_partitions", "processed_chunks", "consolidated_output"],
    "all": ["raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output"],
}


def job_with_own_executor() -> dg.JobDefinition:
    from scalable_pipeline.assembly.project import scalable_data_processing_job

    return scalable_data_processing_job()


def forks_step_processes(job: dg.JobDefinition) -> bool:
    """Whether the job's own executor runs its steps in processes of their own (multiprocess, or ``auto`` in the
    multiprocess mode the machine's CPUs gave it): only then is booting the step server worth its CPU."""
    from scalable_pipeline.execution.executors import run_executor_mode
    from scalable_pipeline.scaling.decision import executor_kind

    name = job.executor_def.name
    return executor_kind(name, run_executor_mode(name, {}, job.tags)) == "multiprocess"


def job_with_stock_executor() -> dg.JobDefinition:
    """The same assets and resources under Dagster's default multiprocess executor (spawn per step)."""
    from scalable_pipeline.definitions import defs

    job = dg.define_asset_job(
        "scalable_data_processing", selection=dg.AssetSelection.assets(*ASSETS["all"]), executor_def=dg.multiprocess_executor
    )
    return dg.Definitions(assets=defs.assets, resources=defs.resources, jobs=[job]).resolve_job_def(job.name)


def run_config(args: argparse.Namespace) -> dict:
    resources: dict = {"source": {"config": {"scale": args.scale}}}
    if args.chunks:
        resources["scaling"] = {"config": {"chunk_count": args.chunks}}
    if args.fail_chunk is not None:
        resources["faults"] = {"config": {"fail_chunks": [args.fail_chunk], "mode": "raise"}}
    return {"resources": resources, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", choices=sorted(ASSETS), default="all")
    parser.add_argument("--executor", choices=["in_process", "job", "spawn"], default="in_process")
    parser.add_argument("--partition", default="2026-01-05-10:00")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--chunks", type=int, help="pin the chunk count")
    parser.add_argument("--fail-chunk", type=int, help="this chunk fails (faults resource, no retries)")
    parser.add_argument("--reexecute", metavar="RUN_ID", help="re-execute this run from failure (job or spawn executor)")
    args = parser.parse_args()
    if args.executor == "job" and forks_step_processes(job_with_own_executor()):
        from scalable_pipeline.execution.executors import start_step_server

        start_step_server()  # as the CLI's --multiprocess does: boot the step server while loading the project
    selection = [dg.AssetKey(name) for name in ASSETS[args.assets]]
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result: dg.ExecuteInProcessResult | dg.JobExecutionResult
        if args.executor == "in_process":
            result = job_with_own_executor().execute_in_process(
                run_config=run_config(args),
                instance=instance,
                partition_key=args.partition,
                asset_selection=selection,
                raise_on_error=False,
            )
        else:
            factory = job_with_own_executor if args.executor == "job" else job_with_stock_executor
            result = dg.execute_job(
                dg.reconstructable(factory),
                instance=instance,
                run_config=run_config(args),
                tags={"dagster/partition": args.partition},
                asset_selection=None if args.reexecute else selection,
                reexecution_options=dg.ReexecutionOptions.from_failure(args.reexecute, instance) if args.reexecute else None,
            )
        seconds = time.perf_counter() - started
        metadata = {
            event.asset_key.path[-1]: {
                key: value.value
                for key, value in event.materialization.metadata.items()
                if isinstance(value.value, int | float | str)
            }
            for event in result.get_asset_materialization_events()
            if event.asset_key
        }
    print(json.dumps({"run_id": result.run_id, "success": result.success, "seconds": seconds, "metadata": metadata}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
