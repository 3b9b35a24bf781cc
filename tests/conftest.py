"""Shared fixtures: real smoke-scale runs of the whole pipeline, made once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WM_SMOKE", "1")  # notebooks and `wm` run at the tiny scale under pytest
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

# The suite runs on several processes (pytest-xdist: `-n auto --dist loadfile` in pyproject.toml). Each test file
# runs whole on one of them, in order, so that its module fixtures are made once; the course site's test file runs
# on the notebooks' process, after them, because it builds the site from the notebooks as they ran there.
SAME_PROCESS_AS = {"tests/test_site.py": "tests/test_course.py"}
MOST_PROCESSES = 4  # many tests start processes of their own: games, Dask workers, kernels, a browser


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one test process per core, at most MOST_PROCESSES."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MOST_PROCESSES, cores or 1))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with the files of SAME_PROCESS_AS sent together."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SAME_PROCESS_AS.get(scope, scope)

    return FilesTogether(config, log)


def wm(*args, cwd=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    """Run the real `wm` command line in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "wmlib.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"wm {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(condition, timeout: float = 120) -> None:
    """Poll ``condition()`` until it is true; TimeoutError after ``timeout`` seconds."""
    t0 = time.time()
    while not condition():
        if time.time() - t0 > timeout:
            raise TimeoutError
        time.sleep(0.05)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """`wm run --preset smoke` for each game, in a subprocess, run lazily and shared by the tests that read it."""
    made = {}

    def get(game: str) -> Path:
        if game not in made:
            d = tmp_path_factory.mktemp(game.replace("-", "_")) / "run"
            wm("run", "--game", game, "--preset", "smoke", "--data_dir", d, "--quiet")
            made[game] = d
        return made[game]

    return get


@pytest.fixture
def run_copy(smoke_runs, tmp_path):
    """A private copy of a smoke run directory, for tests that change it."""

    def get(game: str) -> Path:
        dst = tmp_path / "run"
        shutil.copytree(smoke_runs(game), dst)
        return dst

    return get


def notebook_with_solutions(path):
    """The notebook at ``path`` (nbformat) with every exercise cell replaced by its worked solution
    (``notebooks/solutions/<notebook>/<exercise>.py``), as a learner who finished it would run it; the course
    site (``notebooks/build_course.py``) shows the same."""
    if str(REPO / "notebooks") not in sys.path:
        sys.path.insert(0, str(REPO / "notebooks"))
    from build_course import solved  # only the notebook tests need it (and nbformat)

    return solved(Path(path))


def assert_notebook_06_left(runs: Path, shipped_agent: bool) -> None:
    """What notebook 06 leaves in its runs folder, with the shipped agent or with one it trained."""
    assert (runs / "CarRacing-v3-pretrained").exists() == shipped_agent
    assert (runs / "CarRacing-v3-smoke").exists() != shipped_agent  # with the shipped agent, V and M are not trained
    assert (runs / "CarRacing-v3-own-smoke" / "controller" / "controller.pt").exists()  # evolved in the notebook
    lap = runs / ("CarRacing-v3-pretrained" if shipped_agent else "CarRacing-v3-smoke") / "notebook" / "lap.gif"
    assert lap.stat().st_size > 0
