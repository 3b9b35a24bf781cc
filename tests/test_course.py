"""The course: every notebook runs top to bottom with the worked solutions filled in, every exercise starts as a
stub that stops the notebook with NotImplementedError, and every check cell tells a right answer from a wrong one.

An exercise is a code cell whose metadata names it (``"exercise": NAME``); its worked solution is
``notebooks/solutions/<notebook>/<NAME>.py`` (a learner loads it into the cell with ``%load``), and the cell that
checks it has ``"check": NAME``. A typical wrong answer for each is kept here, in ``tests/course_wrong/``.

Each notebook runs in one real kernel (as a learner's would), every cell in order with the solutions; right after
each check cell has passed, its exercise's stub and the check run (they must stop with NotImplementedError), then a
wrong answer and the check (which must fail), then the solution and the check again (which must pass, leaving the
kernel as it was for the cells that follow).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, notebook_with_solutions
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = REPO / "notebooks" / "solutions"
WRONG = Path(__file__).resolve().parent / "course_wrong"


def exercises(nb) -> list[tuple[str, int, int]]:
    """(name, index of the exercise cell, index of its check cell) for every exercise of a notebook, in order."""
    found = []
    for i, cell in enumerate(nb.cells):
        name = cell.metadata.get("exercise")
        if name:
            checks = [j for j, c in enumerate(nb.cells) if c.metadata.get("check") == name]
            assert len(checks) == 1 and checks[0] > i, f"exercise {name}: needs one check cell after it"
            found.append((name, i, checks[0]))
    return found


def _solution(stem: str, name: str) -> str:
    return (SOLUTIONS / stem / f"{name}.py").read_text()


def _fails(client, source: str, check, index: int) -> str | None:
    """Run ``source`` then the check cell in the live kernel; the error name if one of them fails, else None."""
    for cell in (nbformat.v4.new_code_cell(source), check.copy()):
        try:
            client.execute_cell(cell, index)
        except CellExecutionError as exc:
            return exc.ename
    return None


def executed_dir(tmp_path_factory) -> Path:
    """Where this session keeps the notebooks as they ran here (the course site, tests/test_site.py, builds from
    them instead of running them all again)."""
    return tmp_path_factory.getbasetemp() / "course-executed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_its_solutions_and_its_checks_tell_right_from_wrong(path, tmp_path, monkeypatch,
                                                                                tmp_path_factory):
    monkeypatch.setenv("WM_DATA_DIR", str(tmp_path / "runs"))  # the notebooks' run directories
    stubs = {name: nbformat.read(path, as_version=4).cells[i].source
             for name, i, _ in exercises(nbformat.read(path, as_version=4))}
    assert stubs, f"{path.name} has no exercise"
    for name, stub in stubs.items():
        assert "raise NotImplementedError" in stub, f"{path.name}, exercise {name}: the stub must raise"
        assert f"%load solutions/{path.stem}/{name}.py" in stub, f"{path.name}, exercise {name}: say how to load it"
    nb = notebook_with_solutions(path)
    found = exercises(nb)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    checks = {c: name for name, _, c in found}
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            name = checks.get(index)
            if name is None:
                continue
            # right after the check passed on the solution, while the notebook's state is the one it checks
            assert _fails(client, stubs[name], cell, index) == "NotImplementedError", f"{name}: the stub must stop"
            wrong = (WRONG / path.stem / f"{name}.py").read_text()
            assert _fails(client, wrong, cell, index) is not None, f"{name}: the check accepted a wrong answer"
            assert _fails(client, _solution(path.stem, name), cell, index) is None, f"{name}: the solution failed"
    executed_dir(tmp_path_factory).mkdir(exist_ok=True)
    nbformat.write(nb, executed_dir(tmp_path_factory) / path.name)


def test_every_solution_and_wrong_answer_belongs_to_an_exercise():
    names = {(p.stem, name) for p in NOTEBOOKS for name, _, _ in exercises(nbformat.read(p, as_version=4))}
    for folder in (SOLUTIONS, WRONG):
        files = {(f.parent.name, f.stem) for f in folder.glob("*/*.py")}
        assert files == names, f"{folder}: files without an exercise, or exercises without a file"
    for stem, name in names:
        assert re.fullmatch(r"[a-z_0-9]+", name), name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_opens_with_objectives_prerequisites_run_time_and_the_paper(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.stem[:2]} · ")
    header = nb.cells[1]
    assert header.metadata.get("course") == "header"
    for part in ("**You will learn**", "**Before this:**", "**Run time:**", "**In the paper:**",
                 "https://arxiv.org/abs/1803.10122", "Sec. "):
        assert part in header.source, f"{path.name}: the header lacks {part}"
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "## Summary" in last.source, f"{path.name}: ends without a summary"
