"""The pipelines file: what it accepts, and one message naming file, entry and field for every mistake."""

import textwrap
from datetime import datetime

import dagster as dg
import pytest

from scalable_pipeline.cli.main import main
from scalable_pipeline.core.constants import DEFAULT_START
from scalable_pipeline.pipelines.config import (
    DEFAULT_CONFIG_PATH,
    PipelineConfigError,
    config_path,
    load_pipelines,
)
from scalable_pipeline.pipelines.time_rules import TimeRule, resolve
from scalable_pipeline.scaling.pools import (
    FAN_OUT,
    FAN_OUT_PRIORITY,
    SINGLE_STEP,
    PoolUse,
    assign_pools,
    pool_limits,
    processing_path,
)
from scalable_pipeline.scaling.resource import ScalingResource

TWO_PIPELINES = """
pools: {chunk_processing: 6}
pipelines:
  - name: scalable_data_processing
    key_prefix: []
  - name: eu_orders
    source: {kind: synthetic, scale: 0.5, seed: 7}
    start: "2026-01-01-00:00"
    schedule: "15 * * * *"
    pool: chunk_processing
    priority: 5
    reserved_slots: 2
    scaling: {chunk_count: 3, single_step_below: 1000}
    quality: {max_invalid_ratio: 0.02}
    time_rules:
      - name: business_hours
        hours: "9-17"
        days: [mon, tue, wed, thu, fri]
        scaling: {chunk_count: 6}
"""


def write(tmp_path, text: str):
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_shipped_file_holds_the_main_pipeline_with_unprefixed_keys():
    config = load_pipelines(DEFAULT_CONFIG_PATH)
    (main,) = config.pipelines
    assert (main.name, main.key_prefix, main.pool, main.priority, main.reserved_slots) == (
        "scalable_data_processing",
        (),
        "chunk_processing",
        0,
        0,
    )
    assert config_path({}) == DEFAULT_CONFIG_PATH
    assert str(config_path({"SCALABLE_PIPELINE_CONFIG": "/etc/p.yaml"})) == "/etc/p.yaml"


def test_an_entry_takes_every_documented_field_and_defaults_the_rest(tmp_path):
    config = load_pipelines(write(tmp_path, TWO_PIPELINES))
    main, eu = config.pipelines
    assert main.key_prefix == () and main.source is None and main.schedule is None and main.start == DEFAULT_START
    assert eu.key_prefix == ("eu_orders",)
    assert eu.source == {"kind": "synthetic", "scale": 0.5, "seed": 7}
    assert (eu.schedule, eu.pool, eu.priority, eu.reserved_slots) == ("15 * * * *", "chunk_processing", 5, 2)
    assert eu.scaling == {"chunk_count": 3, "single_step_below": 1000} and eu.quality == {"max_invalid_ratio": 0.02}
    assert eu.time_rules == (TimeRule("business_hours", 9, 17, ("mon", "tue", "wed", "thu", "fri"), {"chunk_count": 6}, {}),)
    assert config.pool_limits == {"chunk_processing": 4, "eu_orders_reserved": 2}


def entry(extra: str) -> str:
    return "pipelines:\n  - name: scalable_data_processing\n    key_prefix: []\n  - name: eu_orders\n" + extra


@pytest.mark.parametrize(
    "text, field, words",
    [
        (entry("    colour: blue\n"), "field 'colour'", "unknown field; use one of name, key_prefix, source,"),  # none close
        (entry("    schedul: '0 * * * *'\n"), "field 'schedul'", "unknown field; did you mean 'schedule'?"),
        (
            entry("    freshness: {deadline_minute: 30}\n"),
            "field 'freshness.deadline_minute'",
            "did you mean 'deadline_minutes'?",
        ),
        (
            entry("    time_rules: [{name: w, hours: '0-6', dayz: [mon]}]\n"),
            "field 'time_rules.0.dayz'",
            "unknown field; did you mean 'days'?",  # the time rule's own fields, not the entry's
        ),
        (entry("    scaling: {max_chunkz: 3}\n"), "field 'scaling.max_chunkz'", "unknown field; did you mean 'max_chunks'?"),
        (entry("    scaling: {pol: 3}\n"), "field 'scaling.pol'", "unknown field; use one of cpu_usage_percent,"),  # not pool
        (entry("    quality: {max_invalid_ratio: 2}\n"), "field 'quality.max_invalid_ratio'", "less than or equal"),
        (entry("    schedule: '61 * * * *'\n"), "field 'schedule'", "not a valid cron"),
        (entry("    start: '2026-13-01-00:00'\n"), "field 'start'", "not an hour"),
        (entry("    start: '2026-01-01-00:30'\n"), "field 'start'", "on the hour"),
        (entry("    start: 2026-01-01\n"), "field 'start'", "valid string"),  # YAML date: wrong type
        (entry("    priority: high\n"), "field 'priority'", "valid integer"),  # wrong type
        (entry("    reserved_slots: -1\n"), "field 'reserved_slots'", "greater than or equal"),
        (entry("    scaling: {chunk_count: many}\n"), "field 'scaling.chunk_count'", "valid integer"),
        (entry("    source: {kind: kafka}\n"), "field 'source.kind'", "not a source kind"),
        (entry("    source: {kind: synthetic, scael: 2}\n"), "field 'source.scael'", "unknown field; did you mean 'scale'?"),
        (entry("    scaling: {pool: other}\n"), "field 'scaling.pool'", "set by the pipeline entry"),
        (entry("    pool: 'eu-chunks'\n"), "field 'pool'", "not a valid Dagster name"),
        (entry("    time_rules: [{name: nights, hours: '22-30'}]\n"), "field 'time_rules.0.hours'", "0-24"),
        (entry("    time_rules: [{name: w, hours: '0-6', days: [sunday]}]\n"), "field 'time_rules.0.days'", "not a day"),
        (
            entry("    time_rules: [{name: w, hours: '0-6', quality: {max_invalid_ratio: -1}}]\n"),
            "field 'time_rules.0.quality.max_invalid_ratio'",
            "greater",
        ),
        (entry("    reserved_slots: 2\n"), "field 'reserved_slots'", "no capacity"),
        ("pools: {chunk_processing: 2}\n" + entry("    reserved_slots: 2\n"), "field 'reserved_slots'", "leave none"),
    ],
)
def test_a_mistake_names_the_file_the_entry_and_the_field(tmp_path, text, field, words):
    path = write(tmp_path, text)
    with pytest.raises(PipelineConfigError) as error:
        load_pipelines(path)
    message = str(error.value)
    assert message.startswith(f"{path}: pipeline entry 2 ('eu_orders'): {field}"), message
    assert words in message


@pytest.mark.parametrize(
    "text, where",
    [
        ("pipelines:\n  - name: a\n  - name: a\n", "pipeline entry 2 ('a'): field 'name': 'a' is already used by entry 1"),
        ("pipelines:\n  - name: a\n  - name: b\n    key_prefix: [a]\n", "pipeline entry 2 ('b'): field 'key_prefix'"),
        (
            "pipelines:\n  - name: eu-orders\n",
            "pipeline entry 1 ('eu-orders'): field 'name': 'eu-orders' is not a valid Dagster name",
        ),
        ("pipelines:\n  - key_prefix: [x]\n", "pipeline entry 1: field 'name': Field required"),
        ("pipelines: []\n", "field 'pipelines'"),
        ("pipeline: []\n", "field 'pipeline': unknown field; did you mean 'pipelines'?"),
        ("pools: {chunk_processing: 0}\npipelines:\n  - name: a\n", "field 'pools.chunk_processing'"),
    ],
)
def test_file_level_mistakes_are_named_too(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(PipelineConfigError) as error:
        load_pipelines(path)
    assert str(error.value).startswith(f"{path}: {where}"), str(error.value)


def test_unreadable_yaml_names_the_file(tmp_path):
    path = write(tmp_path, "pipelines: [unclosed\n")
    with pytest.raises(PipelineConfigError, match="cannot read the pipelines file"):
        load_pipelines(path)
    with pytest.raises(PipelineConfigError, match=r"missing\.yaml: cannot read"):
        load_pipelines(tmp_path / "missing.yaml")


def test_the_first_matching_time_rule_overrides_settings_for_its_hours():
    business = TimeRule("business_hours", 9, 17, ("mon", "tue", "wed", "thu", "fri"), {"chunk_count": 8}, {})
    nights = TimeRule("nights", 22, 6, quality={"max_invalid_ratio": 0.1, "gates": {"invalid_ratio": {"k": 2}}})
    rules = [business, nights]
    base_quality = {"max_invalid_ratio": 0.05, "gates": {"volume_anomaly": {"severity": "ERROR"}}}
    monday_10 = resolve(rules, datetime(2026, 1, 5, 10), {"chunk_count": 2}, base_quality)
    assert (monday_10.rule, monday_10.scaling, monday_10.quality) == ("business_hours", {"chunk_count": 8}, base_quality)
    saturday_10 = resolve(rules, datetime(2026, 1, 10, 10), {"chunk_count": 2}, base_quality)
    assert (saturday_10.rule, saturday_10.scaling) == (None, {"chunk_count": 2})
    monday_17 = resolve(rules, datetime(2026, 1, 5, 17), {}, {})
    assert monday_17.rule is None  # the end hour is excluded
    for hour in (22, 23, 0, 5):
        night = resolve(rules, datetime(2026, 1, 6, hour), {}, base_quality)
        assert night.rule == "nights" and night.quality["max_invalid_ratio"] == 0.1
        assert night.quality["gates"] == {"volume_anomaly": {"severity": "ERROR"}, "invalid_ratio": {"k": 2}}
    assert resolve(rules, datetime(2026, 1, 6, 6), {}, {}).rule is None
    assert TimeRule("all_day", 0, 0).matches(datetime(2026, 1, 6, 13))


def test_volume_routes_an_hour_to_one_of_three_paths():
    assert processing_path(999, 1000, 50_000) == SINGLE_STEP
    assert processing_path(1000, 1000, 50_000) == FAN_OUT
    assert processing_path(50_000, 1000, 50_000) == FAN_OUT
    assert processing_path(50_001, 1000, 50_000) == FAN_OUT_PRIORITY
    assert processing_path(10**9, None, None) == FAN_OUT and processing_path(0, None, None) == FAN_OUT


def test_reservations_come_out_of_the_shared_capacity():
    uses = [PoolUse("main", "chunk_processing"), PoolUse("eu", "chunk_processing", 2), PoolUse("us", "us_chunks", 1)]
    limits = pool_limits({"chunk_processing": 6, "us_chunks": 3, "spare": 2}, uses)
    assert limits == {"chunk_processing": 4, "us_chunks": 2, "spare": 2, "eu_reserved": 2, "us_reserved": 1}
    with pytest.raises(ValueError, match="'chunk_processing': 6 reserved slot"):
        pool_limits({"chunk_processing": 6}, [*uses[:2], PoolUse("ap", "chunk_processing", 4)])


def test_priority_chunks_spread_over_the_free_slots_reserved_first():
    assert assign_pools(6, [("eu_reserved", 2), ("chunk_processing", 1)]) == [
        "eu_reserved",
        "eu_reserved",
        "chunk_processing",
        "eu_reserved",
        "eu_reserved",
        "chunk_processing",
    ]
    assert assign_pools(3, [("eu_reserved", 0), ("chunk_processing", 4)]) == ["chunk_processing"] * 3
    assert assign_pools(2, [("eu_reserved", 0), ("chunk_processing", 0)]) == ["eu_reserved"] * 2
    assert assign_pools(0, [("chunk_processing", 3)]) == []


def test_the_pools_command_applies_the_limits_and_scaling_reads_its_free_slots(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, TWO_PIPELINES)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["pools", "--config", str(path)]) == 0
    assert "chunk_processing: 4" in capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        limits = {pool.name: pool.limit for pool in instance.event_log_storage.get_pool_limits()}
        assert limits == {"chunk_processing": 4, "eu_orders_reserved": 2}
        instance.event_log_storage.claim_concurrency_slot("eu_orders_reserved", "run-1", "step-1")
        scaling = ScalingResource(pool="chunk_processing", reserved_pool="eu_orders_reserved")
        assert scaling.free_slots(instance) == [("eu_orders_reserved", 1), ("chunk_processing", 4)]
        assert ScalingResource(pool="unlimited").free_slots(instance) == [("unlimited", None)]
