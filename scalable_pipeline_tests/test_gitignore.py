"""What the README's tour, the test suite and the tools write stays out of ``git status``."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WRITTEN = [
    ".dagster_home/dagster.yaml",  # `python -m scalable_pipeline run`: the embedded instance
    ".dagster_home/scalable_pipeline_data/raw_volume/x.parquet",
    "report.html",  # `python -m scalable_pipeline report -o report.html`
    "site/index.html",  # `mkdocs build`
    "scalable_pipeline.egg-info/PKG-INFO",  # `pip install -e .`
    "scalable_pipeline/__pycache__/cli.cpython-311.pyc",
    ".pytest_cache/v/cache/lastfailed",
    ".benchmarks/Linux-CPython-3.11-64bit/0001.json",
    ".ruff_cache/CACHEDIR.TAG",
    ".mypy_cache/3.11/cache.db",
]


@pytest.mark.skipif(not (ROOT / ".git").exists() or not shutil.which("git"), reason="not a git checkout")
@pytest.mark.parametrize("path", WRITTEN)
def test_written_files_are_ignored(path):
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    assert result.returncode == 0, f"{path} would show in `git status`"


@pytest.mark.skipif(not (ROOT / ".git").exists() or not shutil.which("git"), reason="not a git checkout")
@pytest.mark.parametrize("path", ["README.md", "scalable_pipeline/pipelines.yaml", "docs/index.md", "dagster.yaml"])
def test_project_files_are_not_ignored(path):
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    assert result.returncode == 1, f"{path} is ignored"
