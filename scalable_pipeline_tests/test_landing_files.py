"""Orders from landing files: values that do not convert become nulls judged by the rules; a file that
cannot be an hour of orders is rejected naming file, partition and rule; only regular files inside the
landing folder are opened or copied."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalable_pipeline.assembly.project import build_source
from scalable_pipeline.definitions import defs
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline.sources import landing_files
from scalable_pipeline.sources.errors import SourceUnavailableError
from scalable_pipeline.sources.landing_files import LandingFileError
from scalable_pipeline.sources.resource import LandingFileSource, SyntheticOrderSource
from scalable_pipeline_tests.conftest import failure_message, materialize_hour, materialize_raw, order_table
from scalable_pipeline_tests.order_reference import classify

HOUR = pd.Timestamp("2026-01-05 10:00", tz="UTC")
PARTITION = "2026-01-05-10:00"
HEADER = "order_id,event_time,customer_id,region,amount,status\n"
CSV_PATTERN = "{date}-{hour:02d}.csv"


def csv_source(tmp_path, content: str | bytes) -> LandingFileSource:
    """A landing folder holding ``content`` as the CSV file of HOUR."""
    source = LandingFileSource(landing_dir=str(tmp_path), pattern=CSV_PATTERN)
    path = source.path_for(HOUR)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return source


def parquet_source(tmp_path, **columns: pa.Array) -> LandingFileSource:
    """A landing folder holding a Parquet file of HOUR: one valid order per row, with ``columns`` replaced."""
    source = LandingFileSource(landing_dir=str(tmp_path))
    source.path_for(HOUR).parent.mkdir(parents=True)
    pq.write_table(order_table(HOUR, len(next(iter(columns.values()))), **columns), source.path_for(HOUR))
    return source


def verdicts(frame: pd.DataFrame) -> list:
    """The processing rules' verdict on each row (None = valid)."""
    return [None if pd.isna(reason) else reason for reason in classify(frame, HOUR, HOUR + pd.Timedelta(hours=1))]


def test_parquet_file_round_trips_the_records(tmp_path):
    orders = SyntheticOrderSource().fetch_hour(HOUR)
    source = LandingFileSource(landing_dir=str(tmp_path))
    path = source.path_for(HOUR)
    assert path == tmp_path / "2026-01-05" / "10.parquet"
    path.parent.mkdir(parents=True)
    orders.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(source.fetch_hour(HOUR), orders)


def test_csv_values_that_do_not_convert_become_nulls_judged_by_the_rules(tmp_path):
    long_region = "r" * 200_000
    rows = [
        "1,2026-01-05T10:05:00Z,7,north,12.5,paid",  # valid; ISO-8601 times in four formats, one file
        "2,2026-01-05 10:06:00+00:00,7,north,12.5,paid",
        "3,2026-01-05T10:07:00.123456+00:00,7,north,12.5,paid",
        "4,2026-01-05T11:07:00+01:00,7,north,12.5,paid",
        "5,2026-01-05 10:08:00,7,north,12.5,paid",  # no offset: UTC
        "6,not a time,7,north,12.5,paid",
        "7,2026-01-05T10:05:00Z,x,north,12.5,paid",
        "8,2026-01-05T10:05:00Z,7.5,north,12.5,paid",  # not a whole customer id
        "9,2026-01-05T10:05:00Z,inf,north,12.5,paid",
        "10,2026-01-05T10:05:00Z,-inf,north,12.5,paid",
        "11,2026-01-05T10:05:00Z,1e30,north,12.5,paid",  # beyond int64
        "12,2026-01-05T10:05:00Z,,north,12.5,paid",
        "13,2026-01-05T10:05:00Z,7,north,twelve,paid",
        "14,2026-01-05T10:05:00Z,7,north,NaN,paid",
        "15,2026-01-05T10:05:00Z,7,north,inf,paid",
        "16,2026-01-05T10:05:00Z,7,north,-0,paid",
        "17,2026-01-05T10:05:00Z,7,north,1e400,paid",  # overflows to inf
        "18,2026-01-05T10:05:00Z,7,north,12.5,Paid",  # status is case-sensitive
        "19,2026-01-05T10:05:00Z,7,north,12.5,",
        f"20,2026-01-05T10:05:00Z, 7.0 ,{long_region},12.5,paid",  # whole number with spaces: customer 7
        '21,2026-01-05T10:05:00Z,7,"NA, with ""quotes""\nand a newline",12.5,paid',  # text kept verbatim
    ]
    frame = csv_source(tmp_path, HEADER + "\n".join(rows) + "\n").fetch_hour(HOUR)
    assert frame["order_id"].tolist() == list(range(1, 22))
    assert frame["event_time"].iloc[:5].tolist() == [
        HOUR + pd.Timedelta(t) for t in ("5min", "6min", "7min 123456us", "7min", "8min")
    ]
    assert verdicts(frame) == [None] * 5 + ["event_time_outside_hour"] + ["null_customer_id"] * 6 + ["invalid_amount"] * 5 + [
        "unknown_status"
    ] * 2 + [None, None]
    assert frame.loc[19, "customer_id"] == 7 and frame.loc[19, "region"] == long_region
    assert frame.loc[20, "region"] == 'NA, with "quotes"\nand a newline'
    assert [str(t) for t in frame.dtypes] == ["int64", "datetime64[us, UTC]", "Int64", "string", "float64", "string"]


@pytest.mark.parametrize(
    "content, readable",
    [
        (HEADER, "a header-only file is an empty hour (the raw_volume_drop gate judges empty hours)"),
        ("\ufeff" + HEADER + "1,2026-01-05T10:05:00Z,7,north,12.5,paid\n", "a UTF-8 byte order mark is skipped"),
        (HEADER.replace("\n", "\r\n") + "1,2026-01-05T10:05:00Z,7,north,12.5,paid\r\n", "CRLF line ends"),
        ("note," + HEADER + "hello,1,2026-01-05T10:05:00Z,7,north,12.5,paid\n", "extra columns are ignored"),
        (HEADER + "1,2026-01-05T10:05:00Z,,north,12.5,paid\n2,2026-01-05T10:05:00Z,,north,1,paid\n", "an all-null column"),
    ],
)
def test_csv_shapes_that_are_still_an_hour_of_orders(tmp_path, content, readable):
    frame = csv_source(tmp_path, content).fetch_hour(HOUR)
    assert list(frame.columns) == ["order_id", "event_time", "customer_id", "region", "amount", "status"], readable
    assert len(frame) == content.count("\n") - 1
    assert verdicts(frame) == [None if pd.notna(c) else "null_customer_id" for c in frame["customer_id"]]


@pytest.mark.parametrize(
    "content, rule, detail",
    [
        (b"", "readable_table", "empty"),
        (bytes(range(256)) * 4, "readable_table", "UnicodeDecodeError"),
        ((HEADER + "1,2026-01-05T10:05:00Z,7,Z\xfcrich,1,paid\n").encode("latin-1"), "readable_table", "utf-8"),
        ((HEADER + "1,2026-01-05T10:05:00Z,7,north,1,paid\n").encode("utf-16"), "readable_table", "utf-8"),
        (HEADER + "1,2026-01-05T10:05:00Z,7,north,1,paid\n2,2026-01-05T10:0", "readable_table", "Expected 6 columns, got 2"),
        (HEADER + "1,2026-01-05T10:05:00Z,7,north,1,paid,extra\n", "readable_table", "Expected 6 columns, got 7"),
        (HEADER + '1,2026-01-05T10:05:00Z,7,"north,1,paid\n', "readable_table", "CSV parse error"),
        ("order_id,order_id" + HEADER[8:] + "1,2,2026-01-05T10:05:00Z,7,north,1,paid\n", "unique_column_names", "['order_id']"),
        (HEADER.replace(",", ";") + "1;2026-01-05T10:05:00Z;7;north;1;paid\n", "order_record_columns", "missing column(s)"),
        ("order_id,event_time,customer_id,region,amount\n1,2026-01-05T10:05:00Z,7,north,1\n", "order_record_columns", "status"),
        (HEADER + "abc,2026-01-05T10:05:00Z,7,north,1,paid\n", "order_id_integer", "['abc']"),
        (HEADER + "1.5,2026-01-05T10:05:00Z,7,north,1,paid\n", "order_id_integer", "['1.5']"),
        (HEADER + ",2026-01-05T10:05:00Z,7,north,1,paid\n", "order_id_integer", "['null']"),
        (HEADER + "inf,2026-01-05T10:05:00Z,7,north,1,paid\n", "order_id_integer", "['inf']"),
        (
            HEADER
            + "9223372036854775807,2026-01-05T10:05:00Z,7,north,1,paid\n9223372036854775808,2026-01-05T10:05:00Z,7,north,1,paid\n",
            "order_id_integer",
            "first at rows [1] (counted from 0, header excluded): ['9223372036854775808']",
        ),
    ],
)
def test_bad_csv_files_name_the_file_and_the_rule(tmp_path, content, rule, detail):
    source = csv_source(tmp_path, content)
    with pytest.raises(LandingFileError) as raised:
        source.fetch_hour(HOUR)
    path = source.path_for(HOUR)
    assert (raised.value.rule, raised.value.path, raised.value.copy_from) == (rule, path, path)
    assert str(path) in str(raised.value) and rule in str(raised.value) and detail in str(raised.value)


def write_orders(source: LandingFileSource, orders: pd.DataFrame) -> None:
    path = source.path_for(HOUR)
    path.parent.mkdir(parents=True, exist_ok=True)
    orders.to_csv(path, index=False) if path.suffix == ".csv" else orders.to_parquet(path, index=False, row_group_size=3_000)


@pytest.mark.parametrize("pattern", [CSV_PATTERN, "{date}/{hour:02d}.parquet"])
def test_a_file_larger_than_a_block_reads_block_by_block_to_the_same_records(tmp_path, monkeypatch, pattern):
    orders = SyntheticOrderSource().fetch_hour(HOUR)
    source = LandingFileSource(landing_dir=str(tmp_path), pattern=pattern)
    write_orders(source, orders)
    whole = source.fetch_hour(HOUR)  # the default block holds the whole scale-1 hour
    assert len(list(source.iter_hour(HOUR))) == 1
    monkeypatch.setattr(landing_files, "BLOCK_ROWS", 1_000)
    monkeypatch.setattr(landing_files, "CSV_BLOCK_BYTES", 32 * 2**10)
    blocks = list(source.iter_hour(HOUR))
    assert len(blocks) >= len(orders) // 1_000 and max(len(block) for block in blocks) <= 1_000
    pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True), whole)
    as_written = orders if pattern.endswith(".parquet") else orders.assign(status=orders["status"].replace("", pd.NA))
    pd.testing.assert_frame_equal(whole, as_written)  # an empty CSV field is null


def test_a_bad_order_id_in_a_later_block_rejects_the_file_counting_rows_over_the_file(tmp_path, small_blocks):
    orders = SyntheticOrderSource().fetch_hour(HOUR).astype({"order_id": "string"})
    orders.loc[[4_321, 4_500, 9_000], "order_id"] = ["12x", "", "1.5"]
    source = csv_source(tmp_path, orders.to_csv(index=False))
    read = []
    with pytest.raises(LandingFileError) as raised:
        read.extend(source.iter_hour(HOUR))
    assert 3_321 <= sum(map(len, read)) <= 4_321  # the blocks before the bad row came through: the reader drops them
    assert (raised.value.rule, raised.value.path) == ("order_id_integer", source.path_for(HOUR))
    assert "3 row(s)" in str(raised.value) and "first at rows [4321, 4500, 9000]" in str(raised.value)
    assert "['12x', 'null', '1.5']" in str(raised.value)


@pytest.mark.parametrize("bad_order_id", [False, True])
def test_a_file_cut_off_after_the_first_block_is_unreadable_even_with_bad_rows_before(tmp_path, small_blocks, bad_order_id):
    content = SyntheticOrderSource().fetch_hour(HOUR).to_csv(index=False)
    if bad_order_id:  # order_id_integer in the first block; readable_table, further on, comes first in the rules
        content = content.replace("\n", "\nnot an id", 1)
    source = csv_source(tmp_path, content[: len(content) - 40])
    with pytest.raises(LandingFileError, match=r"readable_table.*Expected 6 columns, got"):
        list(source.iter_hour(HOUR))


def test_a_bad_parquet_value_in_a_later_batch_rejects_the_file(tmp_path, small_blocks):
    ids = [float(i) for i in range(1, 5_001)]
    ids[3_210] = 2.0**60  # above 2**53: may be a rounded id
    source = parquet_source(tmp_path, order_id=pa.array(ids))
    with pytest.raises(LandingFileError, match=r"order_id_integer.*1 row\(s\).*first at rows \[3210\]"):
        list(source.iter_hour(HOUR))


def test_parquet_ids_beyond_int64_are_rejected_and_exact_ones_kept(tmp_path):
    too_big = parquet_source(tmp_path / "a", order_id=pa.array([5, 2**64 - 1], pa.uint64()))
    with pytest.raises(LandingFileError, match=r"order_id_integer.*rows \[1\].*18446744073709551615"):
        too_big.fetch_hour(HOUR)
    fits = parquet_source(tmp_path / "b", order_id=pa.array([2**63 - 1, 3], pa.uint64()))
    assert fits.fetch_hour(HOUR)["order_id"].tolist() == [2**63 - 1, 3]
    rounded = parquet_source(tmp_path / "c", order_id=pa.array([1.0, 2.0**60, np.inf]))
    with pytest.raises(LandingFileError, match=r"order_id_integer.*rows \[1, 2\]"):
        rounded.fetch_hour(HOUR)


def test_parquet_values_that_do_not_convert_become_nulls_judged_by_the_rules(tmp_path):
    source = parquet_source(
        tmp_path,
        customer_id=pa.array([2**60 + 1, None, 7, 7, 7, 7], pa.int64()),  # big ids stay exact beside nulls
        amount=pa.array([1.5, 1.5, None, 1.5, 1.5, 1.5]),
        event_time=pa.array([1767607500, 1767607500, 1767607500, 10**13, 1767607500, 1767607500], pa.timestamp("s")),
        status=pa.array(["paid", "paid", "paid", "paid", "PAID", None]),
    )
    frame = source.fetch_hour(HOUR)
    assert frame["customer_id"].tolist()[:2] == [2**60 + 1, pd.NA]
    assert frame.loc[0, "event_time"] == HOUR + pd.Timedelta(minutes=5)  # a naive timestamp is UTC
    assert pd.isna(frame.loc[3, "event_time"])  # year 318857: beyond the microsecond range
    assert verdicts(frame) == [None, "null_customer_id", "invalid_amount", "event_time_outside_hour"] + ["unknown_status"] * 2
    odd_types = parquet_source(
        tmp_path / "odd",
        customer_id=pa.array([True, False]),
        amount=pa.array([True, False]),
        event_time=pa.array([HOUR.to_pydatetime()] * 2, pa.timestamp("ms", tz="Europe/Paris")),
        region=pa.array([b"\x00\xff", None]),
    )
    frame = odd_types.fetch_hour(HOUR)
    assert frame["customer_id"].isna().all() and frame["amount"].isna().all()  # a bool is no id and no amount
    assert frame.loc[0, "event_time"] == HOUR and frame.loc[0, "region"] == "b'\\x00\\xff'"


def test_parquet_file_level_problems(tmp_path):
    source = LandingFileSource(landing_dir=str(tmp_path))
    path = source.path_for(HOUR)
    with pytest.raises(LandingFileError, match="file_present"):
        source.fetch_hour(HOUR)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(LandingFileError, match=r"readable_table.*magic bytes"):
        source.fetch_hour(HOUR)
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["order_id", "order_id"]), path)
    with pytest.raises(LandingFileError, match="unique_column_names"):
        source.fetch_hour(HOUR)


def test_only_regular_files_inside_the_landing_folder_are_opened(tmp_path):
    landing, outside = tmp_path / "landing", tmp_path / "secret.csv"
    outside.write_text(HEADER + "1,2026-01-05T10:05:00Z,7,north,1,paid\n")
    landing.mkdir()
    source = LandingFileSource(landing_dir=str(landing), pattern=CSV_PATTERN)
    path = source.path_for(HOUR)

    path.symlink_to(outside)
    with pytest.raises(LandingFileError, match="inside_landing_dir") as raised:
        source.fetch_hour(HOUR)
    assert raised.value.copy_from is None
    (landing / "linked").symlink_to(tmp_path)  # through a linked folder
    with pytest.raises(LandingFileError, match="inside_landing_dir"):
        LandingFileSource(landing_dir=str(landing), pattern="linked/secret.csv").fetch_hour(HOUR)

    path.unlink()
    (landing / "real.csv").write_text(outside.read_text())
    path.symlink_to(landing / "real.csv")  # a symlink to a file inside the folder is fine
    assert source.fetch_hour(HOUR)["order_id"].tolist() == [1]

    path.unlink()
    path.mkdir()
    with pytest.raises(LandingFileError, match="regular_file"):
        source.fetch_hour(HOUR)
    path.rmdir()
    os.mkfifo(path)  # opening a pipe would block forever
    with pytest.raises(LandingFileError, match="regular_file"):
        source.fetch_hour(HOUR)
    path.unlink()
    path.symlink_to(landing / "loop.csv")
    (landing / "loop.csv").symlink_to(path)
    with pytest.raises(LandingFileError, match="regular_file"):
        source.fetch_hour(HOUR)


def test_a_missing_landing_folder_is_an_outage_not_a_bad_file(tmp_path):
    with pytest.raises(SourceUnavailableError, match="not there") as raised:
        LandingFileSource(landing_dir=str(tmp_path / "unmounted")).fetch_hour(HOUR)
    assert isinstance(raised.value, OSError)  # what the circuit breaker counts


@pytest.mark.parametrize(
    "pattern, problem",
    [
        ("../{date}/{hour:02d}.csv", "inside the landing folder"),
        ("{date}/../../{hour:02d}.csv", "inside the landing folder"),
        ("/etc/{date}-{hour}.csv", "inside the landing folder"),
        ("{date}/{hour:02d}.txt", ".csv or .parquet"),
        ("{day}/{hour}.csv", "only {date} and {hour}"),
    ],
)
def test_a_pattern_outside_the_landing_folder_is_a_config_error(tmp_path, pattern, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        LandingFileSource(landing_dir=str(tmp_path), pattern=pattern)


def test_pipeline_on_landing_files_and_a_bad_file_is_quarantined(tmp_path, instance, data_dir):
    landing = tmp_path / "landing"
    source = LandingFileSource(landing_dir=str(landing))
    orders = SyntheticOrderSource().fetch_hour(HOUR)
    source.path_for(HOUR).parent.mkdir(parents=True)
    orders.to_parquet(source.path_for(HOUR), index=False)
    assert materialize_hour(PARTITION, instance, source=source).success
    good = VersionedStore(data_dir).published("consolidated_output", PARTITION)
    pd.testing.assert_frame_equal(defs.load_asset_value("raw_volume", partition_key=PARTITION, instance=instance), orders)

    orders.drop(columns=["amount"]).to_parquet(source.path_for(HOUR), index=False)  # a broken redelivery
    result = materialize_hour(PARTITION, instance, source=source, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert PARTITION in message and "order_record_columns" in message and "10.parquet" in message
    quarantined = list((data_dir / "quarantine" / "raw_volume").rglob("*10.parquet"))
    assert len(quarantined) == 1
    assert "amount" not in pd.read_parquet(quarantined[0]).columns  # the bad input itself is kept
    assert VersionedStore(data_dir).published("consolidated_output", PARTITION) == good


def test_a_bad_row_in_a_later_block_fails_raw_volume_and_keeps_the_last_good_hour(tmp_path, instance, data_dir, small_blocks):
    landing = tmp_path / "landing"
    landing.mkdir()
    source = LandingFileSource(landing_dir=str(landing), pattern=CSV_PATTERN)
    orders = SyntheticOrderSource().fetch_hour(HOUR)
    write_orders(source, orders)
    assert materialize_raw(instance, PARTITION, source=source).success
    store = VersionedStore(data_dir)
    good = store.published("raw_volume", PARTITION)

    redelivered = orders.astype({"order_id": "string"})
    redelivered.loc[8_000, "order_id"] = "8k"
    write_orders(source, redelivered)
    result = materialize_raw(instance, PARTITION, source=source)
    assert not result.success
    message = failure_message(result)
    assert (
        PARTITION in message
        and "order_id_integer" in message
        and "rows [8000]" in message
        and source.path_for(HOUR).name in message
    )
    assert store.published("raw_volume", PARTITION) == good
    assert sorted(path.name for path in (store.partition_dir("raw_volume", PARTITION) / "versions").iterdir()) == [
        Path(good.path).name
    ]  # the staged blocks were removed
    assert len(list((data_dir / "quarantine" / "raw_volume").rglob("*.csv"))) == 1


@pytest.mark.parametrize("kind, rule", [("folder", "regular_file"), ("symlink outside", "inside_landing_dir")])
def test_quarantine_records_why_and_copies_nothing_that_is_not_a_landing_file(tmp_path, instance, data_dir, kind, rule):
    landing, secret = tmp_path / "landing", tmp_path / "secret.parquet"
    source = LandingFileSource(landing_dir=str(landing))
    source.path_for(HOUR).parent.mkdir(parents=True)
    SyntheticOrderSource().fetch_hour(HOUR).assign(region="SECRET-REGION").to_parquet(secret, index=False)
    if kind == "folder":
        source.path_for(HOUR).mkdir()
    else:
        source.path_for(HOUR).symlink_to(secret)
    result = materialize_raw(instance, PARTITION, source=source)
    assert not result.success
    message = failure_message(result)
    assert PARTITION in message and rule in message and str(source.path_for(HOUR)) in message
    kept = [path for path in (data_dir / "quarantine").rglob("*") if path.is_file()]
    assert [path.name.endswith("10.parquet.reason.json") for path in kept] == [True]  # the reason only, no copy
    reason = json.loads(kept[0].read_text())
    assert (reason["rule"], reason["partition"], reason["copied"]) == (rule, PARTITION, False)
    assert not any(b"SECRET-REGION" in path.read_bytes() for path in data_dir.rglob("*") if path.is_file())


def test_deployment_picks_the_source_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SCALABLE_PIPELINE_LANDING_DIR", raising=False)
    assert isinstance(build_source(), SyntheticOrderSource)
    monkeypatch.setenv("SCALABLE_PIPELINE_LANDING_DIR", str(tmp_path))
    assert build_source().landing_dir == str(tmp_path)
