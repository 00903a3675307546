"""Orders delivered as files: one Parquet or CSV file per hour in a landing folder.

Reading coerces each column to the order record's type. Values that do not convert (a text amount,
an unparseable time) become nulls, so the row is kept and later judged invalid by the processing
rules. A file that cannot be an hour of orders at all (unreadable, a column missing, order_id not
integers) raises ``LandingFileError`` naming the file and the rule it breaks.
"""

from pathlib import Path

import pandas as pd

from scalable_pipeline.constants import ORDER_COLUMNS

DEFAULT_PATTERN = "{date}/{hour:02d}.parquet"


class LandingFileError(ValueError):
    """A landing file that breaks a file-level rule; carries the file and the rule."""

    def __init__(self, path: Path, rule: str, detail: str):
        self.path, self.rule = Path(path), rule
        super().__init__(f"{path}: breaks rule '{rule}': {detail}")


def landing_path(landing_dir: str | Path, hour_start: pd.Timestamp, pattern: str = DEFAULT_PATTERN) -> Path:
    """Where the file of the hour starting at ``hour_start`` lands (``{date}``, ``{hour}`` in the pattern)."""
    return Path(landing_dir) / pattern.format(date=hour_start.strftime("%Y-%m-%d"), hour=hour_start.hour)


def read_landing_file(path: Path) -> pd.DataFrame:
    """The file's rows as order records, in file order."""
    if not path.exists():
        raise LandingFileError(path, "file_present", "no file has landed for this hour")
    try:
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=True)
    except Exception as error:  # any parser error means the file is unreadable as a table
        raise LandingFileError(path, "readable_table", f"{type(error).__name__}: {error}") from error
    missing = [column for column in ORDER_COLUMNS if column not in raw.columns]
    if missing:
        raise LandingFileError(path, "order_record_columns", f"missing column(s) {missing}; found {list(raw.columns)}")
    order_ids = pd.to_numeric(raw["order_id"], errors="coerce")
    bad_ids = order_ids.isna() | (order_ids != order_ids.round())
    if bad_ids.any():
        rows = list(raw.index[bad_ids][:5])
        raise LandingFileError(
            path, "order_id_integer", f"{int(bad_ids.sum())} row(s) without an integer order_id, first at rows {rows}"
        )
    return pd.DataFrame(
        {
            "order_id": order_ids.astype("int64"),
            "event_time": pd.to_datetime(raw["event_time"], utc=True, errors="coerce").astype("datetime64[us, UTC]"),
            "customer_id": whole_numbers(raw["customer_id"]),
            "region": raw["region"].astype("string"),
            "amount": pd.to_numeric(raw["amount"], errors="coerce").astype("float64"),
            "status": raw["status"].astype("string"),
        }
    )


def whole_numbers(values: pd.Series) -> pd.Series:
    """Nullable integers; anything that is not a whole number (text, 7.5) becomes null."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.where(numbers == numbers.round()).astype("Int64")
