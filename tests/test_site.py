"""The course as a static site (notebooks/build_course.py, Jupyter Book): it builds, every notebook is a page with
its outputs, the exercises show their worked solutions, and no cell failed; the pages of docs/ follow as chapters,
with the agents' cards and every link and image of theirs resolved.

The whole course is built from the notebooks test_course.py ran in this session (when it ran first, as in a full
test run; else they run here); one notebook is also built the way a reader's command builds it, executed by
Jupyter Book itself.
"""

from __future__ import annotations

import re
import sys

import pytest
from conftest import REPO
from test_course import NOTEBOOKS, WITHOUT_EXERCISES, executed_dir

sys.path.insert(0, str(REPO / "notebooks"))
build_course = pytest.importorskip("build_course")
pytest.importorskip("jupyter_book", reason="the site extra is not installed (pip install -e '.[site]')")


def page_text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def assert_docs_chapters(out, html):
    """Every docs page is a chapter listed on the site's first page; the agents' cards are pages beneath the results;
    the pages' images are in the site; the build's log has no warning about any of them (a broken link or image)."""
    intro = (html / "intro.html").read_text()
    for page in build_course.DOC_PAGES:
        assert f'href="docs/{page}.html"' in intro, f"the first page does not list docs/{page}"
        assert (html / "docs" / f"{page}.html").exists(), f"docs/{page}.md is not in the site"
    for name, game, number in (("doom", "results-doom", "839.1"), ("carracing", "results-carracing", "856.9")):
        results = (html / "docs" / f"{game}.html").read_text()
        assert number in page_text(results) and f'href="../pretrained/{name}/CARD.html"' in results
        assert number in page_text((html / "pretrained" / name / "CARD.html").read_text())
    shown = re.findall(r'<img [^>]*src="([^"]+)"', (html / "docs" / "results-carracing.html").read_text())
    assert shown and all((html / "docs" / src).resolve().is_file() for src in shown), shown
    warnings = [
        line
        for line in (out / "build.log").read_text().splitlines()
        if "WARNING" in line and ("docs/" in line or "pretrained/" in line)
    ]
    assert not warnings, "\n".join(warnings)


def test_the_course_builds_into_a_static_site(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WM_DATA_DIR", str(tmp_path / "runs"))
    executed = executed_dir(tmp_path_factory)
    ran = executed.is_dir() and all((executed / p.name).exists() for p in NOTEBOOKS)
    index = build_course.build(tmp_path / "site", executed if ran else None)
    html = index.parent
    intro = (html / "intro.html").read_text()
    for path in NOTEBOOKS:
        page = (html / f"{path.stem}.html").read_text()
        text = page_text(page)
        assert f'href="{path.stem}.html"' in intro, f"the contents do not list {path.stem}"
        assert "Summary" in text and "You will learn" in text, path.stem
        if path.stem not in WITHOUT_EXERCISES:
            assert "A worked solution" in text, f"{path.stem}: the exercises should show their solutions"
        assert "Traceback" not in text and "NotImplementedError" not in text.replace("raise NotImplementedError", "")
        assert 'class="cell_output' in page, f"{path.stem}: no outputs on the page"
    assert any("<img" in (html / f"{p.stem}.html").read_text() for p in NOTEBOOKS)  # figures are in the pages
    assert_docs_chapters(tmp_path / "site", html)
    published = build_course.publish(index, tmp_path / "published")  # what --publish DIR writes: the site as it is
    assert published.read_text() == index.read_text() and (published.parent / ".nojekyll").exists()
    assert (published.parent / "_static").is_dir() and (published.parent / "docs" / "course.html").exists()
    build_course.publish(index, tmp_path / "published")  # a site published before is replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="not empty"):
        build_course.publish(index, tmp_path / "other")


def test_a_reader_builds_the_course_with_its_notebooks_executed(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_DATA_DIR", str(tmp_path / "runs"))
    index = build_course.build(tmp_path / "site", notebooks=["01"])
    page = (index.parent / "01_mdn_toy.html").read_text()
    assert "cell_output" in page and "<img" in page and "Traceback" not in page
    assert not (index.parent / "02_cmaes_toy.html").exists()
    assert_docs_chapters(tmp_path / "site", index.parent)  # the docs pages come whichever notebooks are built
    with pytest.raises(FileNotFoundError, match="--notebooks 99"):
        build_course.build(tmp_path / "other", notebooks=["99"])


def test_a_failing_cell_fails_the_build(tmp_path, monkeypatch):
    import nbformat

    broken = tmp_path / "notebooks"
    broken.mkdir()
    nb = build_course.solved(NOTEBOOKS[0])
    nb.cells.insert(3, nbformat.v4.new_code_cell("1 / 0"))
    nbformat.write(nb, broken / NOTEBOOKS[0].name)
    monkeypatch.setattr(build_course, "NOTEBOOKS", [broken / NOTEBOOKS[0].name])
    monkeypatch.setattr(build_course, "solved", lambda path: nbformat.read(path, as_version=4))
    with pytest.raises(RuntimeError, match="did not build"):
        build_course.build(tmp_path / "site")
    assert "ZeroDivisionError" in (tmp_path / "site" / "build.log").read_text()
