"""land: write synthetic hours as landing files (a simulation), to try the file source on realistic data."""

import argparse
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalable_pipeline.cli.options import non_negative_float, partition_key
from scalable_pipeline.core.partition_keys import partition_start
from scalable_pipeline.sources.landing_files import DEFAULT_PATTERN
from scalable_pipeline.sources.resource import LandingFileSource, SyntheticOrderSource


def register(commands) -> None:
    parser = commands.add_parser(
        "land", help="write synthetic hours as landing files (simulation, for the file source)", description=__doc__
    )
    parser.add_argument("landing_dir", help="folder to write the files under")
    parser.add_argument("partitions", nargs="+", type=partition_key, help="hourly partition keys")
    parser.add_argument("--pattern", default=DEFAULT_PATTERN, help="file of an hour (.parquet or .csv)")
    parser.add_argument("--scale", type=non_negative_float, default=1.0, help="volume multiplier")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.set_defaults(handler=land)


def write_blocks(path: Path, blocks: Iterator[pd.DataFrame]) -> int:
    """Write the blocks one after another as one CSV or Parquet file; returns the record count."""
    records, writer = 0, None
    for index, block in enumerate(blocks):
        if path.suffix == ".csv":
            block.to_csv(path, index=False, mode="a" if index else "w", header=not index)
        else:
            table = pa.Table.from_pandas(block, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
        records += len(block)
    if writer:
        writer.close()
    return records


def land(args: argparse.Namespace) -> int:
    synthetic = SyntheticOrderSource(scale=args.scale, seed=args.seed)
    landing = LandingFileSource(landing_dir=args.landing_dir, pattern=args.pattern)
    for partition in args.partitions:
        hour_start = pd.Timestamp(partition_start(partition))
        path = landing.path_for(hour_start)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = write_blocks(path, synthetic.iter_hour(hour_start))
        print(f"{partition}: {records} records -> {path}")
    return 0
