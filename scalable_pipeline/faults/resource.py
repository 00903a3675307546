"""Fault injection for recovery drills (resource key ``faults``): simulated failures, off by default.

``mode``: ``raise`` (the chunk step raises), ``kill`` (the step's process dies at once with SIGKILL, as
a killed worker would; under the in-process executor that is the whole run), ``slow`` (the step
sleeps ``slow_seconds``, then works normally), ``pause`` (the step waits until ``release_file`` exists,
at most ``slow_seconds``: a drill holds a run at a known point and lets it go on an event). By default a fault hits every attempt of the chosen
chunks in the original run and never in its re-executions, so "re-execute from failure" recovers.
"""

import os
import signal
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from scalable_pipeline.core.settings import from_fields
from scalable_pipeline.faults.rules import FaultMode, FaultPlan, chunk_fault_fires
from scalable_pipeline.sources.errors import SourceUnavailableError


class SimulatedFault(RuntimeError):
    """An error raised on purpose by the ``faults`` resource."""


class SimulatedSourceOutage(SimulatedFault, SourceUnavailableError):
    """A simulated source outage: an ``OSError``, so the source's circuit breaker counts it."""


class FaultInjectionResource(dg.ConfigurableResource):
    """Simulated failures for drills; with the defaults nothing is injected."""

    fail_chunks: list[int] = Field(
        default=list(FaultPlan.fail_chunks), description="Chunk indices whose steps fail (empty: no chunk fault)."
    )
    mode: FaultMode = Field(default=FaultPlan.mode, description="raise, kill (SIGKILL the step process), slow or pause.")
    slow_seconds: float = Field(
        default=FaultPlan.slow_seconds, ge=0, description="Delay of mode slow; longest wait of mode pause."
    )
    release_file: str | None = Field(
        default=FaultPlan.release_file, description="Mode pause: the step waits until this file exists."
    )
    fail_first_attempts: int | None = Field(
        default=FaultPlan.fail_first_attempts,
        ge=1,
        description="Only the first N attempts of a chunk fail (a transient fault); unset: every attempt.",
    )
    fail_reexecutions: bool = Field(
        default=FaultPlan.fail_reexecutions, description="Also inject into re-executions of the faulted run."
    )
    fail_source: bool = Field(
        default=FaultPlan.fail_source, description="Every source fetch raises (a source outage; trips the circuit breaker)."
    )

    @property
    def plan(self) -> FaultPlan:
        return from_fields(FaultPlan, self, fail_chunks=tuple(self.fail_chunks))

    def before_chunk(self, context: dg.OpExecutionContext, chunk_index: int) -> None:
        """Inject the configured fault into this attempt of the chunk step, if it is chosen."""
        is_reexecution = context.run.parent_run_id is not None
        if not chunk_fault_fires(self.plan, chunk_index, context.retry_number, is_reexecution):
            return
        context.log.warning(f"faults: simulated {self.mode} in chunk {chunk_index} (attempt {context.retry_number + 1})")
        if self.mode == "slow":
            time.sleep(self.slow_seconds)
        elif self.mode == "pause":
            wait_for_file(Path(self.release_file or ""), self.slow_seconds)
        elif self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            raise SimulatedFault(f"simulated failure of chunk {chunk_index} (faults resource, mode raise)")

    def before_source_fetch(self) -> None:
        if self.fail_source:
            raise SimulatedSourceOutage("simulated source outage (faults resource, fail_source)")


def wait_for_file(path: Path, longest_seconds: float) -> None:
    """Wait until ``path`` exists (another process creates it), at most ``longest_seconds``."""
    deadline = time.monotonic() + longest_seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
