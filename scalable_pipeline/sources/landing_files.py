"""Orders delivered as files: one Parquet or CSV file per hour in a landing folder.

Only a regular file inside the landing folder is ever opened (a symlink is followed only to a file
inside it). Each column is coerced to the order record's type; a value that does not convert (a text
amount, an unparseable time, a customer_id that is not a whole int64) becomes null, so the row is kept
and judged by the processing rules. A file that cannot be an hour of orders raises ``LandingFileError``
naming the file and the first rule it breaks, in this order: ``inside_landing_dir``, ``file_present``,
``regular_file``, ``readable_table``, ``unique_column_names``, ``order_record_columns``,
``order_id_integer``. A landing folder that is not there is an outage (``SourceUnavailableError``).
"""

import csv
import io
import itertools
import re
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from scalable_pipeline.core.constants import ORDER_COLUMNS
from scalable_pipeline.core.regular_file import open_regular_file
from scalable_pipeline.sources.errors import SourceUnavailableError

DEFAULT_PATTERN = "{date}/{hour:02d}.parquet"
FILE_TYPES = (".csv", ".parquet")
BLOCK_ROWS = 250_000  # rows read and coerced at a time: memory does not grow with the file
CSV_BLOCK_BYTES = 64 * 2**20  # pyarrow parses CSV in blocks of this size: one row may be up to this long
INT64 = np.iinfo(np.int64)
EXACT_FLOAT_LIMIT = 2**53  # above it a float may hold a rounded integer, so it names no id exactly
INTEGER_TEXT = r"[+-]?[0-9]+"
UTC_MICROSECONDS = pd.DatetimeTZDtype(unit="us", tz="UTC")
MICROSECOND_RANGE = (
    pd.Timestamp(np.datetime64(INT64.min + 1, "us"), tz="UTC"),
    pd.Timestamp(np.datetime64(INT64.max, "us"), tz="UTC"),
)


class LandingFileError(ValueError):
    """A landing file that breaks a file-level rule. ``copy_from`` is the regular file inside the landing
    folder that was read (the quarantine may copy it), None when nothing may be copied."""

    def __init__(self, path: Path, rule: str, detail: str, copy_from: Path | None = None):
        self.path, self.rule, self.copy_from = Path(path), rule, copy_from
        super().__init__(f"{path}: breaks rule '{rule}': {detail}")


def check_pattern(pattern: str) -> str:
    """``pattern`` if it names a .csv or .parquet file inside the landing folder; else ValueError saying why."""
    try:
        example = Path(pattern.format(date="2026-01-05", hour=0))
    except (AttributeError, IndexError, KeyError, ValueError) as error:
        raise ValueError(f"pattern {pattern!r} may use only {{date}} and {{hour}}: {type(error).__name__}: {error}") from error
    if example.is_absolute() or ".." in example.parts:
        raise ValueError(f"pattern {pattern!r} must name a file inside the landing folder (relative, no '..'), not {example}")
    if example.suffix not in FILE_TYPES:
        raise ValueError(f"pattern {pattern!r} must name a {' or '.join(FILE_TYPES)} file, not {example.name!r}")
    return pattern


def landing_path(landing_dir: str | Path, hour_start: pd.Timestamp, pattern: str = DEFAULT_PATTERN) -> Path:
    """Where the file of the hour starting at ``hour_start`` lands (``{date}``, ``{hour}`` in the pattern)."""
    return Path(landing_dir) / pattern.format(date=hour_start.strftime("%Y-%m-%d"), hour=hour_start.hour)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Relative paths of hour files named by ``pattern``, either file type: groups ``date``, ``hour``."""
    stem = pattern.removesuffix(Path(pattern).suffix)
    pieces = []
    for literal, field, _, _ in string.Formatter().parse(stem):
        pieces.append(re.escape(literal))
        if field == "date":
            pieces.append(r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})")
        elif field == "hour":
            pieces.append(r"(?P<hour>[0-9]{1,2})")
    suffixes = "|".join(re.escape(suffix) for suffix in FILE_TYPES)
    return re.compile("".join(pieces) + f"(?:{suffixes})")


def hour_of(rel: str, pattern: str = DEFAULT_PATTERN) -> pd.Timestamp | None:
    """The start of the hour whose file ``rel`` (relative, with '/') is under ``pattern``, as .csv or
    .parquet; None when it names no hour."""
    found = pattern_regex(pattern).fullmatch(rel)
    if not found:
        return None
    try:
        hour_start = pd.Timestamp(found["date"], tz="UTC") + pd.Timedelta(hours=int(found["hour"]))
    except ValueError:
        return None
    return (
        hour_start
        if int(found["hour"]) < 24 and landing_path(".", hour_start, pattern).with_suffix("") == Path(rel).with_suffix("")
        else None
    )


def check_table_header(path: Path, real: Path, handle: BinaryIO) -> None:
    """Raise ``LandingFileError`` unless the opened file is a readable table with unique columns including
    the order columns; reads only its first block."""
    first = next(readable_blocks(path, real, table_blocks(handle, path.suffix)))
    problem = column_problem(first.column_names)
    if problem:
        raise LandingFileError(path, *problem, real)


def landing_blocks(landing_dir: str | Path, path: Path) -> Iterator[pd.DataFrame]:
    """The records of the hour's file ``path`` in ``landing_dir``, in file order, in blocks of at most
    ``BLOCK_ROWS`` rows (at least one block; a header-only file is one empty block).

    The file is read block by block (Parquet in batches, CSV with Arrow's streaming reader), never whole.
    A rule broken anywhere in the file raises ``LandingFileError`` (the first rule in the module's order,
    row numbers counted over the whole file), possibly after earlier blocks were yielded: the reader must
    not keep what it got.
    """
    real, handle = open_landing_file(Path(landing_dir), path)
    with handle:
        tables = readable_blocks(path, real, table_blocks(handle, path.suffix))
        first = next(tables)
        problem = column_problem(first.column_names)
        if problem:
            for _ in tables:  # a file unreadable further on breaks readable_table, which comes first
                pass
            raise LandingFileError(path, *problem, real)
        bad_rows: list[int] = []  # the first few rows with a bad order_id, and their values
        bad_values: list[str] = []
        bad_count = row = 0
        for table in itertools.chain([first], tables):
            raw = table.select(ORDER_COLUMNS).to_pandas(
                types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_integer(t) else None
            )
            order_ids = whole_int64(raw["order_id"])
            bad = order_ids.isna().to_numpy()
            if bad.any():
                rows = np.flatnonzero(bad)[: 5 - len(bad_rows)]
                bad_rows += (rows + row).tolist()
                bad_values += ["null" if pd.isna(value) else str(value)[:40] for value in raw["order_id"].iloc[rows]]
                bad_count += int(bad.sum())
            elif not bad_count:
                yield order_records(raw, order_ids)
            row += len(raw)
        if bad_count:
            raise LandingFileError(
                path,
                "order_id_integer",
                f"{bad_count} row(s) whose order_id is not an integer that int64 holds exactly, first at rows {bad_rows} "
                f"(counted from 0, header excluded): {bad_values}",
                real,
            )


def column_problem(names: list[str]) -> tuple[str, str] | None:
    """The column rule (``unique_column_names``, ``order_record_columns``) a header breaks, and why."""
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        return "unique_column_names", f"column(s) {repeated} appear more than once"
    missing = [column for column in ORDER_COLUMNS if column not in names]
    if missing:
        return "order_record_columns", f"missing column(s) {missing}; found {names}"
    return None


def order_records(raw: pd.DataFrame, order_ids: pd.Series) -> pd.DataFrame:
    """A block of the file's six columns coerced to the order record's types."""
    return pd.DataFrame(
        {
            "order_id": order_ids.astype("int64"),
            "event_time": utc_times(raw["event_time"]),
            "customer_id": whole_int64(raw["customer_id"]),
            "region": as_text(raw["region"]),
            "amount": numbers(raw["amount"]),
            "status": as_text(raw["status"]),
        }
    )


def readable_blocks(path: Path, real: Path, tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """``tables``, where any parser or decoding error is the file breaking ``readable_table``."""
    while True:
        try:
            table = next(tables)
        except StopIteration:
            return
        except Exception as error:  # any parser or decoding error: the file is unreadable as a table
            raise LandingFileError(path, "readable_table", f"{type(error).__name__}: {error}", real) from error
        yield table


def table_blocks(handle: BinaryIO, suffix: str) -> Iterator[pa.Table]:
    """Every column of a Parquet or CSV file, ``BLOCK_ROWS`` rows at a time; at least one (maybe empty) block."""
    if suffix == ".parquet":
        parquet = pq.ParquetFile(handle)
        schema, batches = parquet.schema_arrow, parquet.iter_batches(batch_size=BLOCK_ROWS)
    else:
        reader = open_csv_as_text(handle)
        schema, batches = reader.schema, iter(reader)
    empty = True
    for batch in batches:
        for start in range(0, batch.num_rows, BLOCK_ROWS):
            empty = False
            yield pa.Table.from_batches([batch.slice(start, BLOCK_ROWS)])
    if empty:
        yield schema.empty_table()


def open_landing_file(landing_dir: Path, path: Path) -> tuple[Path, BinaryIO]:
    """The real path of ``path`` and the file opened, if it is a regular file inside ``landing_dir``."""
    folder = landing_dir.resolve()
    if not folder.is_dir():
        raise SourceUnavailableError(f"landing folder {landing_dir} is not there (not mounted?): no hour can be read")
    try:
        real = path.resolve()
    except RuntimeError as error:  # a symlink loop (Python < 3.13)
        raise LandingFileError(path, "regular_file", f"{error}; not opened") from error
    if not real.is_relative_to(folder):
        raise LandingFileError(path, "inside_landing_dir", f"it leads to {real}, outside the landing folder {folder}; not opened")
    if not real.exists() and not real.is_symlink():
        raise LandingFileError(path, "file_present", "no file has landed for this hour")
    handle = open_regular_file(real)
    if handle is None:
        raise LandingFileError(path, "regular_file", f"{real} is not a regular file (a folder, pipe, device or symlink loop)")
    return real, handle


def open_csv_as_text(handle: BinaryIO) -> pa_csv.CSVStreamingReader:
    """A UTF-8 CSV with a header line (a BOM is allowed), read block by block, every value as text and an
    empty field as null. Every row must have as many fields as the header: a short row is usually a file
    cut off mid-write."""
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    try:
        header = next(csv.reader(text), None)
    finally:
        text.detach()
    if header is None:
        raise ValueError("the file is empty, not even a header line")
    handle.seek(0)
    return pa_csv.open_csv(
        handle,
        read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1, block_size=CSV_BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), null_values=[""], strings_can_be_null=True
        ),
    )


def as_text(values: pd.Series) -> pd.Series:
    """Nullable strings, kept verbatim; a value that is not text (a number, bytes) as Python prints it."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.astype("string")
    return values.map(str, na_action="ignore").astype("string")


def numbers(values: pd.Series) -> pd.Series:
    """float64; NaN where a value is not a number (text, a bool). Infinities stay, for the rules to judge."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)
    parsed = pd.to_numeric(as_text(values), errors="coerce")
    return pd.Series(parsed.to_numpy(dtype="float64", na_value=np.nan), index=values.index)


def whole_int64(values: pd.Series) -> pd.Series:
    """Nullable int64; null where a value is not an integer that int64 holds exactly (text, 7.5, inf, 1e30,
    2**63; a float above 2**53, which may be a rounded id). Integer text of any length is read exactly."""
    data, keep = _int64_parts(values)
    return pd.Series(pd.arrays.IntegerArray(data, ~keep), index=values.index)


def _int64_parts(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The int64 values and where they are valid (elsewhere the value is 0)."""
    data, keep = np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    if pd.api.types.is_integer_dtype(values):
        keep = ((values >= INT64.min) & (values <= INT64.max)).fillna(False).to_numpy(dtype=bool)
        data[keep] = values[keep].to_numpy(dtype=np.int64)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        floats = numbers(values).to_numpy()
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(floats) & (floats == np.round(floats)) & (np.abs(floats) <= EXACT_FLOAT_LIMIT)
        data[keep] = floats[keep].astype(np.int64)
    else:
        text = as_text(values).str.strip()
        integer_text = text.str.fullmatch(INTEGER_TEXT).fillna(False).to_numpy(dtype=bool)
        others = ~integer_text  # "7.0", "1e3" may still be whole numbers; "7.5", "inf", "x" are not
        data[others], keep[others] = _int64_parts(numbers(text[others]))
        data[integer_text], keep[integer_text] = _exact_int64(text[integer_text])
    return data, keep


def _exact_int64(integer_text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer text read exactly, and whether each value fits int64."""
    try:
        return pc.cast(pa.array(integer_text.str.lstrip("+")), pa.int64()).to_numpy(), np.ones(len(integer_text), dtype=bool)
    except pa.ArrowInvalid:  # some value is beyond int64: read each one as a Python int
        exact = np.array([int(value) for value in integer_text], dtype=object)
        fits = ((exact >= INT64.min) & (exact <= INT64.max)).astype(bool)
        return np.where(fits, exact, 0).astype(np.int64), fits


def utc_times(values: pd.Series) -> pd.Series:
    """UTC timestamps in µs; null where a value is not an ISO-8601 time (any offset; no offset means UTC)
    or lies outside the µs range."""
    if pd.api.types.is_datetime64_any_dtype(values):
        times = pd.to_datetime(values, utc=True)
        return times.where(times.between(*MICROSECOND_RANGE)).astype(UTC_MICROSECONDS)
    return pd.to_datetime(as_text(values), format="ISO8601", utc=True, errors="coerce").astype(UTC_MICROSECONDS)
