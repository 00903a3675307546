"""The landing sensor's memory of files, pure: which files are complete, waiting or done.

A file is complete when two looks (ticks) in a row see the same version: size, mtime (ns) and inode
unchanged. Each file in the cursor is ``[version, state]`` or, once judged valid, ``[version, state,
content digest]``: ``seen`` (looked at once), ``ready`` (complete and valid, held while the source's
circuit is open), ``launched`` or ``rejected`` (could not be moved to the quarantine). A file that
changes starts again at ``seen``; a file that is gone leaves the cursor.
"""

import json
from dataclasses import dataclass

SEEN, READY, LAUNCHED, REJECTED = "seen", "ready", "launched", "rejected"


@dataclass(frozen=True)
class Look:
    rel: str  # path relative to the landing folder, with '/'
    size: int
    mtime_ns: int
    inode: int

    @property
    def version(self) -> str:
        """The file's content version: a replaced or rewritten file gets a new one."""
        return f"{self.size}-{self.mtime_ns}-{self.inode}"


@dataclass(frozen=True)
class Sorted:
    complete: list[Look]  # unchanged since the last look, not judged yet
    ready: list[Look]  # judged valid earlier, waiting to be launched
    files: dict[str, list[str]]  # the next cursor's files, before this tick's verdicts


def sort_looks(previous: dict[str, list[str]], looks: list[Look]) -> Sorted:
    """Compare this tick's looks with the cursor's files."""
    complete, ready, files = [], [], {}
    for look in looks:
        entry = previous.get(look.rel, ["", ""])
        if entry[0] != look.version:
            files[look.rel] = [look.version, SEEN]
            continue
        files[look.rel] = list(entry)
        state = entry[1]
        if state == SEEN:
            complete.append(look)
        elif state == READY:
            ready.append(look)
    return Sorted(complete, ready, files)


def parse_files(cursor: str | None) -> dict[str, list[str]]:
    return json.loads(cursor)["files"] if cursor else {}


def files_cursor(files: dict[str, list[str]]) -> str:
    return json.dumps({"files": files}, separators=(",", ":"), sort_keys=True)
