"""Retry limits for chunk steps (resource key ``chunk_retries``): exponential backoff with jitter."""

import random

import dagster as dg
from pydantic import Field

from scalable_pipeline.decisions.retry import RetryLimits, retry_delay, should_retry


class ChunkRetryResource(dg.ConfigurableResource):
    """Transient errors in a chunk step are retried in the run, up to ``max_retries`` times."""

    max_retries: int = Field(default=2, ge=0, description="Retries after the first attempt of a chunk step.")
    delay_seconds: float = Field(default=0.2, ge=0, description="Wait before the first retry.")
    backoff_factor: float = Field(default=2.0, ge=1, description="Each further retry waits this many times longer.")
    max_delay_seconds: float = Field(default=30.0, ge=0, description="Longest wait between attempts.")
    jitter_fraction: float = Field(default=0.5, ge=0, le=1, description="Random spread of each wait, +/- this share.")

    @property
    def limits(self) -> RetryLimits:
        return RetryLimits(
            self.max_retries, self.delay_seconds, self.backoff_factor, self.max_delay_seconds, self.jitter_fraction
        )

    def should_retry(self, retry_number: int) -> bool:
        return should_retry(retry_number, self.limits)

    def delay(self, retry_number: int) -> float:
        return retry_delay(retry_number, self.limits, random.random())
