"""The HTML report over a range of hours: one self-contained file (plotly inlined, nothing fetched)."""
