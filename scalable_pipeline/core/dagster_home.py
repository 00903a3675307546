"""The embedded default instance: DAGSTER_HOME defaults to ./.dagster_home with the project's dagster.yaml."""

import os
import shutil
from pathlib import Path

PROJECT_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def ensure_dagster_home() -> Path:
    """Use ``$DAGSTER_HOME`` if set, else ``./.dagster_home``; give it the project's dagster.yaml if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists() and PROJECT_DAGSTER_YAML.exists():
        shutil.copyfile(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    return home
