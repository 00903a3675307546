"""Reading numbers back from Dagster metadata (materializations, check evaluations)."""

from collections.abc import Mapping

import dagster as dg


def metadata_number(metadata: Mapping[str, dg.MetadataValue] | None, key: str) -> float | None:
    """The value of ``key`` as a float when it is a number (not a bool); None when absent or not a number."""
    value = getattr((metadata or {}).get(key), "value", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
