"""The executor of every pipeline job, chosen by deployment: ``$SCALABLE_PIPELINE_EXECUTOR``.

``auto`` (the default: each run in process or multiprocess, as its run config says, else as the machine
needs), ``in_process`` (every step in the run's process), ``multiprocess`` (a process per step, forked
from a server with the project preloaded) or ``celery`` (steps sent to Celery workers started with
``scalable-pipeline worker``; needs the ``celery`` extra and a PostgreSQL instance). The Celery
broker, result backend, queue and Redis visibility timeout come from the variables below, read by the
run and the workers alike.

A lost worker never hangs a run: workers acknowledge a step once it has ended (``task_acks_late``), so
the broker hands the step of a worker that died to a live worker (RabbitMQ as soon as the worker's
connection closes; Redis once the step has been unacknowledged for the visibility timeout). A step whose
pool process died while its worker lives is sent again at once (``task_retry_on_worker_lost``), twice at
most: a step that kills its process every time fails the run rather than looping; should that retry not
be sent, the step is put back (``task_reject_on_worker_lost``). The step's result reaches the waiting run
under the same task id, over ``rpc://`` too. A step that runs twice counts no row twice (checkpoints are
written whole and ranges are claimed).
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
VISIBILITY_TIMEOUT_ENV = "SCALABLE_PIPELINE_CELERY_VISIBILITY_TIMEOUT"

EXECUTOR_CHOICES = ("auto", "in_process", "multiprocess", "celery")
DEFAULT_EXECUTOR = "auto"
# The two modes of the ``auto`` executor; a run names one in its run config (``execution: {config: {mode: ...}}``),
# else it runs in the mode its job's tag names (the machine's, chosen when the definitions load).
EXECUTOR_MODES = ("in_process", "multiprocess")
AUTO_EXECUTOR = "auto"
EXECUTOR_MODE_TAG = "scalable_pipeline/executor_mode"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
# Results travel back to the run over the broker connection (``rpc://``): no second service to run.
DEFAULT_BACKEND = "rpc://"
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
BACKEND_SCHEMES = ("rpc", "redis", "rediss")
REDIS_SCHEMES = ("redis", "rediss")
# Redis: a step unacknowledged this long is handed to another worker, as if its worker had died. Longer
# than the longest step (a chunk of the 100M-record hour takes about two minutes on 2 CPUs), or a slow
# step also runs elsewhere (wasted work, never a wrong count); it bounds the wait after a lost worker.
DEFAULT_VISIBILITY_TIMEOUT = 600
# Redis: every consumer looks for steps past their visibility timeout this often (kombu's interval; its
# default throttle of 10 would make it every 100 s).
UNACKED_RESTORE_SECONDS = 10
# A step whose pool process dies (OOM killer, SIGKILL) is sent again at most this many times, then fails:
# put back without a count (``task_reject_on_worker_lost`` alone), a step that always kills its process
# would be taken again forever. ``execute_plan`` is dagster-celery's step task.
WORKER_LOST_RETRIES = 2
STEP_TASK_ANNOTATIONS = {"execute_plan": {"max_retries": WORKER_LOST_RETRIES, "default_retry_delay": 1}}
# dagster-celery's broker transport options (retries of a publish); config_source replaces the whole dict.
PUBLISH_RETRY_OPTIONS = {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class ExecutorSettingError(ValueError):
    """An executor setting in the environment is invalid; the message names the variable."""


def executor_choice(environ: Mapping[str, str] = os.environ) -> str:
    """The validated value of ``$SCALABLE_PIPELINE_EXECUTOR`` (``auto`` when unset or empty)."""
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


def visibility_timeout(environ: Mapping[str, str] = os.environ) -> int:
    """Seconds a Redis broker waits for a step's acknowledgement before handing the step to another worker:
    ``$SCALABLE_PIPELINE_CELERY_VISIBILITY_TIMEOUT``, else 600."""
    value = environ.get(VISIBILITY_TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_VISIBILITY_TIMEOUT
    if not value.isdigit() or int(value) < 1:
        raise ExecutorSettingError(f"{VISIBILITY_TIMEOUT_ENV}={value!r}: a whole number of seconds, at least 1")
    return int(value)


def broker_transport_options(broker: str, environ: Mapping[str, str] = os.environ) -> dict:
    """The broker's transport options: dagster-celery's publish retries, and on Redis the visibility timeout."""
    seconds = visibility_timeout(environ)  # checked whatever the broker, so that a typo never waits for Redis
    if urlsplit(broker).scheme not in REDIS_SCHEMES:
        return dict(PUBLISH_RETRY_OPTIONS)  # RabbitMQ hands back a dead worker's steps when its connection closes
    restore = {"unacked_restore_interval": min(UNACKED_RESTORE_SECONDS, seconds), "unacked_restore_throttle": 1}
    return {**PUBLISH_RETRY_OPTIONS, "visibility_timeout": seconds, **restore}


def celery_app_settings(environ: Mapping[str, str] = os.environ) -> dict:
    """What the run and the workers must agree on: broker, backend and the Celery app's settings.

    Steps are acknowledged when they end, not when they start, so that the steps of a lost worker go to
    another worker and the run completes; a step whose pool process dies is sent again, twice at most, and
    then fails the run (see the module)."""
    broker = broker_url(environ)
    return {
        "broker": broker,
        "backend": backend_url(environ),
        "config_source": {
            "task_default_queue": celery_queue(environ),
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "task_retry_on_worker_lost": True,
            "task_annotations": STEP_TASK_ANNOTATIONS,
            "broker_transport_options": broker_transport_options(broker, environ),
        },
    }


# What the step-process server imports once, before it forks any step (see step_process).
STEP_PROCESS_MODULE = "scalable_pipeline.assembly.preload"


def start_step_server(environ: Mapping[str, str] = os.environ) -> None:
    """Boot the server the multiprocess executor forks step processes from, now rather than at the run's
    first step, so that it loads the project while this process loads it too (about 1.3 s off a run).
    Nothing to do when the jobs run on another executor.

    The executor reuses a running server. Call it once the environment (and stderr) the steps should
    inherit is final: they inherit the server's, not the run's."""
    if executor_choice(environ) not in ("multiprocess", AUTO_EXECUTOR):
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


def auto_executor_config(config: dict) -> dict:
    """The ``auto`` executor's config as ``multi_or_in_process_executor``'s: its mode, and for multiprocess the
    preloaded step-process server and ``max_concurrent``."""
    if config["mode"] == "in_process":
        return {"in_process": {}}
    return {"multiprocess": parallel_executor_config(config)}


def auto_executor(default_mode: str) -> dg.ExecutorDefinition:
    """Dagster's ``multi_or_in_process_executor``: in process or a process per step, as the run's config says
    (``mode``), else ``default_mode``."""
    return dg.multi_or_in_process_executor.configured(
        auto_executor_config,
        name=AUTO_EXECUTOR,
        config_schema={
            "mode": dg.Field(
                dg.Enum("ExecutorMode", [dg.EnumValue(mode) for mode in EXECUTOR_MODES]),
                default_value=default_mode,
                description="in_process: every step in the run's process; multiprocess: a process per step.",
            ),
            "max_concurrent": dg.Field(int, is_required=False, description="multiprocess: steps at once (default: CPU count)."),
        },
    )


def run_executor_mode(executor_name: str, run_config: Mapping, tags: Mapping[str, str]) -> str | None:
    """The mode an ``auto`` executor's run runs in: its run config's, else its job's tag (None for another executor)."""
    if executor_name != AUTO_EXECUTOR:
        return None
    return ((run_config.get("execution") or {}).get("config") or {}).get("mode") or tags.get(EXECUTOR_MODE_TAG)


def celery_executor(environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """dagster-celery's executor on the broker, backend and queue of the environment (the ``celery`` extra)."""
    try:
        from dagster_celery import celery_executor as dagster_celery_executor
    except ImportError:
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV}=celery needs the celery extra: pip install 'scalable_pipeline[celery]'"
        ) from None
    return dagster_celery_executor.configured(celery_app_settings(environ), name="celery")


def pipeline_executor(default_mode: str, environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The executor of every pipeline job for this deployment (``$SCALABLE_PIPELINE_EXECUTOR``); ``auto`` runs in
    ``default_mode`` unless a run's config names one."""
    choice = executor_choice(environ)
    if choice == AUTO_EXECUTOR:
        return auto_executor(default_mode)
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "celery":
        return celery_executor(environ)
    return parallel_executor
