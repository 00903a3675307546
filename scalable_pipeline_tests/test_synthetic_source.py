"""The synthetic order source: deterministic, day-profiled, with defects at the configured rates, in blocks."""

import itertools

import numpy as np
import pandas as pd
import pytest

from scalable_pipeline.core.constants import ORDER_COLUMNS, REGIONS, VALID_STATUSES
from scalable_pipeline.sources import synthetic_orders
from scalable_pipeline.sources.resource import SyntheticOrderSource

PEAK = pd.Timestamp("2026-03-10 14:00", tz="UTC")
OFF_PEAK = pd.Timestamp("2026-03-10 22:00", tz="UTC")


def test_same_hour_and_config_give_the_same_records():
    pd.testing.assert_frame_equal(SyntheticOrderSource().fetch_hour(PEAK), SyntheticOrderSource().fetch_hour(PEAK))
    other_seed = SyntheticOrderSource(seed=7).fetch_hour(PEAK)
    assert not SyntheticOrderSource().fetch_hour(PEAK)["amount"].equals(other_seed["amount"])


@pytest.mark.parametrize("hour", range(24))
def test_volume_follows_the_day_profile(hour):
    start = pd.Timestamp(f"2026-03-10 {hour:02d}:00", tz="UTC")
    count = SyntheticOrderSource().expected_records(start)
    assert (8_000 <= count <= 12_000) if 9 <= hour < 17 else (1_000 <= count <= 3_000)


def test_scale_multiplies_the_volume():
    base = SyntheticOrderSource().expected_records(PEAK)
    scaled = SyntheticOrderSource(scale=100).fetch_hour(PEAK)
    assert len(scaled) == base * 100


def test_schema_and_values():
    frame = SyntheticOrderSource().fetch_hour(OFF_PEAK)
    assert list(frame.columns) == ORDER_COLUMNS
    assert str(frame["order_id"].dtype) == "int64"
    assert str(frame["event_time"].dtype) == "datetime64[us, UTC]"
    assert str(frame["customer_id"].dtype) == "Int64"
    assert set(frame["region"]) <= set(REGIONS) and len(REGIONS) == 8


def test_the_hour_comes_in_fixed_blocks_each_the_same_whoever_reads_it(small_blocks):
    source = SyntheticOrderSource()
    blocks = list(source.iter_hour(PEAK))
    sizes = [len(block) for block in blocks]
    assert sizes[:-1] == [small_blocks] * (len(blocks) - 1) and 0 < sizes[-1] <= small_blocks
    assert sum(sizes) == source.expected_records(PEAK)
    for again, block in zip(SyntheticOrderSource().iter_hour(PEAK), blocks, strict=True):
        pd.testing.assert_frame_equal(again, block)
    third_alone = next(itertools.islice(SyntheticOrderSource().iter_hour(PEAK), 2, None))
    pd.testing.assert_frame_equal(third_alone, blocks[2])  # a block does not depend on what was read before it


def test_an_empty_hour_is_one_empty_block_with_the_record_types():
    blocks = list(SyntheticOrderSource(scale=0).iter_hour(PEAK))
    assert len(blocks) == 1 and blocks[0].empty
    pd.testing.assert_series_equal(blocks[0].dtypes, SyntheticOrderSource().fetch_hour(PEAK).dtypes)


def test_arrival_order_across_blocks_and_duplicates_resend_a_row_of_their_own_block(small_blocks):
    blocks = list(SyntheticOrderSource(duplicate_rate=0.02).iter_hour(PEAK))
    assert len(blocks) > 5
    frame = pd.concat(blocks, keys=range(len(blocks)), names=["block", "row"]).reset_index()
    resent = frame["order_id"].duplicated(keep="first")
    first = frame[~resent].set_index("order_id")
    assert resent.sum() > 0
    for _, copy in frame[resent].iterrows():  # the whole record repeats an earlier row of the same block
        original = first.loc[copy["order_id"]]
        assert original["block"] == copy["block"] and original["row"] < copy["row"]
        assert original[ORDER_COLUMNS[1:]].equals(copy[ORDER_COLUMNS[1:]])
    row = np.arange(len(frame))  # rows that kept their own record (no resend was written over them)
    own = frame[frame["order_id"].to_numpy() % synthetic_orders.IDS_PER_HOUR == row + 1]
    own = own[(own["event_time"] >= PEAK) & (own["event_time"] < PEAK + pd.Timedelta(hours=1))]
    assert len(own) > 0.9 * len(frame) and own["event_time"].is_monotonic_increasing
    share = (own["event_time"] - PEAK) / pd.Timedelta(hours=1)  # block b covers its share of the hour
    start = own["block"] * small_blocks
    stop = np.minimum(start + small_blocks, len(frame))
    assert (share >= start / len(frame)).all() and (share < stop / len(frame)).all()


@pytest.mark.parametrize("block_rows", [None, 1_000])
def test_defects_are_injected_at_the_configured_rates(monkeypatch, block_rows):
    if block_rows:
        monkeypatch.setattr(synthetic_orders, "BLOCK_ROWS", block_rows)
    frame = SyntheticOrderSource(duplicate_rate=0.02, invalid_rate=0.05).fetch_hour(PEAK)
    n = len(frame)
    duplicates = frame["order_id"].duplicated().sum()
    assert duplicates == pytest.approx(0.02 * n, rel=0.15)
    first = frame[~frame["order_id"].duplicated()]
    hour_end = PEAK + pd.Timedelta(hours=1)
    broken = {
        "null customer_id": first["customer_id"].isna(),
        "bad amount": first["amount"].isna() | (first["amount"] <= 0),
        "unknown status": ~first["status"].isin(VALID_STATUSES),
        "outside the hour": (first["event_time"] < PEAK) | (first["event_time"] >= hour_end),
    }
    assert all(mask.sum() > 0 for mask in broken.values()), {k: int(v.sum()) for k, v in broken.items()}
    invalid = pd.concat(broken, axis=1).any(axis=1).sum()
    assert invalid == pytest.approx(0.05 * n, rel=0.15)


def test_no_defects_when_rates_are_zero():
    frame = SyntheticOrderSource(duplicate_rate=0, invalid_rate=0).fetch_hour(PEAK)
    assert frame["order_id"].is_unique
    assert frame["customer_id"].notna().all() and (frame["amount"] > 0).all()
    assert frame["status"].isin(VALID_STATUSES).all()
