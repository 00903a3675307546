"""The report's charts read well over 1, 24 and 168 hours, dense or sparse: a date axis over the whole range,
gaps for hours without data, legends and subplot titles clear of the axis labels, bars narrower than an hour."""

from datetime import datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace

import pytest

from scalable_pipeline.observing import charts
from scalable_pipeline.observing.read_model import GateResult, HourRecord, Materialized

START = datetime(2026, 1, 5)
HOUR = timedelta(hours=1)
HOUR_MS = 3_600_000
GATES = ("invalid_ratio", "duplicate_ratio", "raw_schema")
METADATA = {
    "raw_volume": {"total_records": 915},
    "consolidated_output": {"valid": 900},
    "processed_chunks": {"invalid": 10, "duplicates": 5, "records_per_second": 5000.0, "chunks_reused": 1},
    "chunk_partitions": {"chunk_count": 4, "parallel_tasks": 2, "batch_size": 250},
}


def observed(count: int, with_data: set[int]) -> list[HourRecord]:
    """``count`` hours from ``START``; those at the indexes ``with_data`` have outputs and gate results."""
    hours = [HourRecord((START + index * HOUR).strftime("%Y-%m-%d-%H:%M")) for index in range(count)]
    for index in with_data:
        hour = hours[index]
        hour.assets = {asset: Materialized("run", 0.0, dict(values)) for asset, values in METADATA.items()}
        hour.runs = [SimpleNamespace(dagster_run=SimpleNamespace(run_id="run", tags={}), start_time=100.0, end_time=103.0)]
        hour.gates = {
            gate: GateResult("asset", gate, hour.partition, "run", True, "ERROR", 0.01, 0.05, "", 0.0) for gate in GATES
        }
    return hours


def figures(hours: list[HourRecord]) -> list:
    return [
        charts.records_per_hour(hours),
        charts.chunking_decisions(hours),
        charts.throughput(hours),
        charts.gate_scores(hours, GATES),
        charts.rollbacks_and_restarts(hours),
    ]


def x_axes(figure) -> list:
    return [figure.layout[name] for name in figure.layout if name.startswith("xaxis")]


WITH_DATA = {60, 110}
SPARSE_WEEK = observed(168, WITH_DATA)  # two hours of data in a week


@pytest.mark.parametrize("count", [1, 24, 168])
def test_the_x_axis_is_a_date_axis_over_the_whole_range_ticked_on_hours(count):
    hours = observed(count, set(range(count)))
    for figure in figures(hours):
        for axis in x_axes(figure):
            assert axis.type == "date"
            first, last = axis.range
            assert first <= START and START + count * HOUR <= last
            assert axis.nticks is None and last - first >= 6 * HOUR  # plotly's <= 10 ticks (by the width) on whole hours
            assert "%b %d" in axis.tickformat and "%H:%M" in axis.tickformat  # the date and the hour
        for trace in figure.data:
            assert list(trace.x) == [START + index * HOUR for index in range(count)]  # datetimes, not category strings
            assert trace.xperiod == HOUR_MS and trace.xperiodalignment == "middle"  # drawn inside their hour


def test_a_range_of_a_day_or_a_week_is_shown_exactly():
    for count in (24, 168):
        for figure in figures(observed(count, {0})):
            assert {axis.range for axis in x_axes(figure)} == {(START, START + count * HOUR)}
            assert not figure.layout.shapes


def test_one_hour_is_shown_among_six_the_others_shaded_its_bars_no_slab():
    for figure in figures(observed(1, {0})):
        assert {axis.range for axis in x_axes(figure)} == {(START - 2.5 * HOUR, START + 3.5 * HOUR)}
        shaded = {(shape.x0, shape.x1) for shape in figure.layout.shapes}
        assert shaded == {(START - 2.5 * HOUR, START), (START + HOUR, START + 3.5 * HOUR)}
        assert all(bar.width <= 0.8 * HOUR_MS for bar in figure.data if bar.type == "bar")  # at most 0.8 / 6 of the width


def test_a_sparse_week_spans_the_week_with_gaps_for_hours_without_data():
    for figure in figures(SPARSE_WEEK):
        for axis in x_axes(figure):
            assert axis.range == (START, START + 168 * HOUR)
        for trace in figure.data:
            assert trace.type == "bar" or trace.connectgaps is False
            for index, (x, y) in enumerate(zip(trace.x, trace.y, strict=True)):
                assert x == START + index * HOUR
                if index in WITH_DATA:
                    assert y is not None, trace.name
                else:  # a gap in a line, no bar (nothing, or a count of 0)
                    assert y is None if trace.type == "scatter" else not y, trace.name


@pytest.mark.parametrize("count", [1, 24, 168])
def test_bars_stay_inside_their_hour_side_by_side(count):
    for figure in figures(observed(count, set(range(count)))):
        bars = [trace for trace in figure.data if trace.type == "bar"]
        assert all(bar.width and bar.offset is not None for bar in bars)  # not as wide as plotly makes a lone bar
        spans = sorted((bar.offset, bar.offset + bar.width) for bar in bars)
        if figure.layout.barmode == "stack":
            assert set(spans) == {(-0.4 * HOUR_MS, 0.4 * HOUR_MS)}
        else:  # grouped: next to each other, together 0.8 hour
            assert all(left[1] == pytest.approx(right[0]) for left, right in pairwise(spans))
            assert not spans or (spans[0][0], spans[-1][1]) == pytest.approx((-0.4 * HOUR_MS, 0.4 * HOUR_MS))


def test_legends_sit_above_the_plot_under_the_title():
    for figure in figures(SPARSE_WEEK):
        if not any(trace.showlegend is not False for trace in figure.data):
            continue  # the gates: no legend
        legend, title = figure.layout.legend, figure.layout.title
        assert legend.orientation == "h" and legend.yanchor == "bottom" and legend.y >= 1
        assert title.yref == "container" and title.y == 1 and title.yanchor == "top"
        assert figure.layout.margin.t >= 90  # the title, then two rows of legend


def gate_rows(gates: int) -> tuple[list[float], list[float]]:
    """The pixel heights of the gate chart's rows, top to bottom, and of the gaps between them."""
    layout = charts.gate_scores(SPARSE_WEEK, [f"gate_{index}" for index in range(gates)]).layout
    margin = {side: 80 if layout.margin[side] is None else layout.margin[side] for side in ("t", "b")}  # plotly's default
    plot_px = layout.height - margin["t"] - margin["b"]
    domains = sorted({tuple(layout[name].domain) for name in layout if name.startswith("yaxis")}, reverse=True)
    rows = [(top - bottom) * plot_px for bottom, top in domains]
    return rows, [(upper[0] - lower[1]) * plot_px for upper, lower in pairwise(domains)]


@pytest.mark.parametrize("gates", [3, 4, 12, 30])
def test_gate_rows_have_a_fixed_height_and_room_for_labels_and_titles(gates):
    rows, gaps = gate_rows(gates)
    [single], [] = gate_rows(1)
    assert len(rows) == (gates + 1) // 2 and single >= 150
    assert rows == pytest.approx([single] * len(rows))  # the same pixels per row, whatever the number of gates
    assert min(gaps) >= 90  # two lines of tick labels, then the next row's titles
