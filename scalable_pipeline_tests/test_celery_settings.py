"""The executor choice and the Celery settings as pure functions, and the worker's refusals (no services)."""

import socket

import pytest
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from scalable_pipeline.cli.main import main
from scalable_pipeline.cli.worker import WorkerRefused, check_broker, redacted, worker_argv
from scalable_pipeline.execution.executors import (
    BACKEND_ENV,
    BROKER_ENV,
    EXECUTOR_ENV,
    QUEUE_ENV,
    VISIBILITY_TIMEOUT_ENV,
    ExecutorSettingError,
    backend_url,
    broker_url,
    celery_app_settings,
    executor_choice,
    pipeline_executor,
    visibility_timeout,
)


@pytest.mark.parametrize(
    "value, choice",
    [(None, "auto"), ("", "auto"), ("multiprocess", "multiprocess"), ("in_process", "in_process"), ("celery", "celery")],
)
def test_executor_choice(value, choice):
    assert executor_choice({} if value is None else {EXECUTOR_ENV: value}) == choice


def test_unknown_executor_names_the_variable_and_the_choices():
    with pytest.raises(ExecutorSettingError) as error:
        executor_choice({EXECUTOR_ENV: "dask"})
    assert str(error.value) == "SCALABLE_PIPELINE_EXECUTOR='dask' is not one of auto, in_process, multiprocess, celery"


def test_each_choice_gives_its_executor():
    assert pipeline_executor("in_process", {}).name == "auto"
    assert pipeline_executor("in_process", {EXECUTOR_ENV: "multiprocess"}).name == "multiprocess"
    assert pipeline_executor("multiprocess", {EXECUTOR_ENV: "in_process"}).name == "in_process"
    celery = pipeline_executor("in_process", {EXECUTOR_ENV: "celery", BROKER_ENV: "pyamqp://guest@rabbit:5672//"})
    assert celery.name == "celery"


REDIS_TRANSPORT = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "visibility_timeout": 600,
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
}
LOST_WORKER = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "task_retry_on_worker_lost": True,
    "task_annotations": {"execute_plan": {"max_retries": 2, "default_retry_delay": 1}},
}


def test_celery_settings_defaults_and_overrides():
    assert celery_app_settings({}) == {
        "broker": "redis://127.0.0.1:6379/0",
        "backend": "rpc://",
        "config_source": {"task_default_queue": "dagster", **LOST_WORKER, "broker_transport_options": REDIS_TRANSPORT},
    }
    settings = celery_app_settings(
        {BROKER_ENV: "pyamqp://guest@127.0.0.1:5672//", BACKEND_ENV: "redis://cache:6379/1", QUEUE_ENV: "hour-10"}
    )
    assert settings == {
        "broker": "pyamqp://guest@127.0.0.1:5672//",
        "backend": "redis://cache:6379/1",
        "config_source": {
            "task_default_queue": "hour-10",
            **LOST_WORKER,
            # RabbitMQ hands a dead worker's steps back when its connection closes: no visibility timeout
            "broker_transport_options": {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        },
    }


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:6379/0", "rediss://cache:6380/2", "pyamqp://guest@rabbit:5672//"])
def test_steps_are_acknowledged_when_they_end_and_sent_again_when_their_process_dies(broker):
    config = celery_app_settings({BROKER_ENV: broker})["config_source"]
    assert config["task_acks_late"] is True and config["task_reject_on_worker_lost"] is True
    # a step whose process dies every time is sent twice more, then fails the run (no endless loop)
    assert config["task_retry_on_worker_lost"] is True and config["task_annotations"]["execute_plan"]["max_retries"] == 2


@pytest.mark.parametrize("value, seconds", [(None, 600), ("", 600), (" 3600 ", 3600), ("20", 20), ("4", 4)])
def test_visibility_timeout_from_the_environment(value, seconds):
    environ = {} if value is None else {VISIBILITY_TIMEOUT_ENV: value}
    assert visibility_timeout(environ) == seconds
    options = celery_app_settings(environ)["config_source"]["broker_transport_options"]
    assert options["visibility_timeout"] == seconds
    # every consumer looks for steps past the timeout every 10 s (sooner when the timeout is shorter)
    assert options["unacked_restore_interval"] == min(10, seconds) and options["unacked_restore_throttle"] == 1


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "10m", "ten"])
def test_bad_visibility_timeout_names_the_variable(value):
    with pytest.raises(ExecutorSettingError) as error:
        celery_app_settings({VISIBILITY_TIMEOUT_ENV: value})
    assert str(error.value) == f"{VISIBILITY_TIMEOUT_ENV}={value!r}: a whole number of seconds, at least 1"
    with pytest.raises(ExecutorSettingError):  # refused on RabbitMQ too, where it is not used
        celery_app_settings({VISIBILITY_TIMEOUT_ENV: value, BROKER_ENV: "pyamqp://guest@rabbit:5672//"})


def test_the_worker_app_and_its_step_task_get_the_settings():
    """What ``scalable-pipeline worker`` builds (no broker needed): dagster-celery's app from the settings
    (the run's executor is configured with the same ones), its step task acknowledged late and put back
    when its process dies."""
    settings = celery_app_settings({VISIBILITY_TIMEOUT_ENV: "900", QUEUE_ENV: "hour-10"})
    app = make_app(CeleryExecutor.for_cli(**settings).app_args())
    task = create_task(app)
    app.finalize()  # binds the task: the settings and the annotations apply
    assert (task.acks_late, task.reject_on_worker_lost, task.retry_on_worker_lost) == (True, True, True)
    assert (task.max_retries, task.default_retry_delay) == (2, 1)
    assert app.conf.task_default_queue == "hour-10"
    assert app.conf.broker_transport_options == {**REDIS_TRANSPORT, "visibility_timeout": 900}


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@cache:6380/2", "pyamqp://guest@127.0.0.1:5672//", "amqp://h//"]
)
def test_broker_urls_accepted(url):
    assert broker_url({BROKER_ENV: url}) == url


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://127.0.0.1:6379", "scheme 'http' is not one of redis, rediss, amqp, amqps, pyamqp"),
        ("127.0.0.1:6379", "scheme '' is not one of"),
        ("redis:///0", "the URL names no host"),
        ("redis://[::1/0", "not a URL"),
    ],
)
def test_broker_urls_refused_with_the_variable_named(url, problem):
    with pytest.raises(ExecutorSettingError) as error:
        broker_url({BROKER_ENV: url})
    assert str(error.value).startswith(f"{BROKER_ENV}: {problem}")


def test_backend_url_and_queue_validation():
    assert backend_url({}) == "rpc://"
    with pytest.raises(ExecutorSettingError, match=rf"^{BACKEND_ENV}: scheme 'db\+postgresql' "):
        backend_url({BACKEND_ENV: "db+postgresql://x/y"})
    with pytest.raises(ExecutorSettingError, match=f"^{QUEUE_ENV}="):
        celery_app_settings({QUEUE_ENV: "q; rm -rf /"})


def test_redacted_hides_only_the_password():
    assert redacted("pyamqp://guest:secret@rabbit:5672//") == "pyamqp://guest:***@rabbit:5672//"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("pyamqp://guest@rabbit//") == "pyamqp://guest@rabbit//"


def test_worker_argv():
    assert worker_argv(None, "dagster", "w@h") == [
        "worker",
        "--loglevel",
        "INFO",
        "--queues",
        "dagster",
        "--hostname",
        "w@h",
        "--prefetch-multiplier",
        "1",
    ]
    assert worker_argv(3, "q", "w@h")[-2:] == ["--concurrency", "3"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


@pytest.mark.parametrize("scheme", ["redis", "pyamqp"])
def test_unreachable_broker_is_refused(scheme):
    url = f"{scheme}://127.0.0.1:{closed_port()}/0"
    with pytest.raises(WorkerRefused, match=r"^broker .* is unreachable \("):
        check_broker(url, timeout=1)


def test_worker_refuses_sqlite_instance(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # no dagster.yaml: the SQLite default
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keeps runs in SQLite files; workers need PostgreSQL" in err


def test_worker_refuses_without_dagster_home(monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["worker"]) == 2
    assert capsys.readouterr().err.startswith("scalable-pipeline worker: error: DAGSTER_HOME is not set")


def test_worker_refuses_a_bad_broker_setting(monkeypatch, capsys):
    monkeypatch.setenv(BROKER_ENV, "http://nowhere")
    assert main(["worker"]) == 2
    assert capsys.readouterr().err.startswith(f"scalable-pipeline worker: error: {BROKER_ENV}: scheme 'http'")
