"""metrics: serve /metrics for Prometheus (loopback by default), read from the instance at each scrape."""

import argparse
import threading
from collections.abc import Callable, Sequence

import dagster as dg
from prometheus_client import CollectorRegistry, start_http_server

from scalable_pipeline.cli.options import (
    add_pipeline_option,
    hours_before,
    hours_between,
    latest_hour,
    pipeline_named,
    port,
    positive_int,
)
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.core.data_store import default_data_dir
from scalable_pipeline.observing.metrics import PipelineCollector
from scalable_pipeline.observing.read_model import ObservedPipeline, configured_pipelines


def register(commands) -> None:
    parser = commands.add_parser("metrics", help="serve Prometheus metrics on /metrics", description=__doc__)
    add_pipeline_option(parser, every=True)
    parser.add_argument("--port", type=port, default=9464, help="TCP port")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument(
        "--hours", type=positive_int, default=24, help="hours up to the latest complete hour with per-hour metrics"
    )
    parser.set_defaults(handler=metrics)


def recent_hours(hours: int) -> Callable[[], list[str]]:
    """The last ``hours`` complete hours, as of each call."""

    def window() -> list[str]:
        last = latest_hour()
        return hours_between(hours_before(last, hours), last)

    return window


def serve(
    instance: dg.DagsterInstance,
    pipeline: str | None,
    host: str,
    port_number: int,
    window: Callable[[], list[str]],
    pipelines: Sequence[ObservedPipeline] | None = None,
):
    """Start the /metrics server in a thread (port 0: any free port); returns the server (``server_port``,
    ``shutdown()``). Each scrape reads the hours ``window()`` names, of the pipeline named ``pipeline``
    (None: every pipeline of the pipelines file; ``pipelines``: exactly those)."""
    root = default_data_dir()
    if pipelines is None:
        pipelines = configured_pipelines(root) if pipeline is None else [pipeline_named(pipeline, root)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(instance, root, pipelines, window))
    server, _thread = start_http_server(port_number, addr=host, registry=registry)
    return server


def metrics(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        server = serve(instance, args.pipeline, args.host, args.port, recent_hours(args.hours))
        print(f"serving http://{args.host}:{server.server_port}/metrics (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            server.shutdown()
    return 0
