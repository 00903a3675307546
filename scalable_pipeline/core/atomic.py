"""Atomic file writes: write beside the target, fsync, then rename over it (or link it in, if absent)."""

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _written_beside(path: Path, write: Callable[[Path], None], durable: bool = True) -> Iterator[Path]:
    """A temporary file next to ``path``, filled by ``write(tmp_path)`` and (if ``durable``) fsynced; removed
    after the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp_path)
        if durable:
            with open(tmp_path, "rb") as handle:
                os.fsync(handle.fileno())
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Path], None], durable: bool = True) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``: readers never see half a file.
    ``durable=False`` skips the fsync: for scratch files that are checked and can be derived again."""
    with _written_beside(path, write, durable) as tmp_path:
        os.replace(tmp_path, path)
    return path


def _write_json(document) -> Callable[[Path], None]:
    def write(tmp_path: Path) -> None:
        tmp_path.write_text(json.dumps(document, indent=2, default=str))

    return write


def atomic_write_json(path: Path, document) -> Path:
    return atomic_write(path, _write_json(document))


def create_json_exclusive(path: Path, document) -> bool:
    """Write ``document`` to ``path`` only if no file has that name; True when this call created it.

    The document is written beside ``path`` and hard-linked into place: ``link`` refuses an existing
    name atomically, on local and NFS file systems alike, so among concurrent callers (on any hosts)
    exactly one wins, and readers never see a partial file. When an NFS retry of a link that did happen
    answers "exists", the temporary file's link count (2) still tells that it was ours.
    """
    with _written_beside(path, _write_json(document)) as tmp_path:
        try:
            os.link(tmp_path, path)
        except FileExistsError:
            return os.stat(tmp_path).st_nlink == 2
        return True


def read_json(path: Path):
    return json.loads(path.read_text())
