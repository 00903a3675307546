"""The local alerts log: one JSON line per alert, appended, never rewritten."""

import json
import os
from pathlib import Path


def alerts_log_path(root: Path) -> Path:
    return Path(root) / "logs" / "alerts.jsonl"


def append_line(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line in a single write, then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
