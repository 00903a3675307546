"""The README's tour is quiet: a sensor tick that finds nothing logs nothing (its skip reason, kept in the
UI's tick history and printed once by the daemon, says it), and a tick that acts still logs its line.

Every sensor is taken from the shipped ``Definitions`` (``scalable_pipeline.definitions``) or from
``build_definitions`` over a pipelines file with a landing and a PostgreSQL source, so the shipped wiring is
what runs; each is evaluated on an empty instance with a handler on the tick's own logger.
"""

import json
import logging
import textwrap

import dagster as dg
import pytest

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.definitions import defs

# The late-hours sensor's cursor when every hour due so far has been judged (its next deadline is later).
ALL_JUDGED = json.dumps({"judged_until": 4102444800.0})  # 2100-01-01
CURSORS = {"scalable_data_processing_late_hours": ALL_JUDGED}

SOURCES = """
pipelines:
  - name: scalable_data_processing
    key_prefix: []
  - name: landed_orders
    source: {{kind: landing, landing_dir: "{landing}"}}
    start: "2026-01-01-00:00"
    schedule: "0 * * * *"
  - name: db_orders
    source: {{kind: postgres, table: orders, url_env: QUIET_TOUR_DB_URL}}
    start: "2026-01-01-00:00"
"""


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def tick(definitions: dg.Definitions, sensor: dg.SensorDefinition, instance, cursor=None):
    """One evaluation with the definitions' resources that the sensor needs (as the daemon builds them); what
    it returned and every record its logger got."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=definitions,
        resources={key: r for key, r in definitions.resources.items() if key in sensor.required_resource_keys},
        sensor_name=sensor.name,
    )
    records = Records()
    context.log.addHandler(records)  # the logger whose console handler printed the second copy under the daemon
    return sensor(context), records.records


def skip_message(result) -> str | None:
    """The tick's skip reason when it requested no run (None when it requested runs or gave no reason)."""
    if isinstance(result, dg.SkipReason):
        return result.skip_message
    assert isinstance(result, dg.SensorResult), result
    if result.run_requests:
        return None
    reason = result.skip_reason
    return reason.skip_message if isinstance(reason, dg.SkipReason) else reason


def informative(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.levelname}: {r.getMessage()}" for r in records if r.levelno >= logging.INFO]


@pytest.fixture
def empty_instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_the_shipped_sensors_are_the_ones_checked_here():
    names = {sensor.name for sensor in defs.sensors}
    assert names == {
        "quality_gate_alerts",
        "run_failure_alerts",
        "scalable_data_processing_backfill_retries",
        "scalable_data_processing_deferred_hours",
        "scalable_data_processing_late_hours",
    }


@pytest.mark.parametrize("name", sorted(sensor.name for sensor in defs.sensors))
def test_a_shipped_sensor_that_finds_nothing_logs_nothing_and_says_why(name, empty_instance):
    result, records = tick(defs, defs.resolve_sensor_def(name), empty_instance, CURSORS.get(name))
    assert skip_message(result), f"{name} found nothing but gave no skip reason"
    assert informative(records) == [], f"{name} logged at INFO or above although it found nothing"


def test_data_arrival_sensors_that_find_nothing_log_nothing(tmp_path, monkeypatch, empty_instance):
    monkeypatch.delenv("QUIET_TOUR_DB_URL", raising=False)
    landing = tmp_path / "landing"
    landing.mkdir()
    config = tmp_path / "pipelines.yaml"
    config.write_text(textwrap.dedent(SOURCES.format(landing=landing)))
    built = build_definitions(config)
    arrival = [s for s in built.sensors if s.name in {"landed_orders_landing_sensor", "db_orders_db_sensor"}]
    assert len(arrival) == 2
    for sensor in arrival:
        result, records = tick(built, sensor, empty_instance)
        assert skip_message(result), f"{sensor.name} found nothing but gave no skip reason"
        assert informative(records) == [], f"{sensor.name} logged at INFO or above although it found nothing"


def test_a_tick_that_acts_still_logs_its_line(empty_instance, monkeypatch):
    """The late-hours sensor's first tick on an empty instance finds the hours of its look-back late: it
    alerts, and says so once at INFO."""
    monkeypatch.delenv("SCALABLE_PIPELINE_ALERT_WEBHOOK", raising=False)
    _, records = tick(defs, defs.resolve_sensor_def("scalable_data_processing_late_hours"), empty_instance)
    lines = informative(records)
    assert len(lines) == 1 and lines[0].startswith("INFO: ") and "new alerts" in lines[0], lines
