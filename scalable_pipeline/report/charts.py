"""The report's charts, one function each, from the hours observed (``observed.HourRecord``)."""

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scalable_pipeline.observed import HourRecord

PASSED, FAILED = "#2a9d8f", "#e63946"


def _layout(figure: go.Figure, title: str, y_title: str = "") -> go.Figure:
    figure.update_layout(title=title, hovermode="x unified", height=380, margin={"t": 60, "b": 40}, legend={"orientation": "h"})
    figure.update_yaxes(title_text=y_title)
    return figure


def records_per_hour(hours: Sequence[HourRecord]) -> go.Figure:
    """Valid, invalid and duplicate records of each hour (stacked: together the raw records)."""
    keys = [hour.partition for hour in hours]
    figure = go.Figure()
    for label, asset, key in (
        ("valid", "consolidated_output", "valid"),
        ("invalid", "processed_chunks", "invalid"),
        ("duplicates", "processed_chunks", "duplicates"),
    ):
        figure.add_bar(name=label, x=keys, y=[hour.value(asset, key) for hour in hours])
    figure.update_layout(barmode="stack")
    return _layout(figure, "Records per hour (raw = valid + invalid + duplicates)", "records")


def chunking_decisions(hours: Sequence[HourRecord]) -> go.Figure:
    """Chunks and parallel tasks the scaling decision chose, with the mode and reason on hover."""
    keys = [hour.partition for hour in hours]
    plans = [hour.assets.get("chunk_partitions") for hour in hours]
    hover = [f"{p.metadata.get('processing_mode')}: {p.metadata.get('strategy_reason')}" if p else "" for p in plans]
    figure = go.Figure()
    figure.add_bar(name="chunks", x=keys, y=[hour.value("chunk_partitions", "chunk_count") for hour in hours], hovertext=hover)
    figure.add_scatter(
        name="parallel tasks",
        x=keys,
        y=[hour.value("chunk_partitions", "parallel_tasks") for hour in hours],
        mode="lines+markers",
    )
    figure.add_scatter(
        name="rows per chunk (right axis)",
        x=keys,
        y=[hour.value("chunk_partitions", "batch_size") for hour in hours],
        mode="lines",
        yaxis="y2",
    )
    figure.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "rows"})
    return _layout(figure, "Chunking decisions", "count")


def throughput(hours: Sequence[HourRecord]) -> go.Figure:
    """Chunk compute records/s (inside the chunk and range steps) against end-to-end records/s (the whole run)."""
    keys = [hour.partition for hour in hours]
    figure = go.Figure()
    figure.add_scatter(
        name="chunk compute records/s",
        x=keys,
        y=[hour.value("processed_chunks", "records_per_second") for hour in hours],
        mode="lines+markers",
    )
    figure.add_scatter(
        name="end-to-end records/s", x=keys, y=[hour.end_to_end_records_per_second() for hour in hours], mode="lines+markers"
    )
    figure.update_yaxes(type="log")
    return _layout(figure, "Throughput (log scale)", "records per second")


def gate_scores(hours: Sequence[HourRecord], gates: Sequence[str]) -> go.Figure:
    """Every gate's score against its threshold, per hour; failed evaluations in red."""
    columns = 2
    rows = max(1, math.ceil(len(gates) / columns))
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=list(gates), vertical_spacing=0.5 / rows)
    keys = [hour.partition for hour in hours]
    for index, gate in enumerate(gates):
        row, column = index // columns + 1, index % columns + 1
        results = [hour.gates.get(gate) for hour in hours]
        figure.add_scatter(
            x=keys,
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
            x=keys,
            y=[r.threshold if r else None for r in results],
            mode="lines",
            line={"dash": "dash", "color": "#555"},
            name=f"{gate} threshold",
            showlegend=False,
            row=row,
            col=column,
        )
    figure.update_layout(
        title="Gates: score (dots, red = failed) against threshold (dashed)", height=max(380, 230 * rows), margin={"t": 80}
    )
    return figure


def rollbacks_and_restarts(hours: Sequence[HourRecord]) -> go.Figure:
    """Rollbacks (automatic and manual), re-executed runs and chunks reused from checkpoints, per hour."""
    keys = [hour.partition for hour in hours]
    figure = go.Figure()
    for kind in ("automatic", "manual"):
        figure.add_bar(name=f"{kind} rollbacks", x=keys, y=[sum(r.kind == kind for r in hour.rollbacks) for hour in hours])
    figure.add_bar(name="re-executed runs", x=keys, y=[hour.reexecutions for hour in hours])
    figure.add_bar(name="runs", x=keys, y=[len(hour.runs) for hour in hours])
    figure.add_bar(name="chunks reused", x=keys, y=[hour.value("processed_chunks", "chunks_reused") for hour in hours])
    return _layout(figure, "Rollbacks and restarts", "count")
