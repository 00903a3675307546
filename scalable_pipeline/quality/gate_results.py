"""Turning gate verdicts into Dagster check results, and publishing only what passed its gates.

A stage whose ERROR gate fails is rolled back: its staged version is deleted, the published pointer
stays on the last good version, and the rollback is recorded on the stage and on every stage after it
(their published versions are kept too). Earlier stages of the run that passed their own gates stay
published: each is whole and audited, and re-execution from failure loads them as its inputs.
"""

from collections.abc import Generator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import dagster as dg

from scalable_pipeline.core.asset_keys import StepContext, step_asset_key
from scalable_pipeline.publishing.rollback_log import RollbackRecord
from scalable_pipeline.publishing.rollbacks import record_rollback
from scalable_pipeline.publishing.versioned_store import StoredVersion, VersionedStore
from scalable_pipeline.quality.gates import GateVerdict, all_true
from scalable_pipeline.quality.lineage import lineage_problems
from scalable_pipeline.quality.resource import QualityResource, configured_severity, default_policy
from scalable_pipeline.quality.thresholds import with_derivation

# The pipeline's stages in order: a stage's rollback is recorded on it and on every stage after it.
PIPELINE_STAGES = ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output")


LINEAGE_GATE_DESCRIPTION = "Derives from the published raw version (its content digest, carried through every stage)."


def lineage_gate(name: str, store: VersionedStore, staged: StoredVersion) -> GateVerdict:
    """``staged`` derives from the raw content published for its hour now (0 problems)."""
    raw = store.published("raw_volume", staged.partition)
    problems = lineage_problems(staged.asset, staged.raw_digest, raw.raw_digest if raw else None, raw.version if raw else None)
    return all_true(name, problems, "content lineage")


SEVERITY_MEANING = {
    "ERROR": "blocking: a failure rolls the stage back and stops everything after it",
    "WARN": "not blocking: a failure is reported, the data is published",
}


def severity_note(severity: str) -> str:
    """What a gate's check description says of its severity."""
    return f" Severity: {severity} ({SEVERITY_MEANING[severity]}; set per gate in quality.gates)."


def gate_spec(asset: str | dg.AssetKey, name: str, description: str, severity: str | None = None) -> dg.AssetCheckSpec:
    """The check of a gate at ``severity`` (default: the gate's default): blocking when ERROR; its description says which."""
    severity = severity or default_policy(name).severity
    return dg.AssetCheckSpec(name, asset=asset, description=description + severity_note(severity), blocking=severity == "ERROR")


def pipeline_gate_spec(spec: dg.AssetCheckSpec, asset: dg.AssetKey, quality: Mapping[str, Any]) -> dg.AssetCheckSpec:
    """``spec`` (a ``gate_spec`` at its default severity) on ``asset``, at the severity a pipeline's ``quality`` settings give it."""
    description = (spec.description or "").removesuffix(severity_note(default_policy(spec.name).severity))
    return gate_spec(asset, spec.name, description, configured_severity(quality, spec.name))


def check_result(asset: str | dg.AssetKey, verdict: GateVerdict) -> dg.AssetCheckResult:
    """The verdict as a check result; its metadata always says how the threshold was derived."""
    verdict = with_derivation(verdict)
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=verdict.name,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity(verdict.severity),
        description=verdict.description,
        metadata={"score": float(verdict.score), "threshold": float(verdict.threshold), **_plain(verdict.details)},
    )


def audit_then_publish(
    context: StepContext,
    store: VersionedStore,
    staged: StoredVersion,
    verdicts: Sequence[GateVerdict],
    quality: QualityResource,
) -> Generator[dg.AssetCheckResult, None, StoredVersion]:
    """Report every gate at its configured severity; publish ``staged`` only when no ERROR gate
    failed (returns it as published), else roll the stage back and fail the step."""
    verdicts = [replace(v, severity=quality.policy(v.name).severity) for v in verdicts]
    for verdict in verdicts:
        yield check_result(step_asset_key(context, staged.asset), verdict)
    blocking = [v for v in verdicts if not v.passed and v.severity == "ERROR"]
    if blocking:
        published = roll_back_stage(context, store, staged, blocking)
        raise dg.Failure(
            description=(
                f"{staged.asset} partition {staged.partition}: quality gate(s) failed: "
                + "; ".join(f"{v.name} ({v.description})" for v in blocking)
                + f". Version {staged.version} was discarded; readers still get "
                + (f"version {published.version}." if published else "nothing (no version was ever published).")
            ),
            metadata={"staged_version": staged.version, "failed_gates": [v.name for v in blocking]},
        )
    return store.publish(staged, context.run.run_id)


def roll_back_stage(
    context: StepContext, store: VersionedStore, staged: StoredVersion, failed: Sequence[GateVerdict]
) -> StoredVersion | None:
    """Discard ``staged``, record the rollback on its asset and the assets after it; returns what readers get."""
    store.discard(staged)
    gates = [{"gate": v.name, "score": v.score, "threshold": v.threshold, "description": v.description} for v in failed]
    for asset in PIPELINE_STAGES[PIPELINE_STAGES.index(staged.asset) :]:
        kept = store.published(asset, staged.partition)
        record = RollbackRecord(
            kind="automatic",
            asset=asset,
            partition=staged.partition,
            run_id=context.run.run_id,
            restored_version=kept.version if kept else None,
            replaced_version=staged.version if asset == staged.asset else None,
            cause_asset=staged.asset,
            gate=failed[0].name,
            score=float(failed[0].score),
            threshold=float(failed[0].threshold),
            failed_gates=gates,
            reason=f"ERROR gate(s) {', '.join(v.name for v in failed)} of {staged.asset} failed",
        )
        record_rollback(context, store.root, record)
    return store.published(staged.asset, staged.partition)


def _plain(details: dict) -> dict:
    return {
        key: value if isinstance(value, (int, float, str, bool)) else dg.MetadataValue.json(value)
        for key, value in details.items()
    }
