"""The architecture as code: pure rules do no I/O, every module is imported at its top, each concept has a folder."""

import ast
import importlib.util
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scalable_pipeline"
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
PURE = next(c for c in CONTRACTS if c["name"].startswith("Pure rules"))["source_modules"]
IO_MODULES = {"os", "pathlib", "shutil", "subprocess", "socket", "urllib", "http", "sqlite3", "tempfile", "io", "glob"}
IO_CALLS = {"open", "print", "input"}


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_rules_do_no_io_and_use_only_pure_rules(module):
    spec = importlib.util.find_spec(module)
    assert spec and spec.origin, module
    tree = ast.parse(Path(spec.origin).read_text())
    imports = imported_modules(tree)
    assert not {name for name in imports if name.split(".")[0] in IO_MODULES}, f"{module} imports an I/O module"
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not calls & IO_CALLS, f"{module} calls {calls & IO_CALLS}"
    project = {name for name in imports if name.startswith("scalable_pipeline.")}
    assert project <= {*PURE, "scalable_pipeline.core.constants"}, f"{module} imports non-pure {project - set(PURE)}"


def test_every_concept_folder_is_a_layer_of_the_contract():
    layered = next(c for c in CONTRACTS if c["type"] == "layers")["layers"]
    named = {part.strip().removeprefix("scalable_pipeline.") for layer in layered for part in layer.split("|")}
    folders = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert folders <= named, f"folders outside the layers contract: {folders - named}"
