"""The pipelines file: its model, and validation that names the file, the pipeline entry and the field.

Every mistake fails loading with one ``PipelineConfigError``; ``dagster definitions validate`` shows it.
"""

import difflib
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

import dagster as dg
import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scalable_pipeline.core.constants import CHUNK_POOL, DEFAULT_START
from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.pipelines.time_rules import WEEKDAYS, TimeRule
from scalable_pipeline.quality.resource import QualityResource
from scalable_pipeline.scaling.pools import PoolUse, pool_limits
from scalable_pipeline.scaling.resource import ScalingResource
from scalable_pipeline.sources.resource import LandingFileSource, OrderSource, PostgresOrderSource, SyntheticOrderSource

CONFIG_ENV = "SCALABLE_PIPELINE_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "pipelines.yaml"
# Dagster's rule for job, asset key and pool names.
DAGSTER_NAME = re.compile(r"^[A-Za-z0-9_]+$")
SOURCE_KINDS: dict[str, type[OrderSource]] = {
    "synthetic": SyntheticOrderSource,
    "landing": LandingFileSource,
    "postgres": PostgresOrderSource,
}
# A backfill's hours per run: a day by default; a week at most (a run's event log and its dynamic steps grow with it).
DEFAULT_BACKFILL_HOURS_PER_RUN = 24
MAX_BACKFILL_HOURS_PER_RUN = 168
HOURS = re.compile(r"^(\d{1,2})-(\d{1,2})$")
# Safe loading by libyaml when PyYAML has it (its wheels do): about ten times faster than the pure-Python loader.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Scaling fields the factory sets from the entry (its pool and reserved pool), not settable under scaling.
ENTRY_SCALING_FIELDS = ("pool", "reserved_pool")


class PipelineConfigError(ValueError):
    """A mistake in the pipelines file; the message names the file, the entry and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TimeRuleEntry(_Strict):
    name: str = Field(description="Shown in metadata as time_rule.")
    hours: str = Field(description='UTC hours "start-end", end excluded; "22-6" wraps past midnight.')
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS), description="mon ... sun (default every day).")
    scaling: dict[str, Any] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)


class FreshnessEntry(_Strict):
    deadline_minutes: int = Field(ge=1, description="consolidated_output is due this long after each hour ends.")


class PipelineEntry(_Strict):
    name: str
    key_prefix: list[str] | None = None
    source: dict[str, Any] | None = None
    start: str = DEFAULT_START
    schedule: str | None = None
    pool: str = CHUNK_POOL
    priority: int = 0
    reserved_slots: int = Field(default=0, ge=0)
    scaling: dict[str, Any] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)
    time_rules: list[TimeRuleEntry] = Field(default_factory=list)
    freshness: FreshnessEntry | None = None
    on_source_outage: Literal["fail", "defer"] = "defer"
    backfill_hours_per_run: int = Field(
        default=DEFAULT_BACKFILL_HOURS_PER_RUN, ge=1, le=MAX_BACKFILL_HOURS_PER_RUN, description="Hours of a backfill per run."
    )


class PipelinesFile(_Strict):
    pools: dict[str, int] = Field(default_factory=dict, description="Chunk slots of each shared pool (its capacity).")
    pipelines: list[PipelineEntry] = Field(min_length=1)


@dataclass(frozen=True)
class PipelineSpec:
    """One validated pipeline entry, with its defaults filled in."""

    name: str
    key_prefix: tuple[str, ...]
    source: Mapping[str, Any] | None
    start: str
    schedule: str | None
    pool: str
    priority: int
    reserved_slots: int
    scaling: Mapping[str, Any]
    quality: Mapping[str, Any]
    time_rules: tuple[TimeRule, ...]
    freshness_minutes: int | None = None  # deadline of consolidated_output after each hour (docs/quality.md, late hours)
    on_source_outage: Literal["fail", "defer"] = "defer"
    backfill_hours_per_run: int = (
        DEFAULT_BACKFILL_HOURS_PER_RUN  # a backfill's runs take up to this many hours each (BackfillPolicy.multi_run)
    )

    @property
    def pool_use(self) -> PoolUse:
        return PoolUse(self.name, self.pool, self.reserved_slots)

    @functools.cached_property
    def partitions_def(self) -> dg.HourlyPartitionsDefinition:
        """The pipeline's hours: from its ``start`` to the last complete hour."""
        return dg.HourlyPartitionsDefinition(start_date=self.start)


@dataclass(frozen=True)
class PipelinesConfig:
    path: Path
    pools: Mapping[str, int]
    pipelines: tuple[PipelineSpec, ...]

    @property
    def pool_limits(self) -> dict[str, int]:
        return pool_limits(self.pools, [spec.pool_use for spec in self.pipelines])


class UnknownPipeline(ValueError):
    """A pipeline name the pipelines file does not have."""


def spec_named(pipelines: Sequence[PipelineSpec], name: str) -> PipelineSpec | None:
    """The entry of ``pipelines`` named ``name`` (None when there is none)."""
    return next((spec for spec in pipelines if spec.name == name), None)


def find_spec(path: Path, name: str) -> PipelineSpec:
    """The entry named ``name`` of the pipelines file at ``path`` (``UnknownPipeline`` names the ones it has)."""
    specs = load_pipelines(path).pipelines
    spec = spec_named(specs, name)
    if spec is None:
        raise UnknownPipeline(f"no pipeline {name!r} in {path}; it has {', '.join(spec.name for spec in specs)}")
    return spec


def config_path(environ: Mapping[str, str]) -> Path:
    """``$SCALABLE_PIPELINE_CONFIG``, else the shipped ``scalable_pipeline/pipelines.yaml``."""
    return Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else DEFAULT_CONFIG_PATH


def load_pipelines(path: Path) -> PipelinesConfig:
    """Read and validate the pipelines file at ``path``."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    except (OSError, yaml.YAMLError) as error:
        raise PipelineConfigError(f"{path}: cannot read the pipelines file: {error}") from error
    return parse_pipelines(raw, path)


def parse_pipelines(raw: object, path: Path) -> PipelinesConfig:
    """Validate the parsed YAML ``raw`` of the file ``path``."""
    try:
        parsed = PipelinesFile.model_validate(raw)
    except ValidationError as error:
        first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")  # an unknown key explains the rest
        loc = tuple(first["loc"])
        message = _unknown_field(loc[-1], _model_at(loc).model_fields) if first["type"] == "extra_forbidden" else first["msg"]
        raise _error(path, raw, loc, message) from error
    specs = []
    for index, entry in enumerate(parsed.pipelines):
        try:
            specs.append(_spec(entry))
        except _FieldProblem as problem:
            raise _error(path, raw, ("pipelines", index, *problem.field), problem.message) from problem
    _check_unique(path, raw, specs)
    for field, pool_problem in _pool_problems(parsed.pools, specs):
        raise _error(path, raw, field, pool_problem)
    return PipelinesConfig(path, dict(parsed.pools), tuple(specs))


class _FieldProblem(Exception):
    def __init__(self, field: Sequence[str | int], message: str):
        super().__init__(message)
        self.field, self.message = tuple(field), message


def _error(path: Path, raw: object, loc: tuple, message: str) -> PipelineConfigError:
    """One message: file, pipeline entry (by name when it has one) and field."""
    where = ""
    if len(loc) >= 2 and loc[0] == "pipelines" and isinstance(loc[1], int):
        entries = raw.get("pipelines") if isinstance(raw, dict) else None
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"pipeline entry {loc[1] + 1}" + (f" ({name!r})" if isinstance(name, str) else "") + ": "
        loc = loc[2:]
    field = ".".join(str(part) for part in loc) or "(top level)"
    return PipelineConfigError(f"{path}: {where}field {field!r}: {message}")


def _model_at(loc: tuple) -> type[BaseModel]:
    """The model of the file that holds the field at ``loc`` (list indexes stay in the list's model)."""
    model: type[BaseModel] = PipelinesFile
    for part in loc[:-1]:
        if isinstance(part, str):
            annotation = model.model_fields[part].annotation
            model = next(
                arg for arg in get_args(annotation) or (annotation,) if isinstance(arg, type) and issubclass(arg, BaseModel)
            )
    return model


def _unknown_field(name: str | int, fields: Iterable[str]) -> str:
    """The problem of the unknown field ``name`` where ``fields`` are valid: the closest one, else all of them."""
    valid = list(fields)
    close = difflib.get_close_matches(str(name), valid, n=1)
    return f"unknown field; did you mean {close[0]!r}?" if close else f"unknown field; use one of {', '.join(valid)}"


def _dagster_name(field: Sequence[str | int], value: str) -> str:
    if not DAGSTER_NAME.match(value):
        raise _FieldProblem(field, f"{value!r} is not a valid Dagster name (letters, digits and _ only)")
    return value


@functools.cache
def _fields_of(resource: type[dg.ConfigurableResource]) -> type[BaseModel]:
    """``resource``'s fields and validators with pydantic's own ``__init__``: checks values without building the
    resource (building one infers its Dagster config schema, about 3 ms; 50 pipelines check a few hundred)."""
    return type(f"{resource.__name__}Fields", (resource,), {"__init__": BaseModel.__init__, "__module__": __name__})


def _settings(field: Sequence[str | int], resource: type[dg.ConfigurableResource], values: Mapping[str, Any]) -> dict:
    """``values`` checked against the fields of ``resource`` (unknown names and wrong types are problems)."""
    from_entry = sorted(set(values) & set(ENTRY_SCALING_FIELDS)) if resource is ScalingResource else []
    if from_entry:
        raise _FieldProblem([*field, from_entry[0]], "set by the pipeline entry (pool, reserved_slots), not under scaling")
    unknown = sorted(set(values) - set(resource.model_fields))
    if unknown:
        settable = [name for name in resource.model_fields if resource is not ScalingResource or name not in ENTRY_SCALING_FIELDS]
        raise _FieldProblem([*field, unknown[0]], _unknown_field(unknown[0], settable))
    try:
        _fields_of(resource).model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        raise _FieldProblem([*field, *first["loc"]], first["msg"]) from error
    return dict(values)


def _source(source: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if source is None:
        return None
    kind = source.get("kind")
    if kind not in SOURCE_KINDS:
        raise _FieldProblem(["source", "kind"], f"{kind!r} is not a source kind; use one of {', '.join(SOURCE_KINDS)}")
    settings = {k: v for k, v in source.items() if k != "kind"}
    if kind == "postgres":  # the URL only as an environment variable's name: never in the file
        if not isinstance(settings.get("url_env"), str):
            raise _FieldProblem(["source", "url_env"], "name the environment variable that holds the PostgreSQL URL")
        settings["url"] = dg.EnvVar(settings.pop("url_env"))
    return {"kind": kind, **_settings(["source"], SOURCE_KINDS[kind], settings)}


def _start(start: str) -> str:
    try:
        parsed = datetime.strptime(start, PARTITION_FORMAT)
    except ValueError as error:
        raise _FieldProblem(["start"], f"{start!r} is not an hour as YYYY-MM-DD-HH:00") from error
    if parsed.minute:
        raise _FieldProblem(["start"], f"{start!r} does not start on the hour (minutes must be 00)")
    return start


def _schedule(schedule: str | None, name: str) -> str | None:
    if schedule is None:
        return None
    try:
        dg.ScheduleDefinition(name=f"{name}_schedule", cron_schedule=schedule, job_name=name)
    except dg.DagsterInvalidDefinitionError as error:
        raise _FieldProblem(["schedule"], f"{schedule!r} is not a valid cron expression") from error
    return schedule


def _time_rule(index: int, entry: TimeRuleEntry, scaling: Mapping, quality: Mapping) -> TimeRule:
    field: list[str | int] = ["time_rules", index]
    hours = HOURS.match(entry.hours)
    if not hours or not all(0 <= int(h) <= 24 for h in hours.groups()):
        raise _FieldProblem([*field, "hours"], f'{entry.hours!r} is not "start-end" in whole UTC hours 0-24')
    unknown_days = [day for day in entry.days if day not in WEEKDAYS]
    if unknown_days:
        raise _FieldProblem([*field, "days"], f"{unknown_days[0]!r} is not a day; use {', '.join(WEEKDAYS)}")
    _settings([*field, "scaling"], ScalingResource, {**scaling, **entry.scaling})
    _settings([*field, "quality"], QualityResource, {**quality, **entry.quality})
    start, end = (int(h) % 24 for h in hours.groups())
    return TimeRule(entry.name, start, end, tuple(entry.days), dict(entry.scaling), dict(entry.quality))


def _spec(entry: PipelineEntry) -> PipelineSpec:
    name = _dagster_name(["name"], entry.name)
    prefix = [name] if entry.key_prefix is None else entry.key_prefix
    for position, part in enumerate(prefix):
        _dagster_name(["key_prefix", position], part)
    scaling = _settings(["scaling"], ScalingResource, entry.scaling)
    quality = _settings(["quality"], QualityResource, entry.quality)
    return PipelineSpec(
        name=name,
        key_prefix=tuple(prefix),
        source=_source(entry.source),
        start=_start(entry.start),
        schedule=_schedule(entry.schedule, name),
        pool=_dagster_name(["pool"], entry.pool),
        priority=entry.priority,
        reserved_slots=entry.reserved_slots,
        scaling=scaling,
        quality=quality,
        time_rules=tuple(_time_rule(i, rule, scaling, quality) for i, rule in enumerate(entry.time_rules)),
        freshness_minutes=entry.freshness.deadline_minutes if entry.freshness else None,
        on_source_outage=entry.on_source_outage,
        backfill_hours_per_run=entry.backfill_hours_per_run,
    )


def _check_unique(path: Path, raw: object, specs: Sequence[PipelineSpec]) -> None:
    """Names are job names and key prefixes hold the assets: each once."""
    for field, value_of in (("name", lambda s: s.name), ("key_prefix", lambda s: s.key_prefix)):
        seen: dict = {}
        for index, spec in enumerate(specs):
            value = value_of(spec)
            if value in seen:
                raise _error(path, raw, ("pipelines", index, field), f"{value!r} is already used by entry {seen[value] + 1}")
            seen[value] = index


def _pool_problems(capacity: Mapping[str, int], specs: Sequence[PipelineSpec]) -> list[tuple[tuple, str]]:
    for pool, slots in capacity.items():
        if not DAGSTER_NAME.match(pool) or slots < 1:
            return [(("pools", pool), "a pool is a Dagster name with at least 1 slot")]
    try:
        pool_limits(capacity, [spec.pool_use for spec in specs])
    except ValueError as error:
        index = max(i for i, spec in enumerate(specs) if spec.reserved_slots)
        return [(("pipelines", index, "reserved_slots"), str(error))]
    return []
