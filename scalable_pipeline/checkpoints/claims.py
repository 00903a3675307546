"""Claims between tickers on any hosts: leases made of create-if-absent files, no file locks.

``<folder>/<name>.<n>.json`` is the n-th claim on ``name`` (``owner``, ``claimed_at``, ``released_at``).
Whoever creates it holds ``name`` until it releases it or ``timeout`` seconds pass; then claim n+1 may be
taken, and since it is created only if absent, exactly one taker wins. A claim is never rewritten by
anyone but its owner, so a taker cannot steal a live claim by a race. The winner of claim n+1 removes
claims below n, so a name keeps at most two files. Locks held with ``flock`` do not hold across NFS
clients; ``link`` does (see ``create_json_exclusive``). A holder slower than the timeout can lose its
claim, and so can a taker that stalls between reading claim n and creating n+1 while two later claims
come and go: the timeout must exceed the longest piece of work done under a claim.
"""

from pathlib import Path

from scalable_pipeline.core.atomic import atomic_write_json, create_json_exclusive, read_json


def claim_is_free(claim: dict | None, now: float, timeout: float) -> bool:
    """No claim yet, released, or older than ``timeout`` (its holder crashed or hung)."""
    return claim is None or claim["released_at"] is not None or now >= claim["claimed_at"] + timeout


class Claims:
    def __init__(self, folder: Path, owner: str):
        self.folder = Path(folder)
        self.owner = owner

    def _numbered(self, name: str) -> list[tuple[int, Path]]:
        return sorted((int(path.suffixes[-2][1:]), path) for path in self.folder.glob(f"{name}.*.json"))

    def take(self, name: str, now: float, timeout: float) -> Path | None:
        """The new claim's path if ``name`` was free and this call won it; None if another ticker holds it."""
        numbered = self._numbered(name)
        number, latest = numbered[-1] if numbered else (0, None)
        try:
            if latest is not None and not claim_is_free(read_json(latest), now, timeout):
                return None
        except FileNotFoundError:  # pruned or cleared while we looked: someone else is at it
            return None
        path = self.folder / f"{name}.{number + 1:06d}.json"
        if not create_json_exclusive(path, {"owner": self.owner, "claimed_at": now, "released_at": None}):
            return None
        for _, stale in numbered[:-1]:  # keep the one before ours: a late taker that read it cannot create ours
            stale.unlink(missing_ok=True)
        return path

    def release(self, claim: Path, now: float) -> None:
        """Free ``name`` for the next taker (only the claim's owner calls this; a cleared claim stays cleared)."""
        try:
            atomic_write_json(claim, {**read_json(claim), "released_at": now})
        except FileNotFoundError:
            return

    def clear(self, name: str) -> None:
        """Remove every claim on ``name``, once nobody needs to claim it again."""
        for _, path in self._numbered(name):
            path.unlink(missing_ok=True)
