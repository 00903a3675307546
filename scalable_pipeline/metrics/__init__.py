"""Prometheus metrics (``scalable_pipeline_*``), read from the instance and the data root at scrape time."""
