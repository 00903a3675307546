"""Cost of write-audit-publish and rollback per asset partition, at scale 1 and 100 (a peak hour).

For one peak hour's table (the synthetic source's records; consolidated_output is ~98% of it) this
times, on the local filesystem, with the median of ``--repeats`` rounds:

- stage: writing a new version (Parquet) -- the write every run does anyway, WAP or not;
- publish: the history line, the Delta transaction that replaces the hour's files, and the hour's retention
  (no vacuum: the vacuum_tables job does that) -- WAP's own cost;
- automatic rollback: deleting the staged version and appending the rollback record;
- manual rollback: validating the version and committing its files back, plus the record;
- rollback_partition job: the same manual rollback run as a Dagster job in process (fixed overhead).

    python bench/publish_rollback_cost.py [--scales 1 100] [--repeats 5]
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import dagster as dg
import pandas as pd

from scalable_pipeline.definitions import defs
from scalable_pipeline.publishing.data_store import DataStoreResource
from scalable_pipeline.publishing.rollback_log import RollbackRecord, append_rollback
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.sources.resource import SyntheticOrderSource

ASSET = "consolidated_output"
PARTITION = "2026-01-06-10:00"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def record(kind: str, restored: str, replaced: str) -> RollbackRecord:
    return RollbackRecord(kind, ASSET, PARTITION, "bench", restored, replaced, ASSET, "invalid_ratio", 0.02, 0.01)


def measure(scale: float, repeats: int) -> dict:
    table = SyntheticOrderSource(scale=scale).fetch_hour(pd.Timestamp(PARTITION.replace("-10:00", " 10:00"), tz="UTC"))
    with tempfile.TemporaryDirectory() as root:
        store = VersionedStore(root, keep_versions=5)
        stage, publish, auto, manual = [], [], [], []
        for _ in range(repeats):
            staged_box: list = []
            stage.append(timed(lambda box=staged_box: box.append(store.write_table(ASSET, PARTITION, table, "bench"))))
            publish.append(timed(lambda box=staged_box: store.publish(box[0], "bench")))
            bad = store.write_table(ASSET, PARTITION, table, "badrun")
            good = store.require_published(ASSET, PARTITION).version
            auto.append(
                timed(
                    lambda bad=bad, good=good: (store.discard(bad), append_rollback(root, record("automatic", good, bad.version)))
                )
            )
        versions = store.good_versions(ASSET, PARTITION)
        for i in range(repeats):
            target = versions[i % 2]
            current = store.require_published(ASSET, PARTITION).version
            if target == current:
                target = versions[(i + 1) % 2]

            def roll_back(target=target, current=current):
                store.publish(store.version(ASSET, PARTITION, target), "bench", action="rollback")
                append_rollback(root, record("manual", target, current))

            manual.append(timed(roll_back))
        job = defs.resolve_job_def("rollback_partition")
        with dg.instance_for_test() as instance:
            job_seconds = timed(
                lambda: job.execute_in_process(
                    run_config={
                        "ops": {
                            "set_published_version": {"config": {"asset": ASSET, "partition": PARTITION, "version": versions[-1]}}
                        },
                        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                    },
                    resources={"data_store": DataStoreResource(data_dir=root)},
                    instance=instance,
                    raise_on_error=False,
                )
            )
    return {
        "scale": scale,
        "records": len(table),
        "stage_s": statistics.median(stage),
        "publish_s": statistics.median(publish),
        "auto_rollback_s": statistics.median(auto),
        "manual_rollback_s": statistics.median(manual),
        "rollback_job_s": job_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 100])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'scale':>6} {'records':>9} {'stage s':>9} {'publish s':>10} {'auto rollback s':>16} {'manual rollback s':>18} {'rollback job s':>15}"
    )
    for scale in args.scales:
        r = measure(scale, args.repeats)
        print(
            f"{r['scale']:>6g} {r['records']:>9,} {r['stage_s']:>9.4f} {r['publish_s']:>10.4f} {r['auto_rollback_s']:>16.4f}"
            f" {r['manual_rollback_s']:>18.4f} {r['rollback_job_s']:>15.2f}"
        )


if __name__ == "__main__":
    main()
