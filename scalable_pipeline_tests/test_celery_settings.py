"""The executor choice and the Celery settings as pure functions, and the worker's refusals (no services)."""

import socket

import pytest

from scalable_pipeline.cli.main import main
from scalable_pipeline.cli.worker import WorkerRefused, check_broker, redacted, worker_argv
from scalable_pipeline.execution.executors import (
    BACKEND_ENV,
    BROKER_ENV,
    EXECUTOR_ENV,
    QUEUE_ENV,
    ExecutorSettingError,
    backend_url,
    broker_url,
    celery_app_settings,
    executor_choice,
    pipeline_executor,
)


@pytest.mark.parametrize(
    "value, choice", [(None, "multiprocess"), ("", "multiprocess"), ("in_process", "in_process"), ("celery", "celery")]
)
def test_executor_choice(value, choice):
    assert executor_choice({} if value is None else {EXECUTOR_ENV: value}) == choice


def test_unknown_executor_names_the_variable_and_the_choices():
    with pytest.raises(ExecutorSettingError) as error:
        executor_choice({EXECUTOR_ENV: "dask"})
    assert str(error.value) == "SCALABLE_PIPELINE_EXECUTOR='dask' is not one of in_process, multiprocess, celery"


def test_each_choice_gives_its_executor():
    assert pipeline_executor({}).name == "multiprocess"
    assert pipeline_executor({EXECUTOR_ENV: "in_process"}).name == "in_process"
    celery = pipeline_executor({EXECUTOR_ENV: "celery", BROKER_ENV: "pyamqp://guest@rabbit:5672//"})
    assert celery.name == "celery"


def test_celery_settings_defaults_and_overrides():
    assert celery_app_settings({}) == {
        "broker": "redis://127.0.0.1:6379/0",
        "backend": "rpc://",
        "config_source": {"task_default_queue": "dagster"},
    }
    settings = celery_app_settings(
        {BROKER_ENV: "pyamqp://guest@127.0.0.1:5672//", BACKEND_ENV: "redis://cache:6379/1", QUEUE_ENV: "hour-10"}
    )
    assert settings == {
        "broker": "pyamqp://guest@127.0.0.1:5672//",
        "backend": "redis://cache:6379/1",
        "config_source": {"task_default_queue": "hour-10"},
    }


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
