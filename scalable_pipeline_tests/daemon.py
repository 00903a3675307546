"""``dagster-daemon run`` in its own process group, for the tests and benchmarks that run hours through it,
and ``dagster job backfill`` (the job page's backfill is ``scalable_pipeline backfill``).

The daemon starts its code server and every run it launches (with their step processes) in its group, so
the whole group is what one stops, or kills as an operator's ``kill -9 -PGID`` would.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psutil

PROJECT = Path(__file__).resolve().parent.parent
WORKSPACE = PROJECT / "workspace.yaml"


def start_daemon(env: dict, log: Path, cwd: Path = PROJECT, workspace: Path = WORKSPACE) -> subprocess.Popen:
    """``dagster-daemon run`` on ``workspace`` (default the project's), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(workspace)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its code server and every run it launches are in it
        )


def live_members(group: int) -> list[psutil.Process]:
    """Processes of the process group that are not zombies (PID 1 here may never reap them)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def stop_daemon(daemon: subprocess.Popen, timeout: float = 60) -> None:
    """End a daemon still running and what it launched: SIGTERM to its group, SIGKILL after ``timeout`` s."""
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def daemon_ready(instance: dg.DagsterInstance) -> bool:
    """Every daemon the instance needs has reported healthy (the daemon loads its workspace before it starts them)."""
    statuses = instance.get_daemon_statuses()
    return bool(statuses) and all(status.healthy for status in statuses.values())


def dagster_job_backfill(env: dict, job: str, hours: list[str], workspace: Path = WORKSPACE) -> None:
    """``dagster job backfill`` of ``job`` from the first to the last of ``hours``: it queues one run per hour itself."""
    backfill = ["job", "backfill", "-w", str(workspace), "-j", job, "--from", hours[0], "--to", hours[-1], "--noprompt"]
    subprocess.run([sys.executable, "-m", "dagster", *backfill], cwd=PROJECT, env=env, check=True, capture_output=True)
