"""The course in a real browser: JupyterLab in headless Chromium (Debian's ``chromium``, driven by Playwright), as a
learner opens it. Every notebook runs as shipped, its exercises still stubs, with Run > Run All Cells: every code
cell must finish (each check says that the library's version stands in, and the cells after it use that), no widget
may fail to display, the moments each notebook is there for must appear (the dream game, the round-by-round story),
and where a notebook has widgets, moving a slider or pressing a button must change a picture. (test_course.py runs
the same notebooks with the solutions filled in.)

``.ci/run`` installs Chromium and the ``playwright`` package; on a machine without them these tests are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

from wmlib.notebook import NOT_ATTEMPTED

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on show
FINISHED = """() => {  // every code cell has run, or one has failed (which stops Run All Cells)
    const panel = document.querySelector('%s');
    if (!panel) return false;
    if ([...panel.querySelectorAll('.jp-OutputArea-output')].some(
        e => e.innerText.includes('Traceback') || e.innerText.includes('Check failed'))) return true;
    const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.innerText.trim());
    return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p));
}""".replace("%s", PANEL)  # (a JavaScript function: its braces stay as they are)
PICTURES = "els => els.map(e => e.src)"
WIDGET = re.compile(r"(Explorer|Player|DreamGame)\(")  # the notebook shows a widget (wmlib.widgets, toy.plots)
MOMENTS = {  # what must be on the page after Run All, beyond every cell having run: the notebook's point
    "00_the_whole_game": ["the shipped CarRacing agent", "survived", "new dream"],
    "05_memory": ["new dream", "a 12-step dream"],
    "07_dream_training": ["controller, real game", "its first real episode (left) and the dream it was trained in"],
}

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip("no Chromium (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 over a copy of the notebooks as shipped (stubs in place); (url, token)."""
    root = tmp_path_factory.mktemp("lab")
    for path in NOTEBOOKS:
        shutil.copyfile(path, root / path.name)
    shutil.copytree(REPO / "notebooks" / "solutions", root / "solutions")
    settings = root.parent / "lab-settings"  # every cell drawn (no windowing), no news pop-up
    for plugin, value in (
        ("notebook-extension/tracker", '{"windowingMode": "none", "autoStartDefaultKernel": true}'),
        ("apputils-extension/notification", '{"fetchNews": "false"}'),
    ):
        file = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = os.urandom(16).hex()
    env = dict(os.environ, WM_SMOKE="1", WM_DATA_DIR=str(root / "runs"), JUPYTERLAB_SETTINGS_DIR=str(settings))
    log = open(root.parent / "lab.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--allow-root",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.workspaces_dir={root.parent / 'lab-workspaces'}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"JupyterLab did not start; see {log.name}") from None
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        server.wait(30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab_and_its_widgets_respond(path, lab, browser):
    url, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{url}/lab/tree/{path.name}?reset&token={token}")  # reset: this notebook alone
        page.wait_for_selector(f"{PANEL} .jp-Cell")
        deadline = time.time() + 120  # the kernel starts (JupyterLab may ask which one first)
        while "| Idle" not in page.locator(".jp-StatusBar-Widget").all_inner_texts().__str__():
            accept = page.locator(".jp-Dialog button.jp-mod-accept")
            if accept.count():
                accept.first.click()
            if time.time() > deadline:
                pytest.fail(f"{path.name}: the kernel did not start in JupyterLab")
            time.sleep(0.5)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_function(FINISHED, timeout=600_000, polling=500)
        outputs = page.locator(f"{PANEL} .jp-OutputArea-output")
        failed = [text for text in outputs.all_inner_texts() if "Traceback" in text or "Check failed" in text]
        assert not failed, f"{path.name}: a cell failed in JupyterLab:\n{failed[0][-2000:]}"
        assert page.get_by_text("Error displaying widget").count() == 0
        text = "\n".join(outputs.all_inner_texts())
        exercises = [c for c in nbformat.read(path, as_version=4).cells if c.metadata.get("exercise")]
        assert text.count(NOT_ATTEMPTED) == len(exercises), f"{path.name}: not every stub's check let Run All go on"
        for moment in MOMENTS.get(path.stem, []):
            assert moment in text or page.get_by_text(moment).count(), f"{path.name}: no '{moment}' on the page"
        pictures = page.locator(f"{PANEL} .jupyter-widgets img")
        if not WIDGET.search(path.read_text()):
            return  # no widget in this notebook
        assert pictures.count() > 0, f"{path.name}: its widgets drew no picture in JupyterLab"
        before = pictures.evaluate_all(PICTURES)
        controls = [
            *page.locator(f"{PANEL} .jupyter-widgets .noUi-handle").all()[:4],
            *page.locator(f"{PANEL} .jupyter-widgets button").all()[:6],
        ]
        for control in controls:
            control.scroll_into_view_if_needed()
            if "noUi-handle" in (control.get_attribute("class") or ""):
                control.focus()
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
            else:
                control.click()
            deadline = time.time() + 10
            while time.time() < deadline:
                if pictures.evaluate_all(PICTURES) != before:
                    return  # a slider or a button changed a picture
                time.sleep(0.25)
        pytest.fail(f"{path.name}: no slider or button changed a widget's picture")
    finally:
        page.close()
