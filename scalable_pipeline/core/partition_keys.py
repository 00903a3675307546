"""Which strings are hourly partition keys: ``YYYY-MM-DD-HH:00``, a real hour, inside the partitions' range."""

import re
from datetime import datetime, timedelta

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
KEY_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}:\d{2}")


def partition_key_problem(key: object, first_hour: datetime, in_range: bool) -> str | None:
    """Why ``key`` is not an hourly partition key (None when it is); ``in_range`` says whether the
    partitions definition holds it (from ``first_hour`` to the last complete hour)."""
    if not isinstance(key, str) or not KEY_SHAPE.fullmatch(key):
        return f"expected the form YYYY-MM-DD-HH:00, e.g. {first_hour.strftime(PARTITION_FORMAT)}"
    try:
        hour = datetime.strptime(key, PARTITION_FORMAT)
    except ValueError:
        return "not a real date and time"
    if hour.minute:
        return f"not on the hour (the hour is {hour.strftime('%Y-%m-%d-%H:00')})"
    if not in_range:
        return f"outside the partitions, which run from {first_hour.strftime(PARTITION_FORMAT)} to the last complete hour"
    return None


def last_ended_hour(now: datetime, first_hour: datetime) -> str | None:
    """The key of the last hour that has ended at ``now`` (None before ``first_hour`` has ended)."""
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return hour.strftime(PARTITION_FORMAT) if hour >= first_hour else None
