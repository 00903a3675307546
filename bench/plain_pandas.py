"""The reference a pipeline is measured against: the hour's processing as one plain pandas script.

Reads the stored raw hour (a Parquet file or a directory of them), de-duplicates on ``order_id``
(the first row in raw order wins), keeps the rows that break none of the README's rules (customer_id
not null; amount not null, finite and > 0; a known status; event_time inside the partition's hour),
sorts them by ``order_id`` and writes Parquet. Prints one JSON line with its own seconds (imports excluded).

    python bench/plain_pandas.py RAW OUT --partition 2026-01-05-10:00
"""

import argparse
import json
import time

import numpy as np
import pandas as pd

VALID_STATUSES = ["placed", "paid", "shipped", "cancelled"]


def process(raw: pd.DataFrame, hour_start: pd.Timestamp) -> pd.DataFrame:
    first = raw.drop_duplicates("order_id", keep="first")
    amount = first["amount"].astype("float64").to_numpy(na_value=np.nan)
    valid = (
        first["customer_id"].notna().to_numpy()
        & np.isfinite(amount)
        & (amount > 0)
        & first["status"].isin(VALID_STATUSES).fillna(False).to_numpy(dtype=bool)
        & ((first["event_time"] >= hour_start) & (first["event_time"] < hour_start + pd.Timedelta(hours=1))).to_numpy(
            dtype=bool, na_value=False
        )
    )
    return first[valid].sort_values("order_id", ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw")
    parser.add_argument("out")
    parser.add_argument("--partition", required=True, help="hourly partition key, e.g. 2026-01-05-10:00")
    args = parser.parse_args()
    started = time.perf_counter()
    hour_start = pd.to_datetime(args.partition, format="%Y-%m-%d-%H:%M", utc=True)
    output = process(pd.read_parquet(args.raw), hour_start)
    output.to_parquet(args.out, index=False)
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(output)}))


if __name__ == "__main__":
    main()
