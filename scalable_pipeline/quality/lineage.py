"""Content lineage: a stage's data must derive from the raw content that is published for its hour."""


def lineage_problems(
    stage: str, derived_from: str, published_raw_digest: str | None, published_raw_version: str | None
) -> list[str]:
    """Why data of ``stage`` derived from raw content ``derived_from`` (a digest) does not belong with the
    published raw version of the hour (empty when it does)."""
    if published_raw_digest is None:
        return [f"{stage} derives from raw content {derived_from[:12]}, but no raw_volume version is published for this hour"]
    if derived_from != published_raw_digest:
        return [
            f"{stage} derives from raw content {derived_from[:12]}, but the published raw_volume ({published_raw_version}) "
            f"holds {published_raw_digest[:12]}: another run re-read the hour since; launch a new run of the partition"
        ]
    return []
