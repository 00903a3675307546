"""A circuit breaker whose state lives in a JSON file under the data root, shared by every run.

Layout: ``circuit_breakers/<name>.json`` (state) and ``<name>.lock`` (serialises read-modify-write
between concurrent steps). Wrap any external call with ``DurableCircuitBreaker(...).call(fn)``; only
outages (``OSError``) count towards opening the circuit.
"""

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from scalable_pipeline.core.atomic import atomic_write_json, read_json
from scalable_pipeline.core.file_lock import file_lock
from scalable_pipeline.sources.circuit_breaker import (
    BreakerSettings,
    BreakerState,
    admit,
    record_failure,
    record_success,
    reopens_at,
)

T = TypeVar("T")


class CircuitOpenError(RuntimeError):
    """Raised instead of calling a dependency whose circuit is open."""


class DurableCircuitBreaker:
    def __init__(self, root: Path | str, name: str, settings: BreakerSettings, clock: Callable[[], float] = time.time):
        folder = Path(root) / "circuit_breakers"
        self.name, self.settings, self.clock = name, settings, clock
        self.state_path, self.lock_path = folder / f"{name}.json", folder / f"{name}.lock"

    def state(self) -> BreakerState:
        if not self.state_path.exists():
            return BreakerState()
        data = read_json(self.state_path)
        return BreakerState(**{**data, "failure_times": tuple(data["failure_times"])})

    def _save(self, state: BreakerState) -> None:
        atomic_write_json(self.state_path, asdict(state))

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` unless the circuit is open; record its outcome for every later run.

        Only an outage counts as a failure: an ``OSError`` (unreachable, refused, timed out, an I/O error;
        a source raises ``SourceUnavailableError``). Any other error (bad data, a bug) means the dependency
        answered, so it counts as a success, then propagates.
        """
        with file_lock(self.lock_path):
            allowed, state = admit(self.state(), self.clock(), self.settings)
            self._save(state)
        if not allowed:
            wait = max(0.0, reopens_at(state, self.settings) - self.clock())
            raise CircuitOpenError(
                f"circuit '{self.name}' is open after {len(state.failure_times)} consecutive failures "
                f"(last: {state.last_error}); failing fast without calling it. A trial call is allowed in "
                f"{wait:.0f} s (cool-down {self.settings.cooldown_seconds:.0f} s). State: {self.state_path}"
            )
        try:
            result = fn()
        except OSError as error:
            message = f"{type(error).__name__}: {error}"[:300]
            self._update(lambda state: record_failure(state, self.clock(), self.settings, message))
            raise
        except Exception:
            self._update(lambda _: record_success())
            raise
        self._update(lambda _: record_success())
        return result

    def _update(self, change: Callable[[BreakerState], BreakerState]) -> None:
        """Read, change and save the state under the lock (concurrent steps share it)."""
        with file_lock(self.lock_path):
            self._save(change(self.state()))
