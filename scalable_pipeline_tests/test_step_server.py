"""The step-process server booted ahead of the run (``executors.start_step_server``) is the one the job's
multiprocess executor forks its steps from. Checked in a fresh interpreter: the server is per process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

JOB_MODULE = textwrap.dedent(
    """
    import os
    import dagster as dg
    from scalable_pipeline.execution.executors import parallel_executor

    @dg.op
    def where() -> int:
        return os.getppid()

    @dg.job(executor_def=parallel_executor)
    def probe():
        where()

    def job():
        return probe
    """
)
SCRIPT = textwrap.dedent(
    """
    import json
    import dagster as dg
    import psutil
    from scalable_pipeline.execution.executors import start_step_server
    from scalable_pipeline_tests.drills import wait_for
    from probe_job import job

    def servers():
        return [c for c in psutil.Process().children() if "forkserver" in " ".join(c.cmdline())]

    if __name__ == "__main__":  # the server imports this file again as __mp_main__
        start_step_server()
        (server,) = wait_for(servers, "the step server")  # booted now, before any run (named once it has exec'd)
        with dg.DagsterInstance.get() as instance, dg.execute_job(dg.reconstructable(job), instance=instance) as result:
            print(json.dumps({
                "server_pid": server.pid,
                "server_command": server.cmdline(),
                "step_parent_pid": result.output_for_node("where"),
                "servers_after": [c.pid for c in servers()],
            }))
    """
)


def test_steps_fork_from_the_server_started_before_the_run(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "probe_job.py").write_text(JOB_MODULE)
    probe = tmp_path / "probe.py"
    probe.write_text(SCRIPT)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": os.pathsep.join(filter(None, [root, str(tmp_path)]))}
    done = subprocess.run(
        [sys.executable, str(probe)], check=False, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "forkserver" in " ".join(report["server_command"])
    assert "scalable_pipeline.assembly.preload" in " ".join(report["server_command"])  # the project is preloaded
    assert report["step_parent_pid"] == report["server_pid"]  # the executor reused it: no second boot
    assert report["servers_after"] == [report["server_pid"]]


def test_no_step_server_for_other_executors():
    for choice in ("in_process", "celery"):
        probe = "import psutil; from scalable_pipeline.execution.executors import start_step_server; start_step_server(); print(len(psutil.Process().children()))"
        env = {**os.environ, "SCALABLE_PIPELINE_EXECUTOR": choice}
        done = subprocess.run([sys.executable, "-c", probe], check=False, env=env, capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr[-2000:]


def test_loading_the_definitions_leaves_the_postgresql_client_unloaded():
    """psycopg2 takes 0.1 s to load; every run, step server and code location would pay it for a source
    most deployments do not use. It loads when a PostgreSQL source or its sensor reads."""
    probe = "import sys, scalable_pipeline.definitions; print(sorted(m for m in sys.modules if m.startswith('psycopg2')))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    probe = "import sys; from scalable_pipeline.sources.postgres_orders import connect; print('psycopg2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"
