"""Hours a schedule deferred while the source's circuit was open, until a sensor launches them.

``deferred_hours/<pipeline>.json`` under the pipeline's data root maps each partition to when it was
deferred; it is read and changed under ``<pipeline>.lock`` (the schedule and the sensor tick at once).
"""

from collections.abc import Iterable
from pathlib import Path

from scalable_pipeline.core.atomic import atomic_write_json, read_json
from scalable_pipeline.core.file_lock import file_lock
from scalable_pipeline.core.paths import under_root


class DeferredHours:
    def __init__(self, root: Path | str, pipeline: str):
        self.path = under_root(root, "deferred_hours", f"{pipeline}.json")
        self.lock = self.path.with_suffix(".lock")

    def all(self) -> dict[str, float]:
        """Partition -> when it was deferred, oldest partition first."""
        return dict(sorted(read_json(self.path).items())) if self.path.exists() else {}

    def add(self, partition: str, now: float) -> None:
        with file_lock(self.lock):
            atomic_write_json(self.path, {**self.all(), partition: self.all().get(partition, now)})

    def remove(self, partitions: Iterable[str]) -> None:
        gone = set(partitions)
        with file_lock(self.lock):
            atomic_write_json(self.path, {key: at for key, at in self.all().items() if key not in gone})
