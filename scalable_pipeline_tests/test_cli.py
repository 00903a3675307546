"""The command line as users meet it: a quiet run with a summary that matches the stored data, one-line
errors for options that do not apply, status and rollback of an hour, failed runs that say why."""

import dataclasses
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from scalable_pipeline.assembly.project import build_definitions
from scalable_pipeline.cli.main import main, parser
from scalable_pipeline.cli.progress import FOLLOWED_EVENTS, ProgressDisplay, RunView
from scalable_pipeline.observing.read_model import PIPELINE_ASSETS
from scalable_pipeline.pipelines.config import CONFIG_ENV, PipelineConfigError
from scalable_pipeline.publishing.rollback_log import read_rollbacks
from scalable_pipeline.publishing.versioned_store import VersionedStore

HOUR = "2026-01-05-04:00"


def summary_value(output: str, label: str) -> str:
    return re.search(rf"^{label}:\s+(\S+)", output, re.MULTILINE).group(1)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.slow
def test_run_is_quiet_and_its_summary_matches_the_stored_data_then_status_and_rollback(home, capsys, data_dir):
    assert main(["run", "--partition", HOUR, "--chunks", "3"]) == 0
    captured = capsys.readouterr()
    assert (home / "dagster.yaml").exists()  # the embedded default instance was set up
    assert "DEBUG" not in captured.out + captured.err and "STEP_START" not in captured.out + captured.err  # no Dagster log lines
    assert "chunks" in captured.err and "3/3" in captured.err  # the progress display, on stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the shipped dagster.yaml records log lines from INFO
        records = instance.all_logs(instance.get_runs(limit=1)[0].run_id)
    levels = {record.level for record in records if record.dagster_event is None}
    assert logging.INFO in levels and logging.DEBUG not in levels

    store = VersionedStore(data_dir)
    processed = store.read_published_table("processed_chunks", HOUR)
    first = store.published("consolidated_output", HOUR)
    reasons = processed["rejection_reason"]
    output = captured.out
    assert int(summary_value(output, "records in")) == len(processed)
    assert summary_value(output, "chunks") == "3"
    assert int(summary_value(output, "valid")) == len(pd.read_parquet(first.path)) == int(reasons.isna().sum())
    assert int(summary_value(output, "duplicates")) == int((reasons == "duplicate_order_id").sum())
    assert int(summary_value(output, "invalid")) == int(reasons.notna().sum()) - int(summary_value(output, "duplicates"))
    assert summary_value(output, "output") == first.path
    assert re.search(r"^records/s:\s+[\d,]+ end to end; [\d,]+ chunk compute$", output, re.MULTILINE)

    assert main(["run", "--partition", HOUR, "--chunks", "2"]) == 0
    second = store.published("consolidated_output", HOUR)
    capsys.readouterr()
    assert main(["status", "--partition", HOUR]) == 0
    status = capsys.readouterr().out
    for asset in ("raw_volume", "chunk_partitions", "processed_chunks", "consolidated_output"):
        assert store.published(asset, HOUR).version in status
    # The Delta table version whose commit published the hour: each table's newest, the second run's publish.
    for asset in ("processed_chunks", "consolidated_output"):
        assert f"table version {store.hour_table(asset).table().version()}" in status
    assert re.search(r"volume_anomaly\s+│\s+WARN\s+│\s+passed", status)
    assert re.search(r"invalid_ratio\s+│\s+ERROR\s+│\s+passed", status)
    assert "runs: 2" in status

    assert main(["rollback", "consolidated_output", HOUR]) == 0  # default: the version before the published one
    assert store.published("consolidated_output", HOUR).version == first.version
    [record] = read_rollbacks(data_dir)
    assert (record.kind, record.restored_version, record.replaced_version) == ("manual", first.version, second.version)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--chunks", "0"], "argument --chunks: 0 is not allowed: at least 1"),
        (["run", "--scale", "-5"], "argument --scale: -5 is not allowed"),
        (["run", "--max-concurrent", "2"], "--max-concurrent applies to --multiprocess only"),
        (["run", "--partition", "2026-01-05 10:00"], "expected the form YYYY-MM-DD-HH:00"),
        (["run", "--partition", "2026-02-30-10:00"], "not a real date and time"),
        (["run", "--partition", "2026-01-05-10:30"], "not on the hour"),
        (["run", "--partition", "2025-12-31-23:00"], "outside the partitions"),
        (["run", "--from", "2026-01-05-05:00"], "--from and --to go together"),
        (["run", "--from", "2026-01-05-05:00", "--to", "2026-01-05-04:00"], "is after --to"),
        (["run", "--partition", HOUR, "--from", HOUR, "--to", HOUR], "either --partition or --from/--to"),
        (["report", "--pipeline", "nope"], "--pipeline: no pipeline 'nope'"),
        (["metrics", "--port", "70000"], "not a TCP port"),
        (["rollback", "consolidated_output", HOUR], "has nothing published"),
        (["backfill", "--from", "2026-01-05-05:00", "--to", "2026-01-05-04:00"], "is after --to"),
        (["backfill", "--from", "2025-12-31-23:00", "--to", HOUR], "outside the partitions"),
        (["vacuum", "--pipeline", "nope"], "--pipeline: no pipeline 'nope'"),
    ],
)
def test_bad_options_are_one_line_errors(home, capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert message in line and line.startswith("scalable-pipeline"), line
    assert captured.out == ""


def test_vacuum_keeps_what_a_table_version_within_the_window_uses_and_says_what_it_deleted(home, capsys, data_dir):
    store = VersionedStore(data_dir)
    for n in (1, 2):
        store.publish(store.write_table("consolidated_output", HOUR, pd.DataFrame({"order_id": [n]}), f"run{n}", "digest"))
    versions = store.versions("consolidated_output", HOUR)

    assert main(["vacuum"]) == 0
    assert capsys.readouterr().out.splitlines() == [  # the default window, 168 h: the first version is kept
        "scalable_data_processing processed_chunks: 0 file(s) of 0 version(s) deleted",
        "scalable_data_processing consolidated_output: 0 file(s) of 0 version(s) deleted",
    ]
    assert len(versions) == 2 and store.versions("consolidated_output", HOUR) == versions


def test_a_typo_in_the_pipelines_file_is_a_one_line_usage_error_with_the_field_it_meant(home, capsys, tmp_path, monkeypatch):
    path = tmp_path / "pipelines.yaml"
    path.write_text("pipelines:\n  - name: eu_orders\n    schedul: '0 * * * *'\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    message = f"{path}: pipeline entry 1 ('eu_orders'): field 'schedul': unknown field; did you mean 'schedule'?"
    with pytest.raises(PipelineConfigError) as loading:  # as the definitions load (dagster definitions validate, the UI)
        build_definitions(path)
    assert str(loading.value) == message
    for argv in (["report"], ["status", "--partition", HOUR], ["pools"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", f"scalable-pipeline {argv[0]}: error: {message}\n")


def test_scale_and_seed_are_errors_with_a_landing_source(home, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALABLE_PIPELINE_LANDING_DIR", str(tmp_path / "landing"))
    for option in (["--scale", "2"], ["--seed", "1"]):
        assert main(["run", "--partition", HOUR, *option]) == 2
        assert "--scale and --seed apply to the synthetic source" in capsys.readouterr().err


@pytest.mark.slow
def test_backfill_launches_the_job_page_s_backfill_of_the_hours(home, capsys):
    assert main(["backfill", "--from", "2026-01-05-03:00", "--to", "2026-01-05-06:00"]) == 0
    out = capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        [backfill] = instance.get_backfills()
        assert backfill.backfill_id in out and "at least 1 run(s) of up to 24 hours" in out
        assert list(backfill.partition_names) == [f"2026-01-05-{hour:02d}:00" for hour in range(3, 7)]
        assert backfill.partition_set_origin.partition_set_name == "scalable_data_processing_partition_set"
        assert {key.to_user_string() for key in backfill.asset_selection} == set(PIPELINE_ASSETS)


def test_version_and_help_with_defaults(capsys):
    assert main(["--version"]) == 0
    assert re.fullmatch(r"scalable-pipeline \S+\n", capsys.readouterr().out)
    assert main(["run", "--help"]) == 0
    assert "volume multiplier of the synthetic source (default: 1.0)" in " ".join(capsys.readouterr().out.split())
    assert main(["metrics", "--help"]) == 0
    assert "(default: 127.0.0.1)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_range_runs_one_run_per_hour_and_verbose_shows_dagster_events(home, capsys, data_dir):
    assert main(["run", "--from", "2026-01-05-02:00", "--to", "2026-01-05-03:00", "--chunks", "1", "--verbose"]) == 0
    captured = capsys.readouterr()
    assert "STEP_SUCCESS" in captured.err  # Dagster's own event lines
    store = VersionedStore(data_dir)
    run_ids = []
    for hour in ("2026-01-05-02:00", "2026-01-05-03:00"):
        [line] = [line for line in captured.out.splitlines() if line.startswith(hour)]
        records = len(store.read_published_table("raw_volume", hour))
        assert re.search(rf"\bok\b.*records\s+{records}\b", line), line
        run_ids.append(line.split("run ")[-1])
    assert len(set(run_ids)) == 2


@pytest.mark.slow
def test_progress_follows_step_processes_of_the_multiprocess_executor(home, capfd, data_dir, monkeypatch):
    """With --multiprocess the chunk and range steps run in other processes: the display follows their events in
    the instance and ends at the plan's chunk and range counts; their stderr stays off the terminal."""
    views = []
    show = ProgressDisplay.show

    def recording(display, view):
        views.append(dataclasses.replace(view))
        show(display, view)

    monkeypatch.setattr(ProgressDisplay, "show", recording)
    assert main(["run", "--partition", HOUR, "--chunks", "3", "--multiprocess", "--max-concurrent", "2"]) == 0
    out, err = capfd.readouterr()
    plan = VersionedStore(data_dir).read_published_document("chunk_partitions", HOUR)
    chunks, ranges = len(plan["chunks"]), len(plan["range_cuts"]) + 1
    final = views[-1]
    assert (final.chunks, final.chunks_done, final.ranges, final.ranges_done) == (3, chunks, ranges, ranges) and chunks == 3
    done = [(view.chunks_done, view.ranges_done) for view in views]
    assert done == sorted(done) and all(c <= chunks and r <= ranges for c, r in done)  # counts only grow, never past the plan
    assert f"{chunks}/{chunks}" in err and f"{ranges}/{ranges}" in err and "1/1" in err  # chunks, ranges, hours
    assert "DEBUG" not in out + err and "STEP_START" not in out + err  # step processes' log lines discarded
    assert summary_value(out, "chunks") == "3"

    # The steps' own events account for every chunk and range, before processed_chunks reports its totals.
    run_id = re.search(r"^run (\S+) succeeded", out, re.MULTILINE).group(1)
    with dg.DagsterInstance.get() as instance:
        records = instance.get_records_for_run(run_id, of_type=FOLLOWED_EVENTS).records
    view = RunView()
    for record in records:
        if record.asset_key == dg.AssetKey("processed_chunks"):
            break
        view.apply(record.event_log_entry)
    assert (view.chunks_done, view.ranges_done) == (chunks, ranges)


def python_m(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scalable_pipeline", *argv], env=env, check=False, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_land_then_run_on_the_landing_files_and_a_missing_file_says_why(tmp_path, data_dir):
    """As a user would: the source is chosen when the definitions load, so run the CLI as a new process."""
    landing = tmp_path / "landing"
    assert main(["land", str(landing), "2026-01-05-05:00", "--seed", "3"]) == 0
    landed = pd.read_parquet(landing / "2026-01-05" / "05.parquet")
    env = {**os.environ, "SCALABLE_PIPELINE_LANDING_DIR": str(landing), "DAGSTER_HOME": str(tmp_path / "home")}
    completed = python_m(["run", "--partition", "2026-01-05-05:00"], env)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert int(summary_value(completed.stdout, "records in")) == len(landed)
    raw = VersionedStore(data_dir).read_published_table("raw_volume", "2026-01-05-05:00")
    pd.testing.assert_frame_equal(raw, landed)

    failed = python_m(["run", "--partition", "2026-01-05-06:00"], env)  # no file landed for 06:00
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    [line] = [line for line in failed.stderr.splitlines() if "failed (run" in line]
    assert "raw_volume" in line and "'file_present'" in line and "06.parquet" in line
    [reason_file] = (data_dir / "quarantine" / "raw_volume" / "2026-01-05-0600").glob("*.reason.json")
    assert str(reason_file) in line
    assert json.loads(reason_file.read_text())["rule"] == "file_present"


def readme_commands() -> list[str]:
    """Every `python -m scalable_pipeline ...` line of the shell blocks of the README and the docs, without comments and `&`."""
    root = Path(__file__).parent.parent
    text = "\n".join(page.read_text() for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    lines = [
        line.split("#")[0].strip().rstrip("&").strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()
    ]
    return [line[line.index("python -m scalable_pipeline") :] for line in lines if "python -m scalable_pipeline" in line]


def test_every_readme_command_is_valid():
    commands = readme_commands()
    assert len(commands) >= 10
    for command in commands:
        argv = shlex.split(command.replace("$HOUR", HOUR).replace("$FIRST", HOUR))[3:]
        args = parser().parse_args(argv)  # exits (fails the test) on any option the command line does not take
        assert args.handler, command
