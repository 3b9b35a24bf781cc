"""Build the course as a static web site (Jupyter Book), every notebook executed with its exercises solved.

    python notebooks/build_course.py                     # at the notebooks' default scale, on the shipped agents
    WM_SMOKE=1 python notebooks/build_course.py          # the tiny smoke scale (what the tests build)
    python notebooks/build_course.py --executed DIR      # from notebooks already executed (DIR/01_mdn_toy.ipynb, ...)
    python notebooks/build_course.py --notebooks 01 02   # only some of them
    python notebooks/build_course.py --publish site      # and copy the site into site/, ready to publish as it is

Open ``_build/course/_build/html/index.html`` (``--out`` moves it). ``--publish DIR`` copies the built site into
``DIR`` (replacing what is there) with a ``.nojekyll`` file, so that GitHub Pages serves Sphinx's ``_static`` folder:
push ``DIR``'s content to a ``gh-pages`` branch, or put it on any static web server. Each exercise cell shows its
worked solution (from ``notebooks/solutions/``) under a line saying so, so that the cells after it run as a learner's
would; the notebooks themselves keep the stubs. After the notebooks come the pages of ``docs/`` (results, the
pipeline, ...) as chapters, with the agents' cards and the files those pages link to copied beside them, so that every
relative link resolves in the site as it does on GitHub. Widgets need a live kernel: in the site they appear as they
were drawn last, or not at all. Needs the ``site`` extra (``pip install -e '.[site]'``: Jupyter Book 1, built on
Sphinx and MyST-NB).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NOTEBOOKS = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
DOCS = REPO / "docs"
# A notebook's link to a docs page: ../docs/ beside notebooks/, docs/ in the site.
DOCS_LINK = re.compile(r"\]\(\.\./docs/")
# The pages of docs/, in the order the site shows them (every docs/*.md is one; tests/test_docs.py checks it).
DOC_PAGES = [
    "course",
    "results-doom",
    "results-carracing",
    "choosing-controllers",
    "full-scale",
    "pipeline",
    "settings",
    "performance",
    "dask",
    "architecture",
]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # a markdown link or image: its target
SOLVED = "# A worked solution (notebooks/solutions/{stem}/{name}.py): in the notebook, this cell is yours to write.\n"

CONFIG = """\
title: "World Models, notebook-first: the course"
author: the wmlib authors
copyright: ""
only_build_toc_files: true
execute:
  execute_notebooks: {execute}
  timeout: 1800
  allow_errors: false
  run_in_temp: false
  stderr_output: remove-warn
sphinx:
  config:
    nb_execution_raise_on_error: true
    nb_execution_show_tb: true
    myst_heading_anchors: 3  # links to a section of a page (page.md#a-heading) resolve, as on GitHub
    html_show_copyright: false
    suppress_warnings: ["mystnb.unknown_mime_type"]
"""

INTRO = """\
# World Models, notebook-first

A course on Ha & Schmidhuber's [World Models](https://arxiv.org/abs/1803.10122) (2018; interactive version at
[worldmodels.github.io](https://worldmodels.github.io)), in {count} notebooks: the finished agents at play first,
then the two toy problems behind M and C, then the whole agent on ViZDoom Take Cover and CarRacing, trained in the
real game and inside M's dream, and last an experiment of your own.

This site shows every notebook as it ran when the site was built{scale}, with the exercises filled in by their worked
solutions. To run them yourself, move the widgets and write the exercises, install the package and open
`notebooks/` in JupyterLab ([Working through the course](docs/course.md) says how).

| notebook | what it is about |
|---|---|
{rows}

After the notebooks, the project's own pages: what the full-size runs reached, how they were made, and how the
code is put together:

{doc_rows}
"""


def solved(path: Path) -> nbformat.NotebookNode:
    """The notebook with every exercise cell replaced by its worked solution, marked as such."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        name = cell.metadata.get("exercise")
        if name:
            solution = HERE / "solutions" / path.stem / f"{name}.py"
            cell.source = SOLVED.format(stem=path.stem, name=name) + solution.read_text()
    return nb


def title(nb) -> str:
    first = nb.cells[0].source.splitlines()[0]
    return first.lstrip("# ").strip()


def select(prefixes=None) -> list[Path]:
    """The notebooks whose names start with one of ``prefixes`` (all of them when None)."""
    if not prefixes:
        return NOTEBOOKS
    chosen = [p for p in NOTEBOOKS if any(p.stem.startswith(x) for x in prefixes)]
    unknown = [x for x in prefixes if not any(p.stem.startswith(x) for p in NOTEBOOKS)]
    if unknown:
        raise FileNotFoundError(
            f"--notebooks {' '.join(unknown)}: no such notebook in {HERE} "
            f"(there are {', '.join(p.stem for p in NOTEBOOKS)})"
        )
    return chosen


def stage(source: Path, executed: Path | None, notebooks: list[Path]) -> None:
    """Write the book's sources into ``source``: the notebooks (solved, or the executed copies), config, contents."""
    source.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in notebooks:
        if executed is not None:
            done = executed / path.name
            if not done.exists():
                raise FileNotFoundError(f"--executed {executed}: no {path.name} there")
            nb = nbformat.read(done, as_version=4)
        else:
            nb = solved(path)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = DOCS_LINK.sub("](docs/", cell.source)
        nbformat.write(nb, source / path.name)
        rows.append(f"| [{title(nb)}]({path.stem}) | {_objective(nb)} |")
    shutil.copytree(HERE / "solutions", source / "solutions", dirs_exist_ok=True)
    sections = stage_docs(source)
    doc_rows = [f"- [{_md_title(DOCS / f'{page}.md')}](docs/{page}.md)" for page in DOC_PAGES]
    smoke = os.environ.get("WM_SMOKE") == "1"
    scale = " (at the tiny smoke scale)" if smoke else ""
    (source / "intro.md").write_text(
        INTRO.format(rows="\n".join(rows), doc_rows="\n".join(doc_rows), scale=scale, count=len(notebooks))
    )
    (source / "_config.yml").write_text(CONFIG.format(execute="off" if executed is not None else "force"))
    (source / "_toc.yml").write_text(toc(notebooks, sections))


def toc(notebooks: list[Path], sections: dict[str, list[str]]) -> str:
    """The book's contents: the notebooks, then the docs pages, each with the pages only it links to beneath it."""
    lines = ["format: jb-book", "root: intro", "parts:", "- caption: The notebooks", "  chapters:"]
    lines += [f"  - file: {p.stem}" for p in notebooks]
    lines += ["- caption: Results and reference", "  chapters:"]
    for page in DOC_PAGES:
        lines.append(f"  - file: docs/{page}")
        subs = sections.get(f"docs/{page}", [])
        if subs:
            lines += ["    sections:"] + [f"    - file: {sub}" for sub in subs]
    return "\n".join(lines) + "\n"


def local_links(page: Path) -> list[Path]:
    """The files of the repository that ``page`` links to or shows (relative links; anchors dropped)."""
    targets = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a web address, or a place on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if REPO not in path.parents:
            raise FileNotFoundError(f"{page}: links to {target}, outside the repository")
        if not path.is_file():
            raise FileNotFoundError(f"{page}: links to {target}, which does not exist")
        targets.append(path)
    return targets


def stage_docs(source: Path) -> dict[str, list[str]]:
    """Copy the docs pages into ``source/docs``, and every file they link to into the same place relative to
    ``source`` as it has in the repository (an agent's CARD.md, a learning curve), so that every link resolves in
    the site. A linked page outside docs/ (a card) becomes a section under the first page that links to it; returns
    those sections, by the linking page's name in the book."""
    queue = [DOCS / f"{page}.md" for page in DOC_PAGES]
    staged, sections = set(queue), {}
    while queue:
        page = queue.pop(0)
        name = page.relative_to(REPO).with_suffix("").as_posix()
        for path in [page] + local_links(page):
            dest = source / path.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            if path.suffix == ".md" and path not in staged:
                staged.add(path)
                queue.append(path)
                sections.setdefault(name, []).append(path.relative_to(REPO).with_suffix("").as_posix())
    return sections


def _md_title(page: Path) -> str:
    """A markdown page's first heading."""
    return next(line.lstrip("# ").strip() for line in page.read_text().splitlines() if line.startswith("# "))


def _objective(nb) -> str:
    """The first line the header cell lists under 'You will learn', as the notebook's one-line description."""
    for cell in nb.cells[:3]:
        if cell.metadata.get("course") == "header":
            lines = cell.source.splitlines()
            for i, line in enumerate(lines):
                if line.startswith("**You will learn**"):
                    for item in lines[i + 1 :]:
                        if item.startswith(("- ", "* ")):
                            return item[2:].strip().replace("|", "\\|")
    return ""


def build(out: Path, executed: Path | None = None, notebooks=None) -> Path:
    """Build the site into ``out`` and return the path of its index.html. ``notebooks``: name prefixes
    (e.g. ["01", "02"]) to build only those."""
    out = out.resolve()
    source = out / "source"
    chosen = select(notebooks)
    if source.exists():
        shutil.rmtree(source)
    stage(source, executed, chosen)
    env = dict(os.environ)
    env.setdefault("WM_DATA_DIR", str(out / "runs"))  # where the notebooks keep their run directories
    book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if book is None:
        raise FileNotFoundError("jupyter-book: not installed; pip install -e '.[site]'")
    cmd = [book, "build", str(source), "--path-output", str(out), "--builder", "html", "--keep-going"]
    with tempfile.TemporaryDirectory() as home:  # no Sphinx or Jupyter state from elsewhere
        env.setdefault("JUPYTER_RUNTIME_DIR", home)
        proc = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True)
    log = out / "build.log"
    log.write_text(proc.stdout + proc.stderr)
    index = out / "_build" / "html" / "index.html"
    failed = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "Executing notebook failed" in line or "CellExecutionError" in line or "ERROR:" in line
    ]
    if proc.returncode != 0 or failed or not index.exists():
        tail = (proc.stdout + proc.stderr)[-3000:].splitlines()
        raise RuntimeError(f"the course did not build (see {log}):\n" + "\n".join(failed[:20] or tail))
    return index


def publish(index: Path, dest: Path) -> Path:
    """Copy the built site (the folder of ``index``) into ``dest``, replacing what is there, with a ``.nojekyll``
    file (GitHub Pages would otherwise hide the folders whose names start with ``_``). Returns ``dest``'s index."""
    dest = Path(dest).resolve()
    if dest == index.parent or dest in index.parent.parents:
        raise FileNotFoundError(f"--publish {dest}: the site is built inside it; choose a folder of its own")
    if dest.exists():
        if not (dest / "index.html").exists() and any(dest.iterdir()):
            raise FileNotFoundError(f"--publish {dest}: not empty and not a site made before; choose another folder")
        shutil.rmtree(dest)
    shutil.copytree(index.parent, dest)
    (dest / ".nojekyll").write_text("")
    return dest / "index.html"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=REPO / "_build" / "course", help="where the site is built")
    p.add_argument("--executed", type=Path, help="a folder of notebooks already executed (no execution then)")
    p.add_argument("--notebooks", nargs="+", metavar="NN", help="only the notebooks whose names start so (e.g. 01 05)")
    p.add_argument("--publish", type=Path, metavar="DIR", help="then copy the site into DIR, ready to publish as it is")
    args = p.parse_args(argv)
    try:
        index = build(args.out, args.executed, args.notebooks)
        if args.publish is not None:
            index = publish(index, args.publish)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"build_course: error: {exc}", file=sys.stderr)
        return 1
    print(f"the course: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
