"""The README's first command: `python -m scalable_pipeline run` prints a summary of what it stored."""

import os
import re
import subprocess
import sys

import pandas as pd

from scalable_pipeline.cli import main
from scalable_pipeline.storage.versioned_store import VersionedStore


def summary_value(output: str, label: str) -> str:
    return re.search(rf"^{label}:\s+(\S+)", output, re.MULTILINE).group(1)


def test_run_prints_a_summary_that_matches_the_stored_data(tmp_path, monkeypatch, capsys, data_dir):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--partition", "2024-01-01-04:00", "--chunks", "3"]) == 0
    output = capsys.readouterr().out
    assert (tmp_path / "home" / "dagster.yaml").exists()  # the embedded default instance was set up

    store = VersionedStore(data_dir)
    processed = store.read_published_table("processed_chunks", "2024-01-01-04:00")
    published = store.published("consolidated_output", "2024-01-01-04:00")
    reasons = processed["rejection_reason"]
    assert int(summary_value(output, "records in")) == len(processed)
    assert summary_value(output, "chunks") == "3"
    assert int(summary_value(output, "valid")) == len(pd.read_parquet(published.path)) == int(reasons.isna().sum())
    assert int(summary_value(output, "duplicates")) == int((reasons == "duplicate_order_id").sum())
    assert int(summary_value(output, "invalid")) == int(reasons.notna().sum()) - int(summary_value(output, "duplicates"))
    assert summary_value(output, "output") == published.path


def test_land_then_run_on_the_landing_files(tmp_path, data_dir):
    """As a user would: the source is chosen when the definitions load, so run the CLI as a new process."""
    landing = tmp_path / "landing"
    assert main(["land", str(landing), "2024-01-01-05:00", "--seed", "3"]) == 0
    landed = pd.read_parquet(landing / "2024-01-01" / "05.parquet")
    env = {**os.environ, "SCALABLE_PIPELINE_LANDING_DIR": str(landing), "DAGSTER_HOME": str(tmp_path / "home")}
    completed = subprocess.run(
        [sys.executable, "-m", "scalable_pipeline", "run", "--partition", "2024-01-01-05:00"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert int(summary_value(completed.stdout, "records in")) == len(landed)
    raw = VersionedStore(data_dir).read_published_table("raw_volume", "2024-01-01-05:00")
    pd.testing.assert_frame_equal(raw, landed)
