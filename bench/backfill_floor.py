"""The floor of ``bench/backfill_speed.py``: a job of two hourly-partitioned assets that do nothing, in a code location
of its own (``bench/backfill_floor_workspace.yaml``). A backfill of it costs what Dagster itself costs per run: the
queue, the run's process, two steps and their events. The steps run in the run's process: under Dagster's default
executor each would start an interpreter of its own, slower than the pipeline's preloaded step processes."""

import dagster as dg

HOURS = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00")


@dg.asset(partitions_def=HOURS)
def floor_first() -> None:
    """Nothing."""


@dg.asset(partitions_def=HOURS, deps=[floor_first])
def floor_second() -> None:
    """Nothing, after ``floor_first``."""


floor_job = dg.define_asset_job(
    "backfill_floor", selection=[floor_first, floor_second], partitions_def=HOURS, executor_def=dg.in_process_executor
)
defs = dg.Definitions(assets=[floor_first, floor_second], jobs=[floor_job])
