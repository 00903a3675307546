"""The order source (resource key ``source``); the default is the deterministic synthetic generator."""

import dagster as dg
import pandas as pd
from pydantic import Field

from scalable_pipeline.sources.synthetic_orders import SyntheticOrdersSpec, generate_orders, hour_volume


class SyntheticOrderSource(dg.ConfigurableResource):
    """Simulated orders: volume follows the day profile times ``scale``, with injected defects."""

    scale: float = Field(default=1.0, ge=0, description="Volume multiplier (100 gives about a million records at peak).")
    duplicate_rate: float = Field(default=0.005, ge=0, le=1, description="Share of rows that resend an earlier order.")
    invalid_rate: float = Field(default=0.01, ge=0, le=1, description="Share of rows with an injected defect.")
    seed: int = Field(default=0, description="Same seed, hour and settings give the same records.")

    @property
    def spec(self) -> SyntheticOrdersSpec:
        return SyntheticOrdersSpec(self.scale, self.duplicate_rate, self.invalid_rate, self.seed)

    def describe(self) -> str:
        return f"synthetic orders (scale={self.scale}, seed={self.seed})"

    def expected_records(self, hour_start: pd.Timestamp) -> int:
        return hour_volume(hour_start, self.spec)

    def fetch_hour(self, hour_start: pd.Timestamp) -> pd.DataFrame:
        return generate_orders(hour_start, self.spec)
