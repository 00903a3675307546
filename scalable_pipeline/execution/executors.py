"""The executor of every pipeline job, chosen by deployment: ``$SCALABLE_PIPELINE_EXECUTOR``.

``in_process`` (every step in the run's process), ``multiprocess`` (the default: a process per step,
forked from a server with the project preloaded) or ``celery`` (steps sent to Celery workers started
with ``scalable-pipeline worker``; needs the ``celery`` extra and a PostgreSQL instance). The Celery
broker, result backend and queue come from the variables below, read by the run and the workers alike.
"""

import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import dagster as dg

EXECUTOR_ENV = "SCALABLE_PIPELINE_EXECUTOR"
BROKER_ENV = "SCALABLE_PIPELINE_CELERY_BROKER"
BACKEND_ENV = "SCALABLE_PIPELINE_CELERY_BACKEND"
QUEUE_ENV = "SCALABLE_PIPELINE_CELERY_QUEUE"

EXECUTOR_CHOICES = ("in_process", "multiprocess", "celery")
DEFAULT_EXECUTOR = "multiprocess"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
# Results travel back to the run over the broker connection (``rpc://``): no second service to run.
DEFAULT_BACKEND = "rpc://"
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
BACKEND_SCHEMES = ("rpc", "redis", "rediss")


class ExecutorSettingError(ValueError):
    """An executor setting in the environment is invalid; the message names the variable."""


def executor_choice(environ: Mapping[str, str] = os.environ) -> str:
    """The validated value of ``$SCALABLE_PIPELINE_EXECUTOR`` (``multiprocess`` when unset or empty)."""
    choice = environ.get(EXECUTOR_ENV, "").strip() or DEFAULT_EXECUTOR
    if choice not in EXECUTOR_CHOICES:
        raise ExecutorSettingError(f"{EXECUTOR_ENV}={choice!r} is not one of {', '.join(EXECUTOR_CHOICES)}")
    return choice


def _checked_url(url: str, variable: str, schemes: tuple[str, ...], needs_host: bool) -> str:
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname)
    except ValueError as error:
        raise ExecutorSettingError(f"{variable}: not a URL ({error})") from None
    if parts.scheme not in schemes:
        raise ExecutorSettingError(f"{variable}: scheme {parts.scheme!r} is not one of {', '.join(schemes)}")
    if needs_host and not has_host:
        raise ExecutorSettingError(f"{variable}: the URL names no host")
    return url


def broker_url(environ: Mapping[str, str] = os.environ) -> str:
    """The Celery broker: ``$SCALABLE_PIPELINE_CELERY_BROKER``, else the local Redis (``redis://127.0.0.1:6379/0``)."""
    return _checked_url(environ.get(BROKER_ENV) or DEFAULT_BROKER, BROKER_ENV, BROKER_SCHEMES, needs_host=True)


def backend_url(environ: Mapping[str, str] = os.environ) -> str:
    """The Celery result backend: ``$SCALABLE_PIPELINE_CELERY_BACKEND``, else ``rpc://`` (over the broker)."""
    url = environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    return _checked_url(url, BACKEND_ENV, BACKEND_SCHEMES, needs_host=not url.startswith("rpc:"))


def celery_queue(environ: Mapping[str, str] = os.environ) -> str:
    """The queue steps are sent to and workers listen on: ``$SCALABLE_PIPELINE_CELERY_QUEUE``, else ``dagster``."""
    queue = environ.get(QUEUE_ENV) or DEFAULT_QUEUE
    if not queue.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ExecutorSettingError(f"{QUEUE_ENV}={queue!r}: use letters, digits, '-', '_' and '.' only")
    return queue


def celery_app_settings(environ: Mapping[str, str] = os.environ) -> dict:
    """What the run and the workers must agree on: broker, backend and the Celery app's settings."""
    return {
        "broker": broker_url(environ),
        "backend": backend_url(environ),
        "config_source": {"task_default_queue": celery_queue(environ)},
    }


# What the step-process server imports once, before it forks any step (see step_process).
STEP_PROCESS_MODULE = "scalable_pipeline.assembly.preload"


def start_step_server(environ: Mapping[str, str] = os.environ) -> None:
    """Boot the server the multiprocess executor forks step processes from, now rather than at the run's
    first step, so that it loads the project while this process loads it too (about 1.3 s off a run).
    Nothing to do when the jobs run on another executor.

    The executor reuses a running server. Call it once the environment (and stderr) the steps should
    inherit is final: they inherit the server's, not the run's."""
    if executor_choice(environ) != "multiprocess":
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload([STEP_PROCESS_MODULE])
    multiprocessing.forkserver.ensure_running()


def parallel_executor_config(config: dict) -> dict:
    """Separate processes per step, forked from a server with the project preloaded (seconds saved per
    step); ``max_concurrent`` (default: CPU count) passes through, and the scaling resource reads it."""
    preloaded = {"start_method": {"forkserver": {"preload_modules": [STEP_PROCESS_MODULE]}}}
    return {**preloaded, **({"max_concurrent": config["max_concurrent"]} if config.get("max_concurrent") else {})}


parallel_executor = dg.multiprocess_executor.configured(
    parallel_executor_config,
    config_schema={"max_concurrent": dg.Field(int, is_required=False, description="Steps at once (default: CPU count).")},
)


def celery_executor(environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """dagster-celery's executor on the broker, backend and queue of the environment (the ``celery`` extra)."""
    try:
        from dagster_celery import celery_executor as dagster_celery_executor
    except ImportError:
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV}=celery needs the celery extra: pip install 'scalable_pipeline[celery]'"
        ) from None
    return dagster_celery_executor.configured(celery_app_settings(environ), name="celery")


def pipeline_executor(environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The executor of every pipeline job for this deployment (``$SCALABLE_PIPELINE_EXECUTOR``)."""
    choice = executor_choice(environ)
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "celery":
        return celery_executor(environ)
    return parallel_executor
