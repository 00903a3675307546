from typing import ClassVar

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline.definitions import defs
from scalable_pipeline.events.webhook import WEBHOOK_ENV
from scalable_pipeline.scaling.history import HISTORY_RUNS, OVERHEAD_LOOKBACK, processed_history, step_overheads_in
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline.sources import landing_files, synthetic_orders
from scalable_pipeline.sources.circuit_breaker_resource import CircuitBreakerResource
from scalable_pipeline_tests.webhook_receiver import Receiver

PEAK_PARTITION = "2026-01-05-10:00"
OFF_PEAK_PARTITION = "2026-01-05-03:00"
PIPELINE_ASSETS = ["raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Every test gets its own data root."""
    root = tmp_path / "data"
    monkeypatch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(root))
    return root


@pytest.fixture
def instance():
    """An in-memory instance: fast (no SQLite fsync per event); persistence tests make their own."""
    with dg.DagsterInstance.ephemeral() as test_instance:
        yield test_instance


@pytest.fixture
def sqlite_instance():
    """A SQLite-backed instance (run-sharded event log), as a deployment has."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def receiver(monkeypatch):
    """A local webhook that the alert sensors post to (``$SCALABLE_PIPELINE_ALERT_WEBHOOK``)."""
    server = Receiver()
    monkeypatch.setenv(WEBHOOK_ENV, server.url)
    yield server
    server.close()


def shipped_resources(**overrides) -> dict:
    """The resources the shipped ``Definitions`` bind (what production runs with), with the test's ``overrides``."""
    return {**defs.resources, **overrides}


def materialize_hour(partition_key, instance, raise_on_error=True, **resource_overrides) -> dg.ExecuteInProcessResult:
    """Run the shipped main job (its four assets and their checks) for one hour, in process: its own resources,
    four chunks and the test's overrides."""
    return defs.resolve_job_def(JOB_NAME).execute_in_process(
        partition_key=partition_key,
        resources={"scaling": ScalingResource(chunk_count=4), **resource_overrides},
        instance=instance,
        raise_on_error=raise_on_error,
    )


def materialize_raw(instance, partition_key=PEAK_PARTITION, **resource_overrides) -> dg.ExecuteInProcessResult:
    """Materialize raw_volume alone for one hour, in process, with the shipped resources; failures are returned."""
    return dg.materialize(
        [defs.get_assets_def("raw_volume")],
        partition_key=partition_key,
        resources=shipped_resources(**resource_overrides),
        instance=instance,
        raise_on_error=False,
    )


def step_failure(result: dg.ExecuteInProcessResult) -> dg.DagsterEvent:
    """The run's first STEP_FAILURE event."""
    return next(event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the first step failure's error and of each error it was raised from (no stack traces):
    Dagster wraps an exception raised in an op, so its own message is in a cause."""
    error, messages = step_failure(result).step_failure_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "".join(messages)


def materialization_metadata(result, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset]
    assert len(events) == 1, f"expected one materialization of {asset}, got {len(events)}"
    return {key: value.value for key, value in events[0].materialization.metadata.items()}


@pytest.fixture
def small_blocks(monkeypatch) -> int:
    """Blocks of 1,000 rows, so a scale-1 hour comes in about ten: the synthetic generator's (they are part of
    its records' identity) and the landing-file reader's (CSV parsed 32 KiB at a time)."""
    monkeypatch.setattr(synthetic_orders, "BLOCK_ROWS", 1_000)
    monkeypatch.setattr(landing_files, "BLOCK_ROWS", 1_000)
    monkeypatch.setattr(landing_files, "CSV_BLOCK_BYTES", 32 * 2**10)
    return 1_000


class Clock:
    """A clock injected into a sensor or schedule; the test sets ``clock.now``."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Crash(Exception):
    """The process dying at a chosen point."""


class ManualClockBreaker(CircuitBreakerResource):
    """The circuit breaker on a clock the test sets and moves, ``ManualClockBreaker.seconds[0]`` (a class
    attribute: Dagster rebuilds resources from config; shared by every test, so each sets it first)."""

    seconds: ClassVar[list[float]] = [0.0]

    def now(self) -> float:
        return self.seconds[0]


def order_table(hour_start: pd.Timestamp, rows: int, **columns: pa.Array) -> pa.Table:
    """``rows`` valid orders five minutes into the hour (ids 1, 2, ...), with ``columns`` replaced."""
    return pa.table(
        {
            "order_id": pa.array(range(1, rows + 1), pa.int64()),
            "event_time": pa.array([hour_start + pd.Timedelta(minutes=5)] * rows, pa.timestamp("us", tz="UTC")),
            "customer_id": pa.array([7] * rows, pa.int64()),
            "region": pa.array(["north"] * rows),
            "amount": pa.array([12.5] * rows),
            "status": pa.array(["paid"] * rows),
            **columns,
        }
    )


def measured_step_overheads(instance: dg.DagsterInstance, executor: str, key_prefix: tuple[str, ...] = ()) -> list[float]:
    """The step overheads the scaling resource reads: its history query, then ``step_overheads_in``."""
    return step_overheads_in(processed_history(instance, OVERHEAD_LOOKBACK * HISTORY_RUNS, key_prefix), executor)
