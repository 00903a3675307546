"""The database sensor's cursor over load markers, pure.

Markers are read oldest ``ready_at`` first. ``ready_at`` is stamped when the loader inserts the marker,
not when it commits, so a marker may become visible after a later one was read: each read starts
``LAG_SECONDS`` before the newest ``ready_at`` seen, and the keys read inside that window (``recent``)
are skipped. A marker's key is its hour and ``ready_at``: a reloaded hour (new ``ready_at``) runs again.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

LAG_SECONDS = 300.0


@dataclass(frozen=True)
class MarkerCursor:
    after: str | None = None  # ISO time of the newest ready_at taken
    recent: dict[str, str] = field(default_factory=dict)  # key -> ready_at (ISO), taken within the lag

    def read_from(self) -> datetime | None:
        """Read markers whose ready_at is after this (None: all)."""
        return datetime.fromisoformat(self.after) - timedelta(seconds=LAG_SECONDS) if self.after else None

    def to_json(self) -> str:
        return json.dumps({"after": self.after, "recent": self.recent}, sort_keys=True)


def parse_marker_cursor(text: str | None) -> MarkerCursor:
    if not text:
        return MarkerCursor()
    saved = json.loads(text)
    return MarkerCursor(saved["after"], saved["recent"])


def take_markers(cursor: MarkerCursor, read: Sequence, limit: int) -> tuple[list, MarkerCursor]:
    """The first ``limit`` markers of ``read`` (oldest first) not taken before, and the cursor after them.
    A marker is anything with ``key`` and ``ready_at`` (a tz-aware datetime)."""
    new = [marker for marker in read if marker.key not in cursor.recent][:limit]
    if not new:
        return [], cursor
    newest = max(marker.ready_at for marker in new)
    if cursor.after:
        newest = max(newest, datetime.fromisoformat(cursor.after))
    taken = {**cursor.recent, **{marker.key: marker.ready_at.isoformat() for marker in new}}
    window = newest - timedelta(seconds=LAG_SECONDS)
    recent = {key: at for key, at in taken.items() if datetime.fromisoformat(at) > window}
    return new, MarkerCursor(newest.isoformat(), recent)
