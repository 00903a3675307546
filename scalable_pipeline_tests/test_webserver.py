"""What `dagster dev` shows: started on the project's workspace with a temporary DAGSTER_HOME on a free
loopback port, it serves the four assets, their checks with severities and the metadata of a hour
(asked over the UI's own GraphQL API); and in a real browser (Playwright driving Debian's Chromium,
never a downloaded one) a user materializes the latest hour from the UI and sees the assets, the checks
with their severities and the by-partition plots. Screenshots are kept as test artifacts (the folder is
printed; ``SCALABLE_PIPELINE_TEST_ARTIFACTS`` chooses it)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from scalable_pipeline.core.constants import JOB_NAME
from scalable_pipeline.core.dagster_home import PROJECT_DAGSTER_YAML
from scalable_pipeline.pipelines.config import DEFAULT_CONFIG_PATH, find_spec
from scalable_pipeline.publishing.versioned_store import VersionedStore
from scalable_pipeline_tests.conftest import PEAK_PARTITION, PIPELINE_ASSETS, materialize_hour
from scalable_pipeline_tests.drills import wait_for
from scalable_pipeline_tests.webserver import free_port, graphql

pytestmark = pytest.mark.slow

PROJECT_ROOT = PROJECT_DAGSTER_YAML.parent
CHROMIUM = os.environ.get("SCALABLE_PIPELINE_TEST_CHROMIUM") or shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ASSETS_QUERY = """{ assetNodes { assetKey { path } groupName
  assetChecksOrError { ... on AssetChecks { checks { name blocking description } } } } }"""
MATERIALIZATION_QUERY = """query ($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) { ... on Asset {
    assetMaterializations(partitions: [$partition], limit: 1) { partition
      metadataEntries { label __typename } } } } }"""
RUNS_QUERY = """query ($partition: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
  ... on Runs { results { runId status } } } }"""
UI_RUN_SECONDS = 900  # a run launched from the UI: queued, then every step in its own process


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """``dagster dev`` (webserver and daemon) on a free port, with one hour materialized beforehand."""
    tmp_path = tmp_path_factory.mktemp("ui")
    home, data_dir = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copyfile(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test(temp_dir=str(home)) as instance:
        patch.setenv("SCALABLE_PIPELINE_DATA_DIR", str(data_dir))
        assert materialize_hour(PEAK_PARTITION, instance).success
    shutil.copyfile(PROJECT_DAGSTER_YAML, home / "dagster.yaml")  # instance_for_test wrote its own
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SCALABLE_PIPELINE_DATA_DIR": str(data_dir)}
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the webserver, daemon and code servers stop with it
    )
    try:
        wait_for(lambda: serves_assets(port), "dagster dev to serve the assets", [server], timeout=180)
        print(f"dagster dev answered after {time.monotonic() - started:.1f} s")
        yield port, data_dir
    finally:
        # The whole group at once: nothing of this deployment is kept (a graceful stop takes 10-30 s more).
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def serves_assets(port: int) -> bool:
    try:
        return bool(graphql(port, ASSETS_QUERY)["assetNodes"])
    except (OSError, KeyError, TypeError):  # not answering yet, or answering before the code location loaded
        return False


def test_ui_serves_assets_checks_with_severities_and_metadata(dagster_dev):
    port, _ = dagster_dev
    nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(port, ASSETS_QUERY)["assetNodes"]}
    assert set(nodes) >= {(asset,) for asset in PIPELINE_ASSETS}
    assert {n["groupName"] for n in nodes.values()} == {"scalable_data_processing"}
    checks = {c["name"]: c for node in nodes.values() for c in node["assetChecksOrError"]["checks"]}
    assert len(checks) == 12
    for name, check in checks.items():
        severity = "WARN" if name == "volume_anomaly" else "ERROR"
        assert f"Severity: {severity}" in check["description"], name
        assert check["blocking"] == (severity == "ERROR"), name

    asset = graphql(port, MATERIALIZATION_QUERY, {"key": {"path": ["consolidated_output"]}, "partition": PEAK_PARTITION})
    [materialization] = asset["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e["__typename"] for e in materialization["metadataEntries"]}
    assert materialization["partition"] == PEAK_PARTITION
    assert entries["region_totals"] == "TableMetadataEntry"
    assert {"raw_records", "valid", "invalid", "duplicates"} <= set(entries)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("SCALABLE_PIPELINE_TEST_ARTIFACTS") or tmp_path_factory.mktemp("ui_screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"UI screenshots: {folder}")
    return folder


def ended_run_status(port: int, partition: str) -> str | None:
    """The status of the run of ``partition`` once it has ended (None before)."""
    runs = graphql(port, RUNS_QUERY, {"partition": partition})["runsOrError"]["results"]
    return runs[0]["status"] if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM, reason="no Chromium (install Debian's `chromium` or set SCALABLE_PIPELINE_TEST_CHROMIUM)")
def test_materialize_from_the_ui_then_see_assets_checks_and_plots(dagster_dev, artifacts):
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed").sync_playwright
    port, data_dir = dagster_dev
    base = f"http://127.0.0.1:{port}"
    partition = find_spec(DEFAULT_CONFIG_PATH, JOB_NAME).partitions_def.get_last_partition_key()  # recent: the UI's plots show it
    # The first visit's newsletter dialog opens on a timer, possibly over the materialize dialog (whose overlay
    # then blocks its Skip button): mark it seen, as its Skip button does, before any page loads.
    assert graphql(port, "mutation { setNuxSeen }")["setNuxSeen"] is True
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{base}/asset-groups/scalable_data_processing", wait_until="networkidle")
            for asset in PIPELINE_ASSETS:
                page.get_by_text(asset, exact=True).first.wait_for()
            page.get_by_role("button", name="Materialize all…").click()
            dialog = page.get_by_role("dialog")
            keys = dialog.get_by_placeholder("No matching partitions")
            keys.fill(partition)
            keys.press("Enter")
            dialog.get_by_text("1 partition", exact=True).wait_for()
            page.screenshot(path=artifacts / "1-materialize-dialog.png")
            dialog.get_by_role("button", name="Launch 1 run").click()
            ended = wait_for(
                lambda: ended_run_status(port, partition), "the run launched from the UI to end", timeout=UI_RUN_SECONDS
            )
            assert ended == "SUCCESS"

            page.goto(f"{base}/asset-groups/scalable_data_processing", wait_until="networkidle")
            page.get_by_text("4 / 4 Passed").first.wait_for()  # processed_chunks' and consolidated_output's checks
            page.get_by_text("2 / 2 Passed").first.wait_for()  # raw_volume's and chunk_partitions'
            page.screenshot(path=artifacts / "2-asset-graph.png")

            page.goto(f"{base}/assets/consolidated_output?view=checks", wait_until="networkidle")
            for gate in ("output_lineage", "reconciliation", "unique_order_id", "volume_anomaly"):
                page.get_by_text(gate).first.wait_for()
            page.get_by_text(gate).first.click()
            page.get_by_text("This is a non-blocking asset check.").wait_for()
            page.get_by_text("Severity: WARN (not blocking").wait_for()
            page.screenshot(path=artifacts / "3-checks-volume-anomaly.png", full_page=True)
            page.goto(f"{base}/assets/processed_chunks?view=checks", wait_until="networkidle")
            page.get_by_text("invalid_ratio").first.click()
            page.get_by_text("This is a blocking asset check.").wait_for()
            page.get_by_text("Severity: ERROR (blocking").wait_for()

            page.goto(f"{base}/assets/consolidated_output", wait_until="networkidle")
            page.get_by_text(partition).first.wait_for()  # the latest materialization is the hour just run
            page.get_by_role("button", name="Plots").click()
            page.get_by_text("When graphing values by partition").wait_for()
            for label in ("valid", "raw_records", "duplicates"):
                page.get_by_text(label, exact=True).first.wait_for()
            page.wait_for_function("document.querySelectorAll('canvas').length >= 6")
            page.screenshot(path=artifacts / "4-plots-by-partition.png", full_page=True)
        finally:
            browser.close()
    assert VersionedStore(data_dir).hour_table("consolidated_output").hour_files(partition)
