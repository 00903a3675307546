"""An exclusive lock between processes on any hosts that share the data root: a POSIX record lock.

``fcntl.lockf`` (``F_SETLKW`` over the whole file) is the lock network file systems implement across
clients: NFSv4 in the protocol, NFSv3 through lockd (NLM), and CephFS, Lustre, GPFS. ``flock`` is
emulated by Linux NFS clients but stays local to one kernel on others (SMB/CIFS without Unix
extensions, many FUSE mounts), so it is not used. A record lock belongs to the process, not to the
open file: two threads of one process would both get it, and closing any descriptor of the file drops
it. So a process-wide lock per path serialises the threads first, and only this module opens lock files.
On NFS, taking the lock also revalidates the client's cache and releasing it flushes writes, so what
one host wrote under the lock is what the next holder reads.
"""

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(str(path.resolve()), threading.Lock())


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; waits for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock(path), open(path, "a") as handle:
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_UN)
