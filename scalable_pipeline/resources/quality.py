"""Quality gate thresholds (resource key ``quality``)."""

import dagster as dg
from pydantic import Field


class QualityResource(dg.ConfigurableResource):
    max_invalid_ratio: float = Field(default=0.05, ge=0, le=1, description="Largest share of invalid rows that passes.")
    max_duplicate_ratio: float = Field(default=0.05, ge=0, le=1, description="Largest share of duplicate rows that passes.")
