"""Deterministic synthetic orders: the default data source, named as a simulation.

The same hour, scale, rates and seed always give the same records. Defects are injected at the
configured rates so the quality gates have real work to do.

The hour is generated in blocks of ``BLOCK_ROWS`` rows, each from its own random stream
([seed, hour, 1, block]), so a block is the same whoever reads it and however many are held: memory
does not grow with the hour. Block ``b`` covers its share of the hour's time window (rows
``[b*BLOCK_ROWS, (b+1)*BLOCK_ROWS)`` of ``n`` get times in ``[b*BLOCK_ROWS/n, (b+1)*BLOCK_ROWS/n)`` of the
hour), so event times stay in arrival order across the hour. Each block gets its share of invalid rows
and duplicates at the configured rates; a duplicate resends an earlier row of the same block.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalable_pipeline.core.constants import PEAK_HOURS, REGIONS, VALID_STATUSES

PEAK_VOLUME = (8_000, 12_000)
OFF_PEAK_VOLUME = (1_000, 3_000)
DEFECT_KINDS = ("null_customer_id", "null_amount", "non_positive_amount", "unknown_status", "late_event_time")
UNKNOWN_STATUSES = np.array(["refunded", "PAID", "unknown", ""], dtype=object)
IDS_PER_HOUR = 10**10
HOUR_US = 3_600_000_000
BLOCK_ROWS = 250_000  # rows per generation block (part of the records' identity: changing it changes them)


@dataclass(frozen=True)
class SyntheticOrdersSpec:
    """What the generator needs besides the hour."""

    scale: float = 1.0
    duplicate_rate: float = 0.005
    invalid_rate: float = 0.01
    seed: int = 0


def is_peak_hour(hour_start: pd.Timestamp) -> bool:
    return hour_start.hour in PEAK_HOURS


def hour_volume(hour_start: pd.Timestamp, spec: SyntheticOrdersSpec) -> int:
    """Record count of the hour: the day profile's range, times ``scale``."""
    hour_start = to_utc(hour_start)
    low, high = PEAK_VOLUME if is_peak_hour(hour_start) else OFF_PEAK_VOLUME
    base = _rng(hour_start, spec.seed, 0).integers(low, high + 1)
    return round(base * spec.scale)


def order_blocks(hour_start: pd.Timestamp, spec: SyntheticOrdersSpec) -> Iterator[pd.DataFrame]:
    """The hour's orders in arrival order, defects and duplicates included, one generation block at a
    time (at least one block: an empty hour is one empty block)."""
    hour_start = to_utc(hour_start)
    total = hour_volume(hour_start, spec)
    for block, start in enumerate(range(0, max(total, 1), BLOCK_ROWS)):
        yield _block(hour_start, spec, block, start, min(total, start + BLOCK_ROWS), total)


def _block(hour_start: pd.Timestamp, spec: SyntheticOrdersSpec, block: int, start: int, stop: int, total: int) -> pd.DataFrame:
    """Rows ``[start, stop)`` of the hour's ``total``, from the block's own random stream."""
    n = stop - start
    rng = _rng(hour_start, spec.seed, 1, block)
    hour_index = int(hour_start.timestamp()) // 3600
    window = (HOUR_US * start // total, HOUR_US * stop // total) if total else (0, 1)
    offsets_us = np.sort(rng.integers(*window, size=n))
    frame = pd.DataFrame(
        {
            "order_id": hour_index * IDS_PER_HOUR + np.arange(start + 1, stop + 1, dtype=np.int64),
            "event_time": hour_start + pd.to_timedelta(offsets_us, unit="us"),
            "customer_id": pd.array(rng.integers(1, 500_000, size=n), dtype="Int64"),
            "region": pd.array(np.array(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), size=n)], dtype="string"),
            "amount": np.round(rng.lognormal(mean=3.5, sigma=0.8, size=n), 2),
            "status": np.array(VALID_STATUSES, dtype=object)[rng.choice(len(VALID_STATUSES), size=n, p=[0.2, 0.5, 0.25, 0.05])],
        }
    )
    _inject_invalid(frame, rng, spec.invalid_rate, hour_start)
    _inject_duplicates(frame, rng, spec.duplicate_rate)
    frame["status"] = frame["status"].astype("string")
    frame["event_time"] = frame["event_time"].astype("datetime64[us, UTC]")
    return frame


def to_utc(moment) -> pd.Timestamp:
    moment = pd.Timestamp(moment)
    return moment.tz_convert("UTC") if moment.tzinfo else moment.tz_localize("UTC")


def _rng(hour_start: pd.Timestamp, seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(hour_start.timestamp()) // 3600, *stream])


def _inject_invalid(frame: pd.DataFrame, rng: np.random.Generator, rate: float, hour_start: pd.Timestamp) -> None:
    count = round(len(frame) * rate)
    if count == 0:
        return
    rows = rng.choice(len(frame), size=count, replace=False)
    kinds = rng.integers(0, len(DEFECT_KINDS), size=count)
    for kind_index, kind in enumerate(DEFECT_KINDS):
        target = rows[kinds == kind_index]
        if kind == "null_customer_id":
            frame.loc[target, "customer_id"] = pd.NA
        elif kind == "null_amount":
            frame.loc[target, "amount"] = np.nan
        elif kind == "non_positive_amount":
            frame.loc[target, "amount"] = -np.round(rng.uniform(0, 50, size=len(target)), 2)
        elif kind == "unknown_status":
            frame.loc[target, "status"] = UNKNOWN_STATUSES[rng.integers(0, len(UNKNOWN_STATUSES), size=len(target))]
        else:  # event_time outside the hour: stamped up to 90 minutes before or after it
            shift_s = rng.integers(1, 90 * 60, size=len(target))
            before = rng.random(len(target)) < 0.5
            frame.loc[target, "event_time"] = np.where(
                before,
                hour_start - pd.to_timedelta(shift_s, unit="s"),
                hour_start + pd.Timedelta(hours=1) + pd.to_timedelta(shift_s, unit="s"),
            )


def _inject_duplicates(frame: pd.DataFrame, rng: np.random.Generator, rate: float) -> None:
    """Resends: a later row repeats an earlier row's record (of the same block), order_id included."""
    count = round(len(frame) * rate)
    if count == 0 or len(frame) < 2:
        return
    later = rng.choice(np.arange(1, len(frame)), size=min(count, len(frame) - 1), replace=False)
    earlier = (rng.random(len(later)) * later).astype(np.int64)
    for column in frame.columns:
        values = frame[column].array.copy()
        values[later] = values[earlier]
        frame[column] = values
