"""Quarantine for input that cannot be processed: why it was rejected and, when safe, a copy of the file."""

import time
from pathlib import Path
from typing import NamedTuple

from scalable_pipeline.storage.atomic import atomic_write_json
from scalable_pipeline.storage.paths import partition_dirname, under_root
from scalable_pipeline.storage.regular_file import copy_regular_file


class Quarantined(NamedTuple):
    reason: Path  # the .reason.json, always written
    copy: Path | None  # the copy of the file, None when nothing was copied


def quarantine_file(
    root: Path | str, asset: str, partition: str, source_file: Path, rule: str, message: str, copy_from: Path | None
) -> Quarantined:
    """Record in ``quarantine/<asset>/<partition>/`` why ``source_file`` was rejected, with a copy of
    ``copy_from`` beside it if that is a regular file (None: copy nothing, e.g. a folder or a symlink
    pointing outside the landing folder)."""
    folder = under_root(root, "quarantine", asset, partition_dirname(partition))
    target = folder / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{time.time_ns() % 10**9:09d}-{source_file.name}"
    copied = copy_from is not None and copy_regular_file(copy_from, target)
    reason = atomic_write_json(
        target.with_name(target.name + ".reason.json"),
        {"source_file": str(source_file), "partition": partition, "rule": rule, "message": message, "copied": copied},
    )
    return Quarantined(reason, target if copied else None)
