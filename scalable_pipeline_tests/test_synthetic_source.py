"""The synthetic order source: deterministic, day-profiled, with defects at the configured rates."""

import pandas as pd
import pytest

from scalable_pipeline.constants import ORDER_COLUMNS, REGIONS, VALID_STATUSES
from scalable_pipeline.resources.source import SyntheticOrderSource

PEAK = pd.Timestamp("2024-03-05 14:00", tz="UTC")
OFF_PEAK = pd.Timestamp("2024-03-05 22:00", tz="UTC")


def test_same_hour_and_config_give_the_same_records():
    pd.testing.assert_frame_equal(SyntheticOrderSource().fetch_hour(PEAK), SyntheticOrderSource().fetch_hour(PEAK))
    other_seed = SyntheticOrderSource(seed=7).fetch_hour(PEAK)
    assert not SyntheticOrderSource().fetch_hour(PEAK)["amount"].equals(other_seed["amount"])


@pytest.mark.parametrize("hour", range(24))
def test_volume_follows_the_day_profile(hour):
    start = pd.Timestamp(f"2024-03-05 {hour:02d}:00", tz="UTC")
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


def test_defects_are_injected_at_the_configured_rates():
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
