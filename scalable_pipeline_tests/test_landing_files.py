"""Orders from landing files: type coercion keeps bad values as invalid rows; bad files name the rule."""

import pandas as pd
import pytest

from scalable_pipeline.definitions import build_source, defs
from scalable_pipeline.resources.source import LandingFileSource, SyntheticOrderSource
from scalable_pipeline.sources.landing_files import LandingFileError
from scalable_pipeline.storage.versioned_store import VersionedStore
from scalable_pipeline_tests.conftest import materialize_hour

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
        "3,2024-01-01T10:06:00Z,7.5,east,3,paid\n"
    )
    source = LandingFileSource(landing_dir=str(tmp_path), pattern="{date}-{hour:02d}.csv")
    frame = source.fetch_hour(HOUR)
    assert frame["order_id"].tolist() == [1, 2, 3]
    assert frame.loc[0, "event_time"] == pd.Timestamp("2024-01-01 10:05", tz="UTC")
    assert frame.loc[1, ["event_time", "customer_id", "amount"]].isna().all()
    assert pd.isna(frame.loc[2, "customer_id"])  # 7.5 is no customer id: null, so the row is invalid
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


def test_pipeline_on_landing_files_and_a_bad_file_is_quarantined(tmp_path, instance, data_dir):
    landing = tmp_path / "landing"
    source = LandingFileSource(landing_dir=str(landing))
    orders = SyntheticOrderSource().fetch_hour(HOUR)
    source.path_for(HOUR).parent.mkdir(parents=True)
    orders.to_parquet(source.path_for(HOUR), index=False)
    assert materialize_hour("2024-01-01-10:00", instance, source=source).success
    good = VersionedStore(data_dir).published("consolidated_output", "2024-01-01-10:00")
    pd.testing.assert_frame_equal(
        defs.load_asset_value("raw_volume", partition_key="2024-01-01-10:00", instance=instance), orders
    )

    orders.drop(columns=["amount"]).to_parquet(source.path_for(HOUR), index=False)  # a broken redelivery
    result = materialize_hour("2024-01-01-10:00", instance, source=source, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "2024-01-01-10:00" in message and "order_record_columns" in message and "10.parquet" in message
    quarantined = list((data_dir / "quarantine" / "raw_volume").rglob("*10.parquet"))
    assert len(quarantined) == 1
    assert "amount" not in pd.read_parquet(quarantined[0]).columns  # the bad input itself is kept
    assert VersionedStore(data_dir).published("consolidated_output", "2024-01-01-10:00") == good


def test_deployment_picks_the_source_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SCALABLE_PIPELINE_LANDING_DIR", raising=False)
    assert isinstance(build_source(), SyntheticOrderSource)
    monkeypatch.setenv("SCALABLE_PIPELINE_LANDING_DIR", str(tmp_path))
    assert build_source().landing_dir == str(tmp_path)
