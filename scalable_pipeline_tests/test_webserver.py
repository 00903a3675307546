"""What `dagster dev` shows: the webserver, started on the project's workspace, serves the four assets,
their checks, and the metadata of a materialized hour: asked over the UI's own GraphQL API, and rendered
by a real browser (headless Chromium, from ``SCALABLE_PIPELINE_TEST_CHROMIUM``)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import dagster as dg
import pytest

from scalable_pipeline.dagster_home import PROJECT_DAGSTER_YAML
from scalable_pipeline_tests.conftest import PEAK_PARTITION, materialize_hour

PROJECT_ROOT = PROJECT_DAGSTER_YAML.parent
CHROMIUM = os.environ.get("SCALABLE_PIPELINE_TEST_CHROMIUM")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
]
ASSETS_QUERY = """{ assetNodes { assetKey { path } groupName
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""
MATERIALIZATION_QUERY = """query ($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) { ... on Asset {
    assetMaterializations(partitions: [$partition], limit: 1) { partition
      metadataEntries { label __typename } } } } }"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ui")
    home, data_dir = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copyfile(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test(temp_dir=str(home)) as instance:
        patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(data_dir))
        assert materialize_hour(PEAK_PARTITION, instance).success
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SCALABLE_PIPELINE_DATA_DIR": str(data_dir)}
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if graphql(port, ASSETS_QUERY)["assetNodes"]:
                    break
            except (OSError, KeyError, TypeError):
                pass
            assert time.monotonic() < deadline and server.poll() is None, "webserver did not come up"
            time.sleep(0.5)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ui_serves_assets_checks_and_metadata(webserver):
    nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(webserver, ASSETS_QUERY)["assetNodes"]}
    assert set(nodes) >= {("raw_volume",), ("chunk_partitions",), ("processed_chunks",), ("consolidated_output",)}
    assert {n["groupName"] for n in nodes.values()} == {"scalable_data_processing"}
    checks = {c["name"]: c["blocking"] for c in nodes[("processed_chunks",)]["assetChecksOrError"]["checks"]}
    assert {"invalid_ratio", "duplicate_ratio", "chunks_complete"} <= set(checks)

    asset = graphql(webserver, MATERIALIZATION_QUERY, {"key": {"path": ["consolidated_output"]}, "partition": PEAK_PARTITION})
    [materialization] = asset["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e["__typename"] for e in materialization["metadataEntries"]}
    assert materialization["partition"] == PEAK_PARTITION
    assert entries["region_totals"] == "TableMetadataEntry"
    assert {"raw_records", "valid", "invalid", "duplicates"} <= set(entries)


def rendered_page(port: int, path: str) -> str:
    """The page's DOM after the browser ran the UI's JavaScript."""
    with tempfile.TemporaryDirectory() as profile:
        completed = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", f"http://127.0.0.1:{port}{path}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    return completed.stdout


@pytest.mark.skipif(not CHROMIUM, reason="SCALABLE_PIPELINE_TEST_CHROMIUM is not set (browser tests off)")
def test_browser_renders_the_hour_metadata_and_the_gates(webserver):
    partition = urllib.parse.quote(PEAK_PARTITION)
    events_page = rendered_page(webserver, f"/assets/consolidated_output?view=events&partition={partition}")
    for text in ("region_totals", "raw_records", "northeast", "southwest", "dagster/row_count"):
        assert text in events_page, f"{text!r} not rendered on the consolidated_output events page"
    checks_page = rendered_page(webserver, "/assets/processed_chunks?view=checks")
    for gate in ("invalid_ratio", "duplicate_ratio", "chunks_complete"):
        assert gate in checks_page, f"gate {gate!r} not rendered on the processed_chunks checks page"
