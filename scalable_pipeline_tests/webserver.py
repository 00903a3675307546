"""``dagster-webserver`` on a free loopback port and the UI's own GraphQL API, for the tests and benchmarks that
talk to the UI."""

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from scalable_pipeline_tests.daemon import PROJECT, WORKSPACE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """The ``data`` of the answer of the webserver on ``port`` to ``query``."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def start_webserver(env: dict, log: Path, port: int, workspace: Path = WORKSPACE) -> subprocess.Popen:
    """``dagster-webserver`` on ``workspace`` (default the project's) in its own process group (with its code server),
    its output appended to ``log``; ``daemon.stop_daemon`` stops it."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-webserver")), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
