"""JSON-lines files: append one record durably, read all records back.

A crash in the middle of an append can leave a torn line. The next append starts on a fresh line and
readers skip lines that are not JSON, so one torn write never spoils the records after it.
"""

import json
import os
from pathlib import Path

from scalable_pipeline.core.file_lock import file_lock


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` as one line in a single write under the file's lock (writers never interleave), then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    # Under the lock: O_APPEND alone does not keep writers on different NFS clients apart.
    with file_lock(path.with_name(f".{path.name}.lock")), open(path, "ab+") as handle:
        if handle.tell() and not _ends_with_newline(handle):
            line = b"\n" + line  # close a line torn by an earlier crash
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: Path) -> list[dict]:
    """Every whole record in append order (torn lines skipped); none when the file does not exist."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _ends_with_newline(handle) -> bool:
    handle.seek(-1, os.SEEK_END)
    return handle.read(1) == b"\n"
