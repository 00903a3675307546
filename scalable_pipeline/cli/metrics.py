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
    pipeline_named,
    port,
    positive_int,
)
from scalable_pipeline.core.dagster_home import ensure_dagster_home
from scalable_pipeline.observing.metrics import PipelineCollector
from scalable_pipeline.observing.read_model import ObservedPipeline, configured_pipelines
from scalable_pipeline.publishing.data_store import default_data_dir


def register(commands) -> None:
    parser = commands.add_parser("metrics", help="serve Prometheus metrics on /metrics", description=__doc__)
    add_pipeline_option(parser, every=True)
    parser.add_argument("--port", type=port, default=9464, help="TCP port")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument(
        "--hours", type=positive_int, default=24, help="hours up to the latest complete hour with per-hour metrics"
    )
    parser.set_defaults(handler=metrics)


def recent_hours(hours: int, partitions: dg.TimeWindowPartitionsDefinition) -> Callable[[], list[str]]:
    """The last ``hours`` complete hours of ``partitions`` (none before their first hour has ended), as of each call."""

    def window() -> list[str]:
        last = partitions.get_last_partition_key()
        return hours_between(hours_before(last, hours, partitions), last, partitions) if last else []

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
    root = default_data_dir()
    pipelines = configured_pipelines(root) if args.pipeline is None else [pipeline_named(args.pipeline, root)]
    earliest = min((pipeline.partitions_def for pipeline in pipelines), key=lambda partitions: partitions.start)
    with dg.DagsterInstance.get() as instance:
        server = serve(instance, args.pipeline, args.host, args.port, recent_hours(args.hours, earliest), pipelines)
        print(f"serving http://{args.host}:{server.server_port}/metrics (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            server.shutdown()
    return 0
