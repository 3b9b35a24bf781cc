"""The course: every notebook runs top to bottom with the worked solutions filled in, and every check cell tells a
right answer from each typical wrong one, and lets an exercise left as a stub pass with the library's version
standing in (so that Run All goes through a notebook as shipped: tests/test_browser.py runs them so).

An exercise is a code cell whose metadata names it (``"exercise": NAME``); its worked solution is
``notebooks/solutions/<notebook>/<NAME>.py`` (a learner loads it into the cell with ``%load``), and the cell that
checks it has ``"check": NAME``. The wrong answers a learner typically writes are kept here, one file each, in
``tests/course_wrong/<notebook>/<NAME>/`` (the moment-matched Gaussian for a sampler, a standard deviation for a
variance, a missing KL floor, a wrong fitness sign, ...).

Each notebook runs in one real kernel (as a learner's would), every cell in order with the solutions; right after
each check cell has passed, its exercise's stub and the check run (the check must pass, say that the library's
version stands in, and leave it in place), then every wrong answer and the check (which must fail with a
CheckFailed that says where to look without quoting the solution), then the solution and the check again (which
must pass, leaving the kernel as it was for the cells that follow).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, assert_notebook_06_left, notebook_with_solutions
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from wmlib import pretrained
from wmlib.notebook import NOT_ATTEMPTED

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WITHOUT_EXERCISES = {"00_the_whole_game"}  # the tour before any theory: nothing to write yet
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


def _wrong_answers(stem: str, name: str) -> list[Path]:
    return sorted((WRONG / stem / name).glob("*.py"))


def _run(client, source: str, check, index: int) -> tuple[CellExecutionError | None, str]:
    """Run ``source`` then the check cell in the live kernel: (the error, if one of them failed; the check's
    printed output)."""
    for cell in (nbformat.v4.new_code_cell(source), check.copy()):
        try:
            done = client.execute_cell(cell, index)
        except CellExecutionError as exc:
            return exc, ""
    return None, "".join(o.get("text", "") for o in done.outputs if o.output_type == "stream")


def _assert_check_tells_right_from_wrong(client, stem: str, name: str, stub: str, check, index: int) -> None:
    error, printed = _run(client, stub, check, index)
    assert error is None, f"{name}: the check stopped on the stub ({error and error.ename}): it must not stop Run All"
    assert NOT_ATTEMPTED in printed, f"{name}: the check did not say that the library's version stands in:\n{printed}"
    solution_lines = [
        line.strip()
        for line in _solution(stem, name).splitlines()
        if len(line.strip()) >= 20 and not line.strip().startswith(("#", "def ", "return "))
    ]
    wrong_answers = _wrong_answers(stem, name)
    assert len(wrong_answers) >= 2, f"{name}: tests/course_wrong/{stem}/{name}/ needs the typical wrong answers"
    for wrong in wrong_answers:
        error, _ = _run(client, wrong.read_text(), check, index)
        assert error is not None, f"{name}: the check accepted the wrong answer {wrong.name}"
        assert error.ename == "CheckFailed", f"{name}, {wrong.name}: failed with {error.ename}, not the check's verdict"
        assert "Where to look" in error.evalue, f"{name}, {wrong.name}: the verdict gives no hint:\n{error.evalue}"
        quoted = [line for line in solution_lines if line in error.evalue]
        assert not quoted, f"{name}, {wrong.name}: the hint gives the solution away: {quoted}"
    error, printed = _run(client, _solution(stem, name), check, index)
    assert error is None, f"{name}: the solution failed its check:\n{error}"
    assert "Check passed" in printed, f"{name}: the check did not say that the solution passed"


def executed_dir(tmp_path_factory) -> Path:
    """Where this session keeps the notebooks as they ran here (the course site, tests/test_site.py, builds from
    them instead of running them all again)."""
    return tmp_path_factory.getbasetemp() / "course-executed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_its_solutions_and_its_checks_tell_right_from_wrong(
    path, tmp_path, monkeypatch, tmp_path_factory
):
    monkeypatch.setenv("WM_DATA_DIR", str(tmp_path / "runs"))  # the notebooks' run directories
    shipped = nbformat.read(path, as_version=4)
    stubs = {name: shipped.cells[i].source for name, i, _ in exercises(shipped)}
    assert stubs or path.stem in WITHOUT_EXERCISES, f"{path.name} has no exercise"
    for name, stub in stubs.items():
        assert "raise NotImplementedError" in stub, f"{path.name}, exercise {name}: the stub must raise"
        assert f"%load solutions/{path.stem}/{name}.py" in stub, f"{path.name}, exercise {name}: say how to load it"
    nb = notebook_with_solutions(path)
    checks = {c: name for name, _, c in exercises(nb)}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            if index in checks:  # right after the check passed on the solution, in the state it checks
                name = checks[index]
                _assert_check_tells_right_from_wrong(client, path.stem, name, stubs[name], cell, index)
    if path.stem == "06_controller" and "carracing" in pretrained.available():  # the shipped agent's path
        assert_notebook_06_left(tmp_path / "runs", shipped_agent=True)  # (the other: tests/test_pretrained.py)
    executed_dir(tmp_path_factory).mkdir(exist_ok=True)
    nbformat.write(nb, executed_dir(tmp_path_factory) / path.name)


def test_every_solution_and_wrong_answer_belongs_to_an_exercise():
    names = {(p.stem, name) for p in NOTEBOOKS for name, _, _ in exercises(nbformat.read(p, as_version=4))}
    solutions = {(f.parent.name, f.stem) for f in SOLUTIONS.glob("*/*.py")}
    assert solutions == names, f"{SOLUTIONS}: files without an exercise, or exercises without a file"
    wrong = {(f.parent.parent.name, f.parent.name) for f in WRONG.glob("*/*/*.py")}
    assert wrong == names, f"{WRONG}: folders without an exercise, or exercises without wrong answers"
    assert not list(WRONG.glob("*/*.py")), "a wrong answer belongs in its exercise's folder"
    for stem, name in names:
        assert re.fullmatch(r"[a-z_0-9]+", name), name
        for wrong in _wrong_answers(stem, name):
            assert wrong.read_text().startswith("# "), f"{wrong}: say in a first comment what mistake it is"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_opens_with_objectives_prerequisites_run_time_and_the_paper(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.stem[:2]} · ")
    header = nb.cells[1]
    assert header.metadata.get("course") == "header"
    for part in (
        "**You will learn**",
        "**Before this:**",
        "**Run time:**",
        "**In the paper:**",
        "https://arxiv.org/abs/1803.10122",
        "Sec. ",
    ):
        assert part in header.source, f"{path.name}: the header lacks {part}"
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "## Summary" in last.source, f"{path.name}: ends without a summary"
    try_it = [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Try it")]
    assert try_it and "*Expect*" in try_it[-1].source, f"{path.name}: ends without open questions and what to expect"
    for cell in nb.cells:
        assert not cell.get("outputs"), f"{path.name}: committed with outputs (the course site shows them)"
    ids = [cell.get("id") for cell in json.loads(path.read_text())["cells"]]  # as on disk (nbformat fills gaps)
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: every cell needs an id of its own (nbformat 4.5)"
