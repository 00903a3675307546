"""Turning gate verdicts into Dagster check results, and publishing only what passed its gates."""

from collections.abc import Iterator, Sequence

import dagster as dg

from scalable_pipeline.decisions.gates import GateVerdict
from scalable_pipeline.storage.versioned_store import StoredVersion, VersionedStore


def gate_spec(asset: str, name: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)


def check_result(asset: str, verdict: GateVerdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=verdict.name,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity(verdict.severity),
        description=verdict.description,
        metadata={"score": float(verdict.score), "threshold": float(verdict.threshold), **_plain(verdict.details)},
    )


def audit_then_publish(
    context: dg.OpExecutionContext, store: VersionedStore, staged: StoredVersion, verdicts: Sequence[GateVerdict]
) -> Iterator[dg.AssetCheckResult]:
    """Report every gate; publish ``staged`` only when no ERROR gate failed, else fail the step."""
    for verdict in verdicts:
        yield check_result(staged.asset, verdict)
    blocking = [v for v in verdicts if not v.passed and v.severity == "ERROR"]
    if blocking:
        published = store.published(staged.asset, staged.partition)
        raise dg.Failure(
            description=(
                f"{staged.asset} partition {staged.partition}: quality gate(s) failed: "
                + "; ".join(f"{v.name} ({v.description})" for v in blocking)
                + f". Version {staged.version} was not published; readers still get "
                + (f"version {published.version}." if published else "nothing (no version was ever published).")
            ),
            metadata={"staged_version": staged.version, "failed_gates": [v.name for v in blocking]},
        )
    store.publish(staged, context.run_id)


def _plain(details: dict) -> dict:
    return {key: value if isinstance(value, (int, float, str, bool)) else dg.MetadataValue.json(value) for key, value in details.items()}
