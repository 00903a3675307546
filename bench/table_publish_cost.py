"""What publishing one hour costs on a Delta table that already holds many hours, and what a vacuum pass costs.

Builds a ``consolidated_output`` table of ``--hours`` hours (``--rows`` records each), every hour published
``--rounds`` times (so the log holds removed files and the hours' folders old versions, as after re-runs),
then times ``--repeats`` publishes of a new version of one hour (stage excluded) and as many vacuum passes
of the table (the default window of 168 h: nothing expired, the pass only lists and compares). Medians.

    python bench/table_publish_cost.py [--hours 200] [--rows 1000] [--rounds 2] [--repeats 15]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from scalable_pipeline.publishing.versioned_store import VersionedStore

ASSET = "consolidated_output"


def hour_key(index: int) -> str:
    return (pd.Timestamp("2026-01-05", tz="UTC") + pd.Timedelta(hours=index)).strftime("%Y-%m-%d-%H:00")


def frame(rows: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"order_id": range(seed * rows, (seed + 1) * rows), "amount": [1.5] * rows})


def milliseconds(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1000:8.1f} ms (min {min(seconds) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        store = VersionedStore(root)
        for round_ in range(args.rounds):
            for index in range(args.hours):
                store.publish(store.write_table(ASSET, hour_key(index), frame(args.rows, round_), "setup", "digest"), "setup")
        hour, publish, vacuum = hour_key(args.hours // 2), [], []
        for repeat in range(args.repeats):
            staged = store.write_table(ASSET, hour, frame(args.rows, args.rounds + repeat), "bench", "digest")
            started = time.perf_counter()
            store.publish(staged, "bench")
            publish.append(time.perf_counter() - started)
        for _ in range(args.repeats):
            started = time.perf_counter()
            store.hour_table(ASSET).vacuum(store.retention_hours)
            vacuum.append(time.perf_counter() - started)
        files = sum(1 for path in Path(root, "tables", ASSET).rglob("*.parquet") if path.is_file())
        commits = store.hour_table(ASSET).table().version()
    print(f"table: {args.hours} hours, {files} Parquet files on disk, {commits} commits")
    print(f"publish of one hour: {milliseconds(publish)}")
    print(f"vacuum pass:         {milliseconds(vacuum)}")


if __name__ == "__main__":
    main()
