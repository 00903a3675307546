"""Circuit breaker state transitions, pure: closed -> open -> half-open (one trial) -> closed or open.

After ``failure_threshold`` consecutive failures within ``window_seconds`` the circuit opens and calls
fail fast. Once ``cooldown_seconds`` have passed, one trial call is let through (half-open): success
closes the circuit, failure opens it again for another cool-down.
"""

from dataclasses import dataclass, replace

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 3
    window_seconds: float = 300.0
    cooldown_seconds: float = 60.0


@dataclass(frozen=True)
class BreakerState:
    status: str = CLOSED
    failure_times: tuple[float, ...] = ()  # consecutive failures still inside the window
    opened_at: float | None = None  # when it opened, or when the half-open trial started
    last_error: str = ""


def admit(state: BreakerState, now: float, settings: BreakerSettings) -> tuple[bool, BreakerState]:
    """Whether a call may go ahead now, and the state after deciding (a trial makes it half-open)."""
    if state.status == CLOSED:
        return True, state
    # Open, or half-open with a trial that never reported back within a cool-down: allow one trial.
    if now >= reopens_at(state, settings):
        return True, replace(state, status=HALF_OPEN, opened_at=now)
    return False, state


def record_success() -> BreakerState:
    """Any success closes the circuit and forgets the failures."""
    return BreakerState()


def record_failure(state: BreakerState, now: float, settings: BreakerSettings, error: str) -> BreakerState:
    if state.status == HALF_OPEN:
        return BreakerState(OPEN, (*state.failure_times, now), now, error)
    recent = (*tuple(t for t in state.failure_times if t > now - settings.window_seconds), now)
    if len(recent) >= settings.failure_threshold:
        return BreakerState(OPEN, recent, now, error)
    return BreakerState(CLOSED, recent, None, error)


def reopens_at(state: BreakerState, settings: BreakerSettings) -> float:
    """When the next trial call is allowed (meaningful when not closed)."""
    return (state.opened_at or 0.0) + settings.cooldown_seconds
