"""Quarantine for input that cannot be processed: why it was rejected and, when safe, a copy of the file."""

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from scalable_pipeline.core.atomic import atomic_write_json
from scalable_pipeline.core.paths import escaped_name, partition_dirname, under_root
from scalable_pipeline.core.regular_file import copy_regular_file


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


def quarantine_landing_file(
    root: Path | str, pipeline: str, landing_dir: Path, rel: str, rule: str, detail: str, now: float
) -> Path:
    """Move the rejected landing file ``rel`` (a symlink as the link itself) to
    ``quarantine/landing/<pipeline>/<rel>`` with a ``.reason.json`` beside it; nothing is deleted (an earlier
    file of that name keeps its place: the newcomer gets a ``.<time ns>`` suffix). Returns the reason file;
    ``moved`` in it is false when the file could not be moved (it then stays where it was)."""
    target = under_root(root, "quarantine", "landing", pipeline).joinpath(*map(escaped_name, rel.split("/")))
    if target.exists() or target.is_symlink():
        target = target.with_name(f"{target.name}.{time.time_ns()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.move(Path(landing_dir) / rel, target)
        moved, problem = True, None
    except OSError as error:
        moved, problem = False, f"{type(error).__name__}: {error}"
    return atomic_write_json(
        target.with_name(target.name + ".reason.json"),
        {
            "rule": rule,
            "detail": detail,
            "time": datetime.fromtimestamp(now, timezone.utc).isoformat(),
            "source_file": rel,
            "moved": moved,
            "move_error": problem,
        },
    )
