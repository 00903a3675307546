"""Branching by time: which of a pipeline's ``time_rules`` applies to an hour, and the settings it gives (pure)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class TimeRule:
    """Hours ``[start_hour, end_hour)`` UTC on ``days``; an end at or before the start wraps past midnight."""

    name: str
    start_hour: int
    end_hour: int
    days: tuple[str, ...] = WEEKDAYS
    scaling: Mapping[str, Any] = field(default_factory=dict)
    quality: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, hour_start: datetime) -> bool:
        hour = hour_start.hour
        if self.start_hour < self.end_hour:
            in_window = self.start_hour <= hour < self.end_hour
        else:  # e.g. 22-06: the night, across midnight (22-22 = the whole day)
            in_window = hour >= self.start_hour or hour < self.end_hour
        return in_window and WEEKDAYS[hour_start.weekday()] in self.days


@dataclass(frozen=True)
class ResolvedSettings:
    """The settings of one hour: the rule that matched (None = the entry's own) and the merged fields."""

    rule: str | None
    scaling: dict[str, Any]
    quality: dict[str, Any]


def resolve(
    rules: Sequence[TimeRule], hour_start: datetime, scaling: Mapping[str, Any], quality: Mapping[str, Any]
) -> ResolvedSettings:
    """The first rule matching ``hour_start`` overrides the base fields (``gates`` merged gate by gate)."""
    rule = next((r for r in rules if r.matches(hour_start)), None)
    if rule is None:
        return ResolvedSettings(None, dict(scaling), dict(quality))
    merged_quality = {**quality, **rule.quality}
    if "gates" in quality and "gates" in rule.quality:
        merged_quality["gates"] = {**quality["gates"], **rule.quality["gates"]}
    return ResolvedSettings(rule.name, {**scaling, **rule.scaling}, merged_quality)
