"""Quality gate thresholds and severities (resource key ``quality``)."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from scalable_pipeline.quality.gates import Severity
from scalable_pipeline.quality.thresholds import GatePolicy, settings_problems
from scalable_pipeline.quality.volume_anomaly import DEFAULT_VOLUME_POLICY, VOLUME_ANOMALY_GATE

DEFAULT_POLICIES = {VOLUME_ANOMALY_GATE: DEFAULT_VOLUME_POLICY}


def default_policy(check: str) -> GatePolicy:
    """The gate's policy when nothing configures it."""
    return DEFAULT_POLICIES.get(check, GatePolicy())


def configured_severity(quality: Mapping[str, Any], check: str) -> str:
    """The gate's severity under a pipeline's ``quality`` settings (its validated entry in the pipelines file)."""
    severity = quality.get("gates", {}).get(check, {}).get("severity")
    return Severity(severity).value if severity else default_policy(check).severity


class GateSettings(dg.Config):
    """Overrides for one gate (see ``GatePolicy``); fields left unset keep the gate's default."""

    severity: Severity | None = Field(default=None, description="WARN reports; ERROR blocks and rolls back.")
    threshold: float | None = Field(default=None, description="Static threshold (for the ratio gates it wins over max_*_ratio).")
    adaptive: bool | None = Field(default=None, description="Derive the threshold from the gate's history.")
    history: int | None = Field(default=None, ge=1, description="Adaptive: how many past values (K) to use.")
    k: float | None = Field(default=None, ge=0, description="Adaptive: threshold = mean + k * stddev.")
    min_history: int | None = Field(default=None, ge=1, description="Adaptive: static threshold until this many values exist.")
    floor: float | None = Field(default=None, description="Adaptive: lowest threshold.")
    ceiling: float | None = Field(default=None, description="Adaptive: highest threshold (default: the static threshold).")


class QualityResource(dg.ConfigurableResource):
    max_invalid_ratio: float = Field(default=0.05, ge=0, le=1, description="Largest share of invalid rows that passes.")
    max_duplicate_ratio: float = Field(default=0.05, ge=0, le=1, description="Largest share of duplicate rows that passes.")
    allow_volume_drop: bool = Field(
        default=False,
        description="Publish an hour that lost most of its records (or all: an empty hour) on purpose; "
        "set it for that run only. Otherwise the raw_volume_drop gate blocks it.",
    )
    gates: dict[str, GateSettings] = Field(
        default_factory=dict,
        description=(
            "Per-gate settings keyed by check name (check names are unique across assets). Gates with a built-in "
            "threshold of 0 problems (raw_schema, chunk_plan_covers_raw, chunks_complete, reconciliation, unique_order_id) "
            "take only severity."
        ),
    )

    @field_validator("gates")
    @classmethod
    def known_settings(cls, gates: dict[str, GateSettings]) -> dict[str, GateSettings]:
        """Reject unknown gate names and settings a gate does not use."""
        problems = settings_problems({name: set(settings.model_dump(exclude_none=True)) for name, settings in gates.items()})
        if problems:
            raise ValueError("; ".join(problems))
        return gates

    def policy(self, check: str) -> GatePolicy:
        """The gate's default policy with this resource's settings for it applied."""
        base = default_policy(check)
        settings = self.gates.get(check)
        if settings is None:
            return base
        overrides = settings.model_dump()
        if settings.severity is not None:
            overrides["severity"] = settings.severity.value
        return base.merged(overrides)
