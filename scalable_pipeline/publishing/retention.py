"""Which stored versions of an asset partition to delete (retention of published-good versions, abandoned staging)."""

from collections.abc import Sequence


def version_written_ns(version: str) -> int:
    """Write time of a version id ``v<time_ns>-<run>`` (see ``new_version_id``)."""
    return int(version[1:].split("-", 1)[0])


def abandoned_versions(stored: Sequence[str], good: set[str], published: str | None, now_ns: int, grace_ns: int) -> list[str]:
    """Staged versions that were never published, older than the grace period (a run may still be auditing a
    younger one). Never ``published``."""
    return [v for v in stored if v not in good and v != published and now_ns - version_written_ns(v) > grace_ns]


def versions_to_delete(
    stored: Sequence[str], good: set[str], published: str | None, keep: int, now_ns: int, grace_ns: int
) -> list[str]:
    """Keep the published version and the newest ``keep - 1`` other good (once published) versions;
    delete older good versions and the abandoned ones (``abandoned_versions``). Never deletes ``published``.
    """
    newest_first = sorted(stored, key=version_written_ns, reverse=True)
    kept_good = [v for v in newest_first if v in good and v != published][: max(keep - (published is not None), 0)]
    abandoned = set(abandoned_versions(stored, good, published, now_ns, grace_ns))
    return [v for v in newest_first if (v in good and v not in kept_good and v != published) or v in abandoned]
