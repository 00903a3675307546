"""What publishing one hour costs on a Delta table that already holds many hours, and what a vacuum pass costs.

Builds a ``consolidated_output`` table of ``--hours`` hours (``--rows`` records each), every hour published
``--rounds`` times (so the log holds removed files and the hours' folders old versions, as after re-runs),
then times ``--repeats`` publishes of a new version of one hour (stage excluded) and as many vacuum passes
of the table (the default window of 168 h: nothing expired, the pass only lists and compares). Medians of
wall and CPU seconds (CPU: every thread of the process, delta-rs's included; less sensitive than wall to
other work on the machine), and how many times a publish opens the table (reads its log).

    python bench/table_publish_cost.py [--hours 200] [--rows 1000] [--rounds 2] [--repeats 15]
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable

from scalable_pipeline.publishing.versioned_store import VersionedStore

ASSET = "consolidated_output"


def hour_key(index: int) -> str:
    return (pd.Timestamp("2026-01-05", tz="UTC") + pd.Timedelta(hours=index)).strftime("%Y-%m-%d-%H:00")


def frame(rows: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"order_id": range(seed * rows, (seed + 1) * rows), "amount": [1.5] * rows})


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``action``."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def summary(samples: list[tuple[float, float]]) -> str:
    walls, cpus = [s[0] * 1000 for s in samples], [s[1] * 1000 for s in samples]
    return f"wall {statistics.median(walls):6.1f} ms (min {min(walls):.1f}), CPU {statistics.median(cpus):6.1f} ms (min {min(cpus):.1f})"


class CountingOpens:
    """Counts the DeltaTable objects created (each reads the table's log) while it is active."""

    def __init__(self):
        self.count, self.original = 0, DeltaTable.__init__

    def __enter__(self) -> "CountingOpens":
        def counted(table, *args, **kwargs):
            self.count += 1
            self.original(table, *args, **kwargs)

        DeltaTable.__init__ = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc) -> None:
        DeltaTable.__init__ = self.original  # type: ignore[method-assign]


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
            with CountingOpens() as opens:
                publish.append(timed(lambda staged=staged: store.publish(staged, "bench")))
        for _ in range(args.repeats):
            vacuum.append(timed(lambda: store.hour_table(ASSET).vacuum(store.retention_hours)))
        files = sum(1 for path in Path(root, "tables", ASSET).rglob("*.parquet") if path.is_file())
        commits = store.hour_table(ASSET).table().version()
    print(f"table: {args.hours} hours, {files} Parquet files on disk, {commits} commits")
    print(f"publish of one hour: {summary(publish)}; {opens.count} table opens")
    print(f"vacuum pass:         {summary(vacuum)}")


if __name__ == "__main__":
    main()
