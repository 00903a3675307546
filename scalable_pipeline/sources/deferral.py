"""Whether a sensor launches new hours now or defers them while the source's circuit is open, pure.

``on_source_outage: fail`` launches regardless (runs fail fast and alert). ``defer`` holds new hours
while the circuit is open and cooling down; once a trial call is allowed the sensor makes it (its own
read of the source, through the breaker): success closes the circuit and the held hours are launched.
"""

from dataclasses import dataclass
from typing import Literal

from scalable_pipeline.sources.circuit_breaker import CLOSED, BreakerSettings, BreakerState, reopens_at

OutageMode = Literal["fail", "defer"]
LAUNCH, PROBE, DEFER = "launch", "probe", "defer"


@dataclass(frozen=True)
class Deferral:
    action: str  # LAUNCH: read the source and launch; PROBE: read it through the breaker (the trial) first; DEFER
    reason: str  # shown on the tick when hours are held


def deferral(mode: OutageMode, circuit: str, state: BreakerState, now: float, settings: BreakerSettings) -> Deferral:
    """What to do with new hours given the circuit's state at ``now``."""
    if mode == "fail" or state.status == CLOSED:
        return Deferral(LAUNCH, "")
    trial_at = reopens_at(state, settings)
    if now >= trial_at:
        return Deferral(PROBE, f"circuit '{circuit}' is {state.status}: trying the source once (last error: {state.last_error})")
    return Deferral(
        DEFER,
        f"circuit '{circuit}' is {state.status} after {len(state.failure_times)} source outage(s) "
        f"(last: {state.last_error}); new hours are deferred, next trial in {trial_at - now:.0f} s",
    )
