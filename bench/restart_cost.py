"""Cost of a restart after one failed chunk out of N, as a fraction of a full run (scale 100).

For each N: a clean full run; then, with cold checkpoints, a run whose chunk N/2 fails (no retries)
followed by (a) a re-execution from failure and, separately, (b) a brand-new run of the partition.
All runs use the job's multiprocess executor (forkserver) on a persistent instance in a temp
DAGSTER_HOME. Usage: ``python bench/restart_cost.py [--scale 100] [--chunks 8 64]``.
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg

from scalable_pipeline.definitions import scalable_data_processing_job
from scalable_pipeline.storage.checkpoints import ChunkCheckpoints
from scalable_pipeline.storage.versioned_store import partition_dirname

PARTITIONS = ["2024-01-01-10:00", "2024-01-01-11:00", "2024-01-01-12:00", "2024-01-01-13:00"]


def run_config(scale: float, chunks: int, faults: dict | None = None) -> dict:
    resources = {
        "scaling": {"config": {"chunk_count": chunks}},
        "source": {"config": {"scale": scale}},
        "chunk_retries": {"config": {"max_retries": 0}},
    }
    if faults:
        resources["faults"] = {"config": faults}
    return {"resources": resources}


def timed_run(instance, config: dict, partition: str, parent_run_id: str | None = None) -> tuple[dg.DagsterRun, float]:
    started = time.perf_counter()
    result = dg.execute_job(
        dg.reconstructable(scalable_data_processing_job),
        instance=instance,
        run_config=config,
        tags={"dagster/partition": partition},
        reexecution_options=dg.ReexecutionOptions.from_failure(parent_run_id, instance) if parent_run_id else None,
        raise_on_error=False,
    )
    return instance.get_run_by_id(result.run_id), time.perf_counter() - started


def clear_checkpoints(partition: str) -> None:
    shutil.rmtree(
        ChunkCheckpoints(os.environ["SCALABLE_PIPELINE_DATA_DIR"]).root / partition_dirname(partition), ignore_errors=True
    )


def measure(instance, scale: float, chunks: int, partition: str) -> dict:
    clean = run_config(scale, chunks)
    failing = run_config(scale, chunks, {"fail_chunks": [chunks // 2], "mode": "raise"})
    full_run, full_seconds = timed_run(instance, clean, partition)
    assert full_run.status == dg.DagsterRunStatus.SUCCESS, full_run.run_id

    clear_checkpoints(partition)
    failed, failed_seconds = timed_run(instance, failing, partition)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    resumed, reexec_seconds = timed_run(instance, clean, partition, parent_run_id=failed.run_id)
    assert resumed.status == dg.DagsterRunStatus.SUCCESS

    clear_checkpoints(partition)
    failed_again, _ = timed_run(instance, failing, partition)
    assert failed_again.status == dg.DagsterRunStatus.FAILURE
    fresh, new_run_seconds = timed_run(instance, clean, partition)
    assert fresh.status == dg.DagsterRunStatus.SUCCESS
    records = instance.fetch_materializations(dg.AssetKey("raw_volume"), limit=1).records[0]
    return {
        "chunks": chunks,
        "records": records.asset_materialization.metadata["total_records"].value,
        "full_run_s": round(full_seconds, 1),
        "failed_run_s": round(failed_seconds, 1),
        "reexecute_from_failure_s": round(reexec_seconds, 1),
        "reexecute_fraction": round(reexec_seconds / full_seconds, 3),
        "new_run_s": round(new_run_seconds, 1),
        "new_run_fraction": round(new_run_seconds / full_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 64])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="restart_cost_"))
    # Set before Dagster starts its forkserver: step processes keep the environment it started with.
    os.environ["DAGSTER_HOME"], os.environ["SCALABLE_PIPELINE_DATA_DIR"] = str(root / "dagster_home"), str(root / "data")
    (root / "dagster_home").mkdir()
    rows = []
    with dg.instance_for_test(temp_dir=os.environ["DAGSTER_HOME"]) as instance:
        for chunks, partition in zip(args.chunks, PARTITIONS, strict=False):
            rows.append(measure(instance, args.scale, chunks, partition))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nrestart after 1 failed chunk of N, scale {args.scale}, {os.cpu_count()} CPUs (multiprocess executor, forkserver)")
    print(f"{'N':>4} {'records':>9} {'full s':>7} {'re-exec s':>10} {'fraction':>9} {'new run s':>10} {'fraction':>9}")
    for r in rows:
        print(
            f"{r['chunks']:>4} {r['records']:>9} {r['full_run_s']:>7} {r['reexecute_from_failure_s']:>10} "
            f"{r['reexecute_fraction']:>9} {r['new_run_s']:>10} {r['new_run_fraction']:>9}"
        )
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "restart_cost.json").write_text(json.dumps(rows, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
