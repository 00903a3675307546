"""The package imports Dagster through its public API only: private modules change without notice."""

import ast
import re
from pathlib import Path

import scalable_pipeline

PACKAGE_DIR = Path(scalable_pipeline.__file__).parent
# ``dagster._core...``, ``dagster_postgres._utils...``: any private module of dagster or a dagster_* library.
PRIVATE_MODULE = re.compile(r"^dagster(_\w+)?\._")


def private_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a private Dagster module in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from dagster import _core`` names a private module as well.
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [(node.lineno, module) for module in modules if PRIVATE_MODULE.match(module)][:1]
    return sorted(found)


def test_the_check_finds_every_form_of_private_import():
    source = "\n".join(
        [
            "import dagster as dg",
            "from dagster import AssetKey",
            "import dagster._core.storage.event_log as log",
            "from dagster._core.events import DagsterEventType",
            "from dagster import _check",
            "import dagster_postgres._utils",
            "from dagster_postgres.event_log import PostgresEventLogStorage",
            "from dagster_dbt._internal import x",
            "import dagsterish._private",
            "def f():\n    from dagster._utils import utc_datetime_from_timestamp",
        ]
    )
    assert private_imports(source) == [
        (3, "dagster._core.storage.event_log"),
        (4, "dagster._core.events"),
        (5, "dagster._check"),
        (6, "dagster_postgres._utils"),
        (8, "dagster_dbt._internal"),
        (11, "dagster._utils"),
    ]


def test_package_uses_public_dagster_apis_only():
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) > 20  # the whole package is checked, not an empty folder
    violations = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{line}: imports private module {module}"
        for path in files
        for line, module in private_imports(path.read_text())
    ]
    assert violations == [], "private Dagster imports (use public APIs):\n" + "\n".join(violations)
