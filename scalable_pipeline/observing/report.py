"""Assembling the report: a summary table and the charts in one HTML file; plotly.js is inlined once."""

import html
import time
from collections.abc import Sequence

from scalable_pipeline.observing import charts
from scalable_pipeline.observing.read_model import HourRecord

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}"""


def totals(hours: Sequence[HourRecord]) -> list[tuple[str, str]]:
    def total(asset: str, key: str) -> int:
        return int(sum(hour.value(asset, key) or 0 for hour in hours))

    failed = sum(not gate.passed for hour in hours for gate in hour.gates.values())
    return [
        ("hours in range", str(len(hours))),
        ("hours with a published output", str(sum("consolidated_output" in hour.assets for hour in hours))),
        ("raw records", f"{total('raw_volume', 'total_records'):,}"),
        ("valid records", f"{total('consolidated_output', 'valid'):,}"),
        ("invalid records", f"{total('processed_chunks', 'invalid'):,}"),
        ("duplicate records", f"{total('processed_chunks', 'duplicates'):,}"),
        ("failed gate evaluations (newest per hour)", str(failed)),
        ("rollbacks", str(sum(len(hour.rollbacks) for hour in hours))),
        ("runs", str(sum(len(hour.runs) for hour in hours))),
    ]


def render(pipeline: str, hours: Sequence[HourRecord], gates: Sequence[str]) -> str:
    """The whole report as one HTML document (no script or style loaded from anywhere)."""
    figures = [
        charts.records_per_hour(hours),
        charts.chunking_decisions(hours),
        charts.throughput(hours),
        charts.gate_scores(hours, gates),
        charts.rollbacks_and_restarts(hours),
    ]
    parts = [figure.to_html(full_html=False, include_plotlyjs=index == 0) for index, figure in enumerate(figures)]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in totals(hours))
    span = f"{hours[0].partition} to {hours[-1].partition}" if hours else "no hours"
    title = f"{pipeline}: {span}"
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>'
        f"<body><h1>{html.escape(title)}</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} "
        "from the Dagster instance and the data root.</p>"
        f"<table><tr><th>what</th><th>value</th></tr>{rows}</table>{''.join(parts)}</body></html>"
    )
