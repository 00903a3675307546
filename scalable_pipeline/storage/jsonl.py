"""JSON-lines files: append one record durably, read all records back."""

import json
import os
from pathlib import Path


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` as one line in a single ``O_APPEND`` write (writers never interleave), then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: Path) -> list[dict]:
    """Every record in append order; none when the file does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
