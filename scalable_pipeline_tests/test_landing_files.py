"""Orders from landing files: type coercion keeps bad values as invalid rows; bad files name the rule."""

import pandas as pd
import pytest

from scalable_pipeline.resources.source import LandingFileSource, SyntheticOrderSource
from scalable_pipeline.sources.landing_files import LandingFileError

HOUR = pd.Timestamp("2024-01-01 10:00", tz="UTC")


def test_parquet_file_round_trips_the_records(tmp_path):
    orders = SyntheticOrderSource().fetch_hour(HOUR)
    source = LandingFileSource(landing_dir=str(tmp_path))
    path = source.path_for(HOUR)
    assert path == tmp_path / "2024-01-01" / "10.parquet"
    path.parent.mkdir(parents=True)
    orders.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(source.fetch_hour(HOUR), orders)


def test_csv_values_that_do_not_convert_become_nulls(tmp_path):
    (tmp_path / "2024-01-01-10.csv").write_text(
        "order_id,event_time,customer_id,region,amount,status\n"
        "1,2024-01-01T10:05:00Z,7,north,12.5,paid\n"
        "2,not a time,x,south,twelve,shipped\n"
    )
    source = LandingFileSource(landing_dir=str(tmp_path), pattern="{date}-{hour:02d}.csv")
    frame = source.fetch_hour(HOUR)
    assert frame["order_id"].tolist() == [1, 2]
    assert frame.loc[0, "event_time"] == pd.Timestamp("2024-01-01 10:05", tz="UTC")
    assert frame.loc[1, ["event_time", "customer_id", "amount"]].isna().all()
    assert str(frame["customer_id"].dtype) == "Int64"


@pytest.mark.parametrize(
    "content, rule",
    [
        ("order_id,event_time,customer_id,region,amount\n1,2024-01-01T10:05:00Z,7,north,1\n", "order_record_columns"),
        ("order_id,event_time,customer_id,region,amount,status\nabc,2024-01-01T10:05:00Z,7,north,1,paid\n", "order_id_integer"),
        ("order_id,event_time,customer_id,region,amount,status\n1.5,2024-01-01T10:05:00Z,7,north,1,paid\n", "order_id_integer"),
    ],
)
def test_bad_files_name_the_file_and_the_rule(tmp_path, content, rule):
    path = tmp_path / "2024-01-01-10.csv"
    path.write_text(content)
    with pytest.raises(LandingFileError) as raised:
        LandingFileSource(landing_dir=str(tmp_path), pattern="{date}-{hour:02d}.csv").fetch_hour(HOUR)
    assert raised.value.rule == rule and raised.value.path == path
    assert str(path) in str(raised.value) and rule in str(raised.value)


def test_missing_and_unreadable_files(tmp_path):
    source = LandingFileSource(landing_dir=str(tmp_path))
    with pytest.raises(LandingFileError, match="file_present"):
        source.fetch_hour(HOUR)
    source.path_for(HOUR).parent.mkdir(parents=True)
    source.path_for(HOUR).write_bytes(b"PAR1 not really parquet")
    with pytest.raises(LandingFileError, match="readable_table"):
        source.fetch_hour(HOUR)
