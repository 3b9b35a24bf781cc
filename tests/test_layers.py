"""The package's layout: data flows one way (pyproject.toml's import-linter contract), every module is placed in it,
imports inside functions are rare and say why, and modules stay small enough to read in one sitting."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import wmlib

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(wmlib.__file__).parent
MAX_LINES = 520  # lines as ruff formats them


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return contract["layers"]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_layer_contract_is_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_every_module_has_a_place_in_the_layers():
    placed = {name.strip() for layer in contract_layers() for name in layer.split("|")}
    top = {f"wmlib.{m.name}" for m in pkgutil.iter_modules(wmlib.__path__)}
    assert top == placed, f"not in the contract: {sorted(top - placed)}; no such module: {sorted(placed - top)}"


def test_a_layer_contract_catches_an_upward_import(tmp_path):
    """The contract is not vacuous: a copy of the package in which plots imports the pipeline breaks it."""
    copy = tmp_path / "wmlib"
    for path in modules():
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (copy / "plots.py").write_text((copy / "plots.py").read_text() + "\nfrom .memory import Memory  # noqa\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    lint = Path(sys.executable).parent / "lint-imports"
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(lint), str(tmp_path / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode != 0
    assert "wmlib.plots -> wmlib.memory" in result.stdout


def function_level_imports(path: Path):
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub.lineno, lines[sub.lineno - 1]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_an_import_inside_a_function_says_why(path):
    """Such imports keep a heavy optional dependency (Dask, ViZDoom, Box2D, ipywidgets) off a light path."""
    silent = [f"{path.name}:{n}: {line.strip()}" for n, line in function_level_imports(path) if "#" not in line]
    assert not silent, "imports inside functions without a comment saying why:\n" + "\n".join(silent)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_reads_in_one_sitting(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
