"""The order rules applied to a whole table at once: the reference the tests compare every path with.

It runs the package's own validity kernel (``validity_codes``) and de-duplicates in raw order, as the rules
say; the pipeline applies the same kernel per chunk and range.
"""

import pandas as pd
import pyarrow as pa

from scalable_pipeline.processing.order_rules import DUPLICATE, reason_names, validity_codes


def validity_reasons(frame: pd.DataFrame, hour_start: pd.Timestamp, hour_end: pd.Timestamp) -> pd.Series:
    """The first validity rule each row breaks (``<NA>`` where it breaks none); ignores duplicates."""
    names = reason_names(validity_codes(pa.Table.from_pandas(frame, preserve_index=False), hour_start, hour_end))
    return pd.Series(names.to_pandas(), index=frame.index).astype("string")


def final_reasons(order_ids: pd.Series, validity: pd.Series) -> pd.Series:
    """Apply de-duplication before validity: rows given in raw order; later repeats are duplicates."""
    duplicated = order_ids.duplicated(keep="first").to_numpy()
    return validity.mask(duplicated, DUPLICATE).astype("string")


def classify(frame: pd.DataFrame, hour_start: pd.Timestamp, hour_end: pd.Timestamp) -> pd.Series:
    """Whole-table reference computation of the rules (``<NA>`` = valid)."""
    return final_reasons(frame["order_id"], validity_reasons(frame, hour_start, hour_end))
