"""Which strings are hourly partition keys: ``YYYY-MM-DD-HH:00``, a real hour, and an hour of a pipeline's partitions."""

import re
from datetime import datetime, timedelta, timezone

import dagster as dg

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
KEY_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}:\d{2}")


def partition_key_problem(key: object, partitions: dg.TimeWindowPartitionsDefinition | None = None) -> str | None:
    """Why ``key`` is not an hourly partition key (None when it is); given a pipeline's ``partitions``,
    also when they do not hold it (from the pipeline's first hour to the last complete hour)."""
    if not isinstance(key, str) or not KEY_SHAPE.fullmatch(key):
        return "expected the form YYYY-MM-DD-HH:00, e.g. 2026-01-05-10:00"
    try:
        hour = datetime.strptime(key, PARTITION_FORMAT)
    except ValueError:
        return "not a real date and time"
    if hour.minute:
        return f"not on the hour (the hour is {hour.strftime('%Y-%m-%d-%H:00')})"
    if partitions is not None and not partitions.has_partition_key(key):
        return f"outside the partitions, which run from {partitions.start.strftime(PARTITION_FORMAT)} to the last complete hour"
    return None


def partition_start(key: str) -> datetime:
    """The start (UTC) of the hour the partition key ``key`` names."""
    return datetime.strptime(key, PARTITION_FORMAT).replace(tzinfo=timezone.utc)


def last_ended_hour(now: datetime, first_hour: datetime) -> str | None:
    """The key of the last hour that has ended at ``now`` (None before ``first_hour`` has ended)."""
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return hour.strftime(PARTITION_FORMAT) if hour >= first_hour else None
