"""The processing rules for orders, exactly as docs/architecture.md publishes them.

First de-duplicate on ``order_id`` keeping the first row in raw order; then a remaining row is invalid
if ``customer_id`` is null, ``amount`` is null, not finite or <= 0, ``status`` is not a valid status, or
``event_time`` is outside the partition's hour. The rest are valid.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scalable_pipeline.core.constants import ORDER_COLUMNS, VALID_STATUSES

# Bump when a rule changes: it is part of the chunk plan fingerprint, so old checkpoints are not reused.
# 2: an amount must be finite: +inf is invalid_amount (-inf and NaN already were).
RULES_VERSION = 2

DUPLICATE = "duplicate_order_id"
# Validity rules in the order they are reported: the first broken rule names the row's reason.
VALIDITY_RULES = ("null_customer_id", "invalid_amount", "unknown_status", "event_time_outside_hour")
REASON_COLUMN = "rejection_reason"
RAW_ROW_COLUMN = "raw_row"
# A row's verdict as a small integer while it is computed: 0 = valid, i + 1 = REASONS[i].
REASONS = (*VALIDITY_RULES, DUPLICATE)
DUPLICATE_CODE = len(REASONS)


def validity_codes(table: pa.Table, hour_start: pd.Timestamp, hour_end: pd.Timestamp) -> np.ndarray:
    """The code of the first validity rule each row breaks (0 where it breaks none); ignores duplicates."""
    amount = pc.fill_null(pc.cast(table["amount"], pa.float64()), np.nan).to_numpy()
    times = table["event_time"]
    start, end = (pa.scalar(moment, times.type) for moment in (hour_start, hour_end))
    in_hour = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
    broken = [
        pc.is_null(table["customer_id"]).to_numpy(),
        ~(np.isfinite(amount) & (amount > 0)),
        ~pc.fill_null(pc.is_in(table["status"], value_set=pa.array(VALID_STATUSES)), False).to_numpy(),
        ~pc.fill_null(in_hour, False).to_numpy(),
    ]
    return np.select(broken, np.arange(1, len(VALIDITY_RULES) + 1, dtype=np.int8), default=np.int8(0)).astype(np.int8)


def reason_names(codes: np.ndarray) -> pa.Array:
    """Verdict codes as the ``rejection_reason`` text column (null = valid)."""
    indices = pa.array(codes.astype(np.int8) - 1, mask=codes == 0, type=pa.int8())
    return pa.DictionaryArray.from_arrays(indices, pa.array(REASONS)).cast(pa.string())


def schema_problems(frame: pd.DataFrame) -> list[str]:
    """Ways ``frame`` does not have the order record shape (empty when it does)."""
    problems = [f"missing column {name!r}" for name in ORDER_COLUMNS if name not in frame.columns]
    if problems:
        return problems
    if not pd.api.types.is_integer_dtype(frame["order_id"]) or frame["order_id"].isna().any():
        problems.append(f"order_id must be non-null integers, got {frame['order_id'].dtype}")
    if not isinstance(frame["event_time"].dtype, pd.DatetimeTZDtype):
        problems.append(f"event_time must be a UTC timestamp, got {frame['event_time'].dtype}")
    if not pd.api.types.is_numeric_dtype(frame["amount"]):
        problems.append(f"amount must be numeric, got {frame['amount'].dtype}")
    if not pd.api.types.is_integer_dtype(frame["customer_id"]) and not frame["customer_id"].isna().all():
        problems.append(f"customer_id must be (nullable) integers, got {frame['customer_id'].dtype}")
    return problems
