"""Exponential backoff with jitter: how long to wait before the next attempt of something that failed."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryLimits:
    delay_seconds: float = 0.2
    backoff_factor: float = 2.0
    max_delay_seconds: float = 30.0
    jitter_fraction: float = 0.5  # the delay is drawn from delay * [1 - j, 1 + j]


def retry_delay(retry_number: int, limits: RetryLimits, unit_random: float) -> float:
    """Exponential backoff with jitter before retry ``retry_number + 1``; ``unit_random`` in [0, 1)."""
    base = min(limits.max_delay_seconds, limits.delay_seconds * limits.backoff_factor**retry_number)
    spread = 1.0 + limits.jitter_fraction * (2.0 * unit_random - 1.0)
    return max(0.0, round(base * spread, 3))
