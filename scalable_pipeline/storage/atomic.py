"""Atomic file writes: write beside the target, fsync, then rename over it."""

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def atomic_write_json(path: Path, document) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(document, indent=2, default=str)))


def read_json(path: Path):
    return json.loads(path.read_text())
