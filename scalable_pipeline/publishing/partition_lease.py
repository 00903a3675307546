"""Per-partition leases under the data root, so two runs of one partition never interleave outputs.

Layout: ``locks/<partition>.json`` names the run holding the partition; ``locks/<partition>.lock`` is
locked (``file_lock``) while the lease is read and changed. Every step of a run that writes the partition takes (or
keeps) the lease; the run's last writing step releases it. A run that finds the lease held by another
active run fails at once; a lease whose run has ended (failed, cancelled, or gone) is free to take.
"""

import time
from collections.abc import Callable
from pathlib import Path

from scalable_pipeline.core.atomic import atomic_write_json, read_json
from scalable_pipeline.core.file_lock import file_lock
from scalable_pipeline.core.paths import partition_dirname
from scalable_pipeline.publishing.lease_rules import BUSY, HOLD, lease_decision


class PartitionBusyError(RuntimeError):
    """Another active run holds the partition."""


class PartitionLeases:
    def __init__(self, root: Path | str):
        self.folder = Path(root) / "locks"

    def _paths(self, partition: str) -> tuple[Path, Path]:
        name = partition_dirname(partition)
        return self.folder / f"{name}.json", self.folder / f"{name}.lock"

    def holder(self, partition: str) -> str | None:
        lease, _ = self._paths(partition)
        return read_json(lease)["run_id"] if lease.exists() else None

    def release(self, partition: str, run_id: str) -> bool:
        """Drop the lease if ``run_id`` holds it; True when it did."""
        lease, lock = self._paths(partition)
        with file_lock(lock):
            if self.holder(partition) != run_id:
                return False
            lease.unlink()
            return True

    def acquire(self, partition: str, run_id: str, run_status: Callable[[str], str | None]) -> None:
        """Take or keep the lease for ``run_id``; ``run_status`` gives a run's status name (None: unknown)."""
        lease, lock = self._paths(partition)
        with file_lock(lock):
            holder = self.holder(partition)
            status = run_status(holder) if holder and holder != run_id else None
            decision = lease_decision(holder, run_id, status)
            if decision == BUSY:
                raise PartitionBusyError(
                    f"partition {partition} is being written by run {holder} ({status}); run {run_id} stops here so "
                    f"their outputs do not interleave. Launch it again once run {holder} has ended (if its process died, "
                    "run monitoring marks it failed; or terminate it in the UI)."
                )
            if not (decision == HOLD and holder == run_id):
                atomic_write_json(lease, {"run_id": run_id, "acquired_at": time.time(), "replaced": holder})
