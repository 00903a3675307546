"""The report's charts, one function each, from the hours observed (``observed.HourRecord``).

Every hour of the range is passed (with or without data): the x axis is a date axis over the whole range,
each hour's value sits in the middle of its hour, and hours without data are gaps."""

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scalable_pipeline.core.partition_keys import PARTITION_FORMAT
from scalable_pipeline.observing.read_model import HourRecord

PASSED, FAILED = "#2a9d8f", "#e63946"
HOUR = timedelta(hours=1)
HOUR_MS = 3_600_000
BAR_MS = 0.8 * HOUR_MS  # the width of an hour's bars (together, when grouped side by side)
MIN_HOURS = 6  # hours shown at least: the bars of a 1-hour range are no slab, 10 ticks are whole hours
HEIGHT, TOP, BOTTOM = 400, 100, 60  # pixels: the title, then the legend, sit in the top margin
GATE_ROW, GATE_GAP = 190, 100  # pixels: a gate's plot, and the space for its tick labels and the next row's titles


def hour_starts(hours: Sequence[HourRecord]) -> list[datetime]:
    """The start of each hour (UTC, naive), from its partition key."""
    return [datetime.strptime(hour.partition, PARTITION_FORMAT) for hour in hours]


def _over_hours(figure: go.Figure, hours: Sequence[HourRecord]) -> go.Figure:
    """A date x axis over the range of ``hours`` (first start to last end; a range under ``MIN_HOURS`` is shown in
    ``MIN_HOURS``, the hours around it shaded), ticked by plotly: one tick per 80 pixels, at most 10, on whole hours.
    Each point in the middle of its hour, gaps left open; bars ``BAR_MS`` wide (side by side when grouped)."""
    starts = hour_starts(hours)
    first, end = starts[0], starts[-1] + HOUR
    pad = max(MIN_HOURS * HOUR - (end - first), timedelta(0)) / 2
    figure.update_xaxes(
        type="date",
        range=[first - pad, end + pad],
        ticks="outside",  # the labels drop below the y axis' lowest label
        ticklen=6,
        tickformat="%b %d<br>%H:%M",
        hoverformat="%b %d %H:00 UTC",
        automargin=True,
    )
    if pad:
        for x0, x1 in ((first - pad, first), (end, end + pad)):
            figure.add_vrect(x0=x0, x1=x1, fillcolor="#999", opacity=0.2, line_width=0, layer="below", row="all", col="all")
    figure.update_traces(xperiod=HOUR_MS, xperiodalignment="middle")
    figure.update_traces(connectgaps=False, selector={"type": "scatter"})
    bars = [trace for trace in figure.data if trace.type == "bar"]
    grouped = figure.layout.barmode in (None, "group")
    for index, bar in enumerate(bars):
        slots, slot = (len(bars), index) if grouped else (1, 0)
        bar.update(width=BAR_MS / slots, offset=BAR_MS * (slot / slots - 0.5), marker_line_width=0)  # thin bars keep their colour
    return figure


def _title(text: str) -> dict:
    """The title at the top of the figure, above the legend."""
    return {"text": text, "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 12}}


def _layout(figure: go.Figure, hours: Sequence[HourRecord], title: str, y_title: str = "") -> go.Figure:
    figure.update_layout(
        title=_title(title),
        hovermode="x unified",
        height=HEIGHT,
        margin={"t": TOP, "b": BOTTOM},
        legend={"orientation": "h", "traceorder": "normal", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
        yaxis_title=y_title,
    )
    return _over_hours(figure, hours)


def records_per_hour(hours: Sequence[HourRecord]) -> go.Figure:
    """Valid, invalid and duplicate records of each hour (stacked: together the raw records)."""
    starts = hour_starts(hours)
    figure = go.Figure()
    for label, asset, key in (
        ("valid", "consolidated_output", "valid"),
        ("invalid", "processed_chunks", "invalid"),
        ("duplicates", "processed_chunks", "duplicates"),
    ):
        figure.add_bar(name=label, x=starts, y=[hour.value(asset, key) for hour in hours])
    figure.update_layout(barmode="stack")
    return _layout(figure, hours, "Records per hour (raw = valid + invalid + duplicates)", "records")


def chunking_decisions(hours: Sequence[HourRecord]) -> go.Figure:
    """Chunks and parallel tasks the scaling decision chose, with the mode and reason on hover."""
    starts = hour_starts(hours)
    plans = [hour.assets.get("chunk_partitions") for hour in hours]
    hover = [f"{p.metadata.get('processing_mode')}: {p.metadata.get('strategy_reason')}" if p else "" for p in plans]
    figure = go.Figure()
    figure.add_bar(name="chunks", x=starts, y=[hour.value("chunk_partitions", "chunk_count") for hour in hours], hovertext=hover)
    figure.add_scatter(
        name="parallel tasks",
        x=starts,
        y=[hour.value("chunk_partitions", "parallel_tasks") for hour in hours],
        mode="lines+markers",
    )
    figure.add_scatter(
        name="rows per chunk (right axis)",
        x=starts,
        y=[hour.value("chunk_partitions", "batch_size") for hour in hours],
        mode="lines+markers",
        yaxis="y2",
    )
    figure.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "rows", "rangemode": "tozero"})
    return _layout(figure, hours, "Chunking decisions", "count")


def throughput(hours: Sequence[HourRecord]) -> go.Figure:
    """Chunk compute records/s (inside the chunk and range steps) against end-to-end records/s (the whole run)."""
    starts = hour_starts(hours)
    figure = go.Figure()
    figure.add_scatter(
        name="chunk compute records/s",
        x=starts,
        y=[hour.value("processed_chunks", "records_per_second") for hour in hours],
        mode="lines+markers",
    )
    figure.add_scatter(
        name="end-to-end records/s", x=starts, y=[hour.end_to_end_records_per_second() for hour in hours], mode="lines+markers"
    )
    figure.update_yaxes(type="log")
    return _layout(figure, hours, "Throughput (log scale)", "records per second")


def gate_scores(hours: Sequence[HourRecord], gates: Sequence[str]) -> go.Figure:
    """Every gate's score against its threshold, per hour; failed evaluations in red. Rows are ``GATE_ROW``
    pixels high with ``GATE_GAP`` pixels between them, whatever the number of gates."""
    columns = 2
    rows = max(1, math.ceil(len(gates) / columns))
    plots = rows * GATE_ROW + (rows - 1) * GATE_GAP
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=list(gates), vertical_spacing=GATE_GAP / plots)
    starts = hour_starts(hours)
    for index, gate in enumerate(gates):
        row, column = index // columns + 1, index % columns + 1
        results = [hour.gates.get(gate) for hour in hours]
        figure.add_scatter(
            x=starts,
            y=[r.score if r else None for r in results],
            mode="markers",
            marker={"color": [PASSED if r and r.passed else FAILED for r in results]},
            name=f"{gate} score",
            hovertext=[f"{r.severity} {'passed' if r.passed else 'FAILED'}: {r.description}" if r else "" for r in results],
            showlegend=False,
            row=row,
            col=column,
        )
        figure.add_scatter(
            x=starts,
            y=[r.threshold if r else None for r in results],
            mode="lines+markers",  # a dash on each hour: seen alone too (a sparse range)
            line={"dash": "dash", "color": "#555"},
            marker={"symbol": "line-ew", "size": 10, "line": {"width": 2, "color": "#555"}},
            name=f"{gate} threshold",
            showlegend=False,
            row=row,
            col=column,
        )
    figure.update_layout(
        title=_title("Gates: score (dots, red = failed) against threshold (dashed)"),
        height=TOP + BOTTOM + plots,
        margin={"t": TOP, "b": BOTTOM},
    )
    return _over_hours(figure, hours)


def rollbacks_and_restarts(hours: Sequence[HourRecord]) -> go.Figure:
    """Rollbacks (automatic and manual), re-executed runs and chunks reused from checkpoints, per hour."""
    starts = hour_starts(hours)
    figure = go.Figure()
    for kind in ("automatic", "manual"):
        figure.add_bar(name=f"{kind} rollbacks", x=starts, y=[sum(r.kind == kind for r in hour.rollbacks) for hour in hours])
    figure.add_bar(name="re-executed runs", x=starts, y=[hour.reexecutions for hour in hours])
    figure.add_bar(name="runs", x=starts, y=[len(hour.runs) for hour in hours])
    figure.add_bar(name="chunks reused", x=starts, y=[hour.value("processed_chunks", "chunks_reused") for hour in hours])
    return _layout(figure, hours, "Rollbacks and restarts", "count")
