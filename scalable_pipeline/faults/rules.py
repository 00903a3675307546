"""When a simulated fault fires (recovery drills): which chunk, which attempt, which run."""

from dataclasses import dataclass
from typing import Literal

FaultMode = Literal["raise", "kill", "slow", "pause"]


@dataclass(frozen=True)
class FaultPlan:
    """The ``faults`` resource's settings; the defaults inject nothing."""

    fail_chunks: tuple[int, ...] = ()
    mode: FaultMode = "raise"
    slow_seconds: float = 5.0  # mode slow: the delay; mode pause: the longest wait for the release file
    release_file: str | None = None  # mode pause: the step waits until this file exists
    fail_first_attempts: int | None = None  # None: every attempt fails; 1: only the first (a transient fault)
    fail_reexecutions: bool = False
    fail_source: bool = False


def chunk_fault_fires(plan: FaultPlan, chunk_index: int, retry_number: int, is_reexecution: bool) -> bool:
    """Whether the fault hits this attempt (``retry_number`` 0 = first) of this chunk in this run."""
    if chunk_index not in plan.fail_chunks:
        return False
    if is_reexecution and not plan.fail_reexecutions:
        return False
    return plan.fail_first_attempts is None or retry_number < plan.fail_first_attempts
