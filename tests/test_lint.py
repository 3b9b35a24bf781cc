"""ruff, as pyproject.toml configures it: the code lints clean and is formatted (``ruff check . && ruff format .``
mends most of what these tests find)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    assert RUFF is not None, "ruff is not installed: pip install -e '.[test]'"
    proc = subprocess.run([RUFF, *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff {' '.join(command)}:\n{proc.stdout}\n{proc.stderr}"
