"""``scalable-pipeline worker``: a Celery worker that runs the pipeline's steps (``SCALABLE_PIPELINE_EXECUTOR=celery``).

It builds the same Celery app as the run's executor (dagster-celery's, with the broker, backend and
queue of ``executors.celery_app_settings``), preloads the project so each step skips the imports, and
runs in the foreground until stopped (SIGTERM: warm shutdown after the running steps). It acknowledges a
step when the step ends, so the steps of a worker that dies go to a live worker: on RabbitMQ once the
dead worker's connection closes, on Redis once they have been unacknowledged for
``$SCALABLE_PIPELINE_CELERY_VISIBILITY_TIMEOUT`` seconds (see ``executors``). Steps load the run from
the Dagster instance of ``$DAGSTER_HOME``, so that instance must be shared (PostgreSQL), and read and
write chunk data under ``$SCALABLE_PIPELINE_DATA_DIR``, a path every worker sees.
"""

import argparse
import os
import sys
from collections.abc import Mapping

import dagster as dg

from scalable_pipeline.assembly.project import warm_definitions
from scalable_pipeline.execution.executors import QUEUE_ENV, ExecutorSettingError, celery_app_settings

BROKER_CONNECT_SECONDS = 3.0


class WorkerRefused(RuntimeError):
    """The worker cannot do useful work here; the message says why in one line."""


def check_broker(url: str, timeout: float = BROKER_CONNECT_SECONDS) -> None:
    """One short connection attempt to the broker; raises ``WorkerRefused`` when it is unreachable."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as error:  # kombu raises transport-specific errors (OSError, redis, amqp)
        raise WorkerRefused(f"broker {redacted(url)} is unreachable ({type(error).__name__}: {error})") from None


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def check_instance(environ: Mapping[str, str] = os.environ) -> None:
    """Steps read the run and write events through the instance: it must be shared, not SQLite files."""
    if not environ.get("DAGSTER_HOME"):
        raise WorkerRefused("DAGSTER_HOME is not set: point it at a folder whose dagster.yaml uses PostgreSQL (see deploy/)")
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    with dg.DagsterInstance.get() as instance:
        shared = isinstance(instance.run_storage, PostgresRunStorage) and isinstance(
            instance.event_log_storage, PostgresEventLogStorage
        )
    if not shared:
        raise WorkerRefused(
            f"the Dagster instance in {environ['DAGSTER_HOME']} keeps runs in SQLite files; workers need PostgreSQL "
            "(deploy/dagster.yaml)"
        )


def worker_argv(concurrency: int | None, queue: str, name: str) -> list[str]:
    """Arguments of ``celery worker``: one step per pool process at a time, on the given queue."""
    argv = ["worker", "--loglevel", "INFO", "--queues", queue, "--hostname", name, "--prefetch-multiplier", "1"]
    return argv + (["--concurrency", str(concurrency)] if concurrency else [])


def run_worker(args: argparse.Namespace) -> int:
    environ = {**os.environ, **({QUEUE_ENV: args.queue} if args.queue else {})}
    try:
        settings = celery_app_settings(environ)
        try:
            from dagster_celery.executor import CeleryExecutor
            from dagster_celery.make_app import make_app
            from dagster_celery.tasks import create_task
        except ImportError:
            raise WorkerRefused("dagster-celery is not installed: pip install 'scalable_pipeline[celery]'") from None
        check_instance(environ)
        check_broker(settings["broker"])
    except (ExecutorSettingError, WorkerRefused) as error:
        print(f"scalable-pipeline worker: error: {error}", file=sys.stderr)
        return 2

    warm_definitions()  # forked pool processes start warm, as under multiprocess

    app = make_app(CeleryExecutor.for_cli(**settings).app_args())
    create_task(app)
    queue = settings["config_source"]["task_default_queue"]
    return app.start(worker_argv(args.concurrency, queue, f"scalable-pipeline-{os.getpid()}@%h")) or 0


def add_worker_parser(commands) -> None:
    """Register ``worker`` on the CLI's subcommands."""
    parser = commands.add_parser("worker", help="start a Celery worker that runs the pipeline's steps (executor celery)")
    parser.add_argument("--concurrency", type=int, help="steps at once (default: CPU count)")
    parser.add_argument("--queue", help=f"queue to take steps from (default: ${QUEUE_ENV}, else dagster)")
    parser.set_defaults(handler=run_worker)
