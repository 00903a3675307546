"""When an hour is late, pure: its output must exist ``deadline_minutes`` after the hour ends.

An hour starting at ``h`` is due at ``h + 1 h + deadline``. It is late when it was not materialized by
then. The sensor judges each hour once, after its deadline: the hours due in ``(judged_until, now]``.
"""

from dataclasses import dataclass

HOUR_SECONDS = 3600.0


@dataclass(frozen=True)
class Due:
    hour_start: float  # epoch seconds
    deadline: float


def due_hours(judged_until: float, now: float, deadline_minutes: int, first_hour: float) -> list[Due]:
    """Hours (starting at or after ``first_hour``) whose deadline falls in ``(judged_until, now]``, oldest first."""
    offset = HOUR_SECONDS + deadline_minutes * 60.0
    start = max(first_hour, (judged_until - offset) // HOUR_SECONDS * HOUR_SECONDS)
    hours = []
    hour = start
    while hour + offset <= now:
        if hour + offset > judged_until:
            hours.append(Due(hour, hour + offset))
        hour += HOUR_SECONDS
    return hours


def late(due: list[Due], on_time: set[float]) -> list[Due]:
    """The due hours not materialized by their deadline (``on_time``: hour starts that were)."""
    return [hour for hour in due if hour.hour_start not in on_time]
