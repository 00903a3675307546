"""The raw volume-drop gate: an hour that held data before must not be replaced by an empty or collapsed one."""

from scalable_pipeline.quality.gates import GateVerdict

VOLUME_DROP_GATE = "raw_volume_drop"
DEFAULT_MAX_DROP = 0.9  # block when the hour lost more than 90% of the records it held


def volume_drop(records: int, previous: int | None, max_drop: float, allowed: bool) -> GateVerdict:
    """Score: the share of the published version's records that the new version lost (0 with no earlier data).

    Passes when the drop is at most ``max_drop``, or when ``allowed`` (an explicit override for this run).
    """
    drop = max(0.0, 1.0 - records / previous) if previous else 0.0
    before = f"{previous} in the published version" if previous else "no earlier records for this hour"
    description = f"records {records} vs {before}: drop {drop:.2%}; allowed at most {max_drop:.2%}"
    if allowed and drop > max_drop:
        description += " (quality.allow_volume_drop is set: published on purpose)"
    return GateVerdict(
        name=VOLUME_DROP_GATE,
        passed=allowed or drop <= max_drop,
        score=drop,
        threshold=max_drop,
        description=description,
        details={"records": records, "previous_records": previous or 0, "override": allowed},
    )
