"""Open a file only if it is a regular file: never a folder, a pipe, a device or (at the last step) a symlink."""

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from scalable_pipeline.core.atomic import atomic_write


def open_regular_file(path: Path) -> BinaryIO | None:
    """``path`` opened for binary reading, or None when it is not a regular file.

    ``O_NOFOLLOW`` refuses a symlink swapped in after the caller resolved the path, ``O_NONBLOCK``
    keeps a pipe swapped in from blocking the open, and ``fstat`` judges what was actually opened.
    """
    if path.is_symlink() or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:  # became a symlink meanwhile
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def copy_regular_file(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` atomically if it is a regular file; whether it was copied."""
    handle = open_regular_file(source)
    if handle is None:
        return False

    def write(tmp: Path) -> None:
        with tmp.open("wb") as out:
            shutil.copyfileobj(handle, out)

    with handle:
        atomic_write(target, write)
    return True
