"""How long `report` and a /metrics scrape take over 168 hourly partitions (a week).

SIMULATION: the hours are not processed by the pipeline. Stand-in assets with the pipeline's asset keys,
check names and metadata keys (tiny bodies, numbers drawn from a seeded generator) are materialized
once per hour, one run each, into a temporary SQLite instance, with one automatic rollback every 24
hours in the rollback log; then the report and one scrape read them exactly as they read real runs.

    PYTHONPATH=$PWD nice -n 19 python bench/report_bench.py [--hours 168]
"""

import argparse
import random
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg

from scalable_pipeline.assembly.project import shipped_definitions
from scalable_pipeline.cli.metrics import serve
from scalable_pipeline.cli.options import hours_before, hours_between
from scalable_pipeline.cli.report import write_report
from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline.events.evaluations import repository_check_keys
from scalable_pipeline.pipelines.config import DEFAULT_CONFIG_PATH, find_spec
from scalable_pipeline.publishing.rollback_log import RollbackRecord, append_rollback

HOURS = find_spec(DEFAULT_CONFIG_PATH, JOB_NAME).partitions_def  # the shipped pipeline's hours


def stand_in_assets(gates: list[dg.AssetCheckKey]) -> list[dg.AssetsDefinition]:
    """One stand-in per pipeline asset: the real keys, checks and metadata keys, made-up numbers."""
    by_asset: dict[str, list[str]] = {}
    for key in gates:
        by_asset.setdefault(key.asset_key.to_user_string(), []).append(key.name)

    def make(asset: str, deps: list[str], metadata: dict):
        @dg.multi_asset(
            specs=[dg.AssetSpec(asset, deps=deps, partitions_def=HOURS)],
            check_specs=[dg.AssetCheckSpec(name, asset=asset) for name in by_asset[asset]],
            name=f"stand_in_{asset}",
        )
        def stand_in(context: dg.AssetExecutionContext):
            rng = random.Random(context.partition_key)
            yield dg.MaterializeResult(asset_key=asset, metadata={k: f(rng) for k, f in metadata.items()})
            for name in by_asset[asset]:
                score = rng.random() * 0.06
                yield dg.AssetCheckResult(
                    asset_key=asset, check_name=name, passed=score <= 0.05, metadata={"score": score, "threshold": 0.05}
                )

        return stand_in

    return [
        make("raw_volume", [], {"total_records": lambda r: r.randint(1_000, 12_000)}),
        make(
            "chunk_partitions",
            ["raw_volume"],
            {
                "chunk_count": lambda r: r.randint(1, 8),
                "parallel_tasks": lambda r: 2,
                "batch_size": lambda r: r.randint(500, 6000),
            },
        ),
        make(
            "processed_chunks",
            ["chunk_partitions"],
            {
                "invalid": lambda r: r.randint(10, 120),
                "duplicates": lambda r: r.randint(5, 60),
                "records_per_second": lambda r: r.uniform(1e5, 7e5),
                "chunks_reused": lambda r: 0,
            },
        ),
        make("consolidated_output", ["processed_chunks"], {"valid": lambda r: r.randint(900, 11_000)}),
    ]


QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, default=168)
    args = parser.parse_args()
    last = HOURS.get_last_partition_key()
    assert last
    hours = hours_between(hours_before(last, args.hours, HOURS), last, HOURS)
    gates = repository_check_keys(shipped_definitions().get_repository_def())
    with tempfile.TemporaryDirectory() as folder:
        home, root = Path(folder) / "home", Path(folder) / "data"
        home.mkdir()
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            started = time.perf_counter()
            # named as the pipeline's job: report and metrics count a pipeline's runs by its job (or its assets)
            defs = dg.Definitions(assets=stand_in_assets(gates), jobs=[dg.define_asset_job(JOB_NAME)])
            job = defs.resolve_job_def(JOB_NAME)
            for index, hour in enumerate(hours):
                assert job.execute_in_process(instance=instance, partition_key=hour, run_config=QUIET).success
                if index % 24 == 0:
                    append_rollback(
                        root,
                        RollbackRecord(
                            "automatic", "processed_chunks", hour, "sim", None, None, "processed_chunks", "invalid_ratio"
                        ),
                    )
            print(f"simulated {len(hours)} hours (one run each) in {time.perf_counter() - started:.1f} s")

            started = time.perf_counter()
            path = write_report(instance, root, JOB_NAME, hours, Path(folder) / "report.html")
            print(f"report over {len(hours)} hours: {time.perf_counter() - started:.2f} s ({path.stat().st_size / 1e6:.1f} MB)")

            import os

            os.environ["SCALABLE_PIPELINE_DATA_DIR"] = str(root)
            server = serve(instance, JOB_NAME, "127.0.0.1", 0, lambda: hours)
            try:
                for attempt in range(3):
                    started = time.perf_counter()
                    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=120) as response:
                        size = len(response.read())
                    print(
                        f"/metrics scrape {attempt + 1} over {len(hours)} hours: {time.perf_counter() - started:.2f} s ({size / 1e3:.0f} kB)"
                    )
            finally:
                server.shutdown()


if __name__ == "__main__":
    main()
