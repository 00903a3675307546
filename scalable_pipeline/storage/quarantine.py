"""Quarantine for input that cannot be processed: a copy of the file and why, kept for inspection."""

import shutil
import time
from pathlib import Path

from scalable_pipeline.storage.atomic import atomic_write, atomic_write_json
from scalable_pipeline.storage.versioned_store import partition_dirname


def quarantine_file(root: Path | str, asset: str, partition: str, path: Path, rule: str, message: str) -> Path:
    """Copy ``path`` to ``quarantine/<asset>/<partition>/`` with a ``.reason.json`` beside it; returns the copy."""
    folder = Path(root) / "quarantine" / asset / partition_dirname(partition)
    target = folder / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{time.time_ns() % 10**9:09d}-{path.name}"
    if path.exists():
        atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))
    atomic_write_json(
        target.with_name(target.name + ".reason.json"),
        {"source_file": str(path), "partition": partition, "rule": rule, "message": message, "copied": path.exists()},
    )
    return target
