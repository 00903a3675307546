"""The PostgreSQL source's table names and load markers, without the client library: the definitions import
these, and psycopg2 (0.1 s to load) is imported by ``postgres_orders`` only when a source is read."""

import re
from dataclasses import dataclass
from datetime import datetime

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL truncates longer names
READY_SUFFIX = "_ready"
BATCH_ROWS = 50_000


@dataclass(frozen=True)
class Marker:
    """A row of ``<table>_ready``: the loader finished an hour."""

    delivered_hour: datetime
    row_count: int
    ready_at: datetime

    @property
    def key(self) -> str:
        """The run key of the hour's load: a reload (new ``ready_at``) runs again."""
        return f"{self.delivered_hour.isoformat()}@{self.ready_at.isoformat()}"


def check_table_name(name: str) -> str:
    """``name`` if it is ``table`` or ``schema.table`` of plain identifiers that leave room for ``_ready``;
    else ValueError (a name is never pasted into SQL)."""
    parts = name.split(".")
    if len(parts) > 2 or not all(IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(f"table {name!r} is not allowed: use table or schema.table of letters, digits and '_'")
    if len(parts[-1]) + len(READY_SUFFIX) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"table {name!r} is too long: {parts[-1]}{READY_SUFFIX} must fit {MAX_IDENTIFIER_BYTES} characters")
    return name
