"""The local alerts log: one JSON line per alert, appended, never rewritten."""

from pathlib import Path


def alerts_log_path(root: Path) -> Path:
    return Path(root) / "logs" / "alerts.jsonl"
