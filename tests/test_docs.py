"""The README is the front door and docs/ holds the rest: the README stays short and starts with the commands a fresh
machine needs, every relative link of the README and the docs pages resolves, and every docs page is a chapter of
the course site (notebooks/build_course.py; tests/test_site.py builds it)."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "notebooks"))
import build_course  # noqa: E402

README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
SETUP = "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e '.[test]'"
MAIN_JOB = ".venv/bin/wm run --game DoomTakeCover --preset small --data_dir runs/DoomTakeCover-small"
TESTS = "WM_SMOKE=1 .venv/bin/python -m pytest"


def test_the_readme_is_short_and_starts_with_the_commands_of_a_fresh_machine():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the details to docs/"
    first = [line.strip() for line in lines[:25]]
    assert SETUP in first and MAIN_JOB in first and TESTS in first
    assert first.index(SETUP) + 1 == first.index(MAIN_JOB) < first.index(TESTS)
    assert TESTS in (REPO / ".ci" / "run").read_text().splitlines()  # CI runs the README's test command


def test_the_readme_activates_the_environment_before_a_bare_wm():
    lines = README.read_text().splitlines()
    bare = [i for i, line in enumerate(lines) if re.match(r"\s*wm ", line)]
    activate = next(i for i, line in enumerate(lines) if "source .venv/bin/activate" in line)
    assert bare and min(bare) > activate, "a bare `wm` before the README says `source .venv/bin/activate`"


@pytest.mark.parametrize("page", [README] + PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    for path in build_course.local_links(page):  # raises FileNotFoundError naming a broken one
        assert path.is_file()


def test_the_readme_links_every_docs_page_and_each_agents_card():
    targets = set(build_course.local_links(README))
    assert {p.resolve() for p in PAGES} <= targets
    assert {(REPO / "pretrained" / name / "CARD.md").resolve() for name in ("doom", "carracing")} <= targets


def test_every_docs_page_is_a_chapter_of_the_course_site():
    assert sorted(build_course.DOC_PAGES) == [p.stem for p in PAGES]
    assert all(p.read_text().startswith("# ") for p in PAGES), "a chapter starts with its title"
    assert not any("es_state.pkl" in p.read_text() for p in [README] + PAGES)  # the state is es_state.npz


def test_a_broken_link_names_the_page_and_the_link(tmp_path, monkeypatch):
    monkeypatch.setattr(build_course, "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    (tmp_path / "docs" / "there.md").write_text("# There\n")
    page.write_text("# Page\n[fine](there.md#a-heading), [web](https://example.org), [gone](../pretrained/x.png)\n")
    with pytest.raises(FileNotFoundError, match=r"page.md: links to \.\./pretrained/x.png, which does not exist"):
        build_course.local_links(page)
    page.write_text("# Page\n[out](../../elsewhere.md)\n")
    with pytest.raises(FileNotFoundError, match="outside the repository"):
        build_course.local_links(page)
    page.write_text("# Page\n[fine](there.md#a-heading) ![img](../pic.png)\n")
    (tmp_path / "pic.png").write_bytes(b"png")
    assert build_course.local_links(page) == [tmp_path / "docs" / "there.md", tmp_path / "pic.png"]
