"""Trained agents that ship with the source tree, in ``pretrained/NAME/``, and how to make one from a run.

A pretrained directory is a run directory cut down to what playing and exploring need, and nothing else:

| path                          | what                                                                        |
|-------------------------------|-----------------------------------------------------------------------------|
| ``CARD.md``                   | how the agent was trained, the command, the scores                         |
| ``config.json``               | the run's settings                                                          |
| ``vision/vision.pt``          | V's weights (no optimiser state)                                            |
| ``memory/memory.pt``          | M's weights (no optimiser state)                                            |
| ``memory/initial_z.npz``      | mu, logvar of the first frame of every training episode: where dreams start |
| ``controller/controller.pt``  | C's parameters                                                              |
| ``episodes/``, ``series/``    | a few random-play episodes and their codes, for the notebooks' players      |
| ``test/*.json``               | the real-game scores the card reports                                       |
| ``temperatures/study.json``   | the temperature study (dream and real scores at each tau)                   |
| ``iteration.json``            | what the iterative training round played (``wm iterate``), when there was one |
| ``rounds/round_K/``           | each earlier round's controller and the M of its dream (``wm iterate``)     |
| ``fidelity.json``             | the same controllers in the dream and the real game (``study --fidelity``)  |
| ``*/log.csv``, ``*.png``      | the training logs and their plots                                           |

Agents are shared, so loading one never runs code. :func:`install` copies one into a run directory, where
``wm test`` and the notebooks use it like a run of their own, and it copies only the files above (:data:`ARTIFACTS`),
each checked first: every checkpoint loads with ``torch.load(weights_only=True)`` (:func:`wmlib.io.load_checkpoint`),
every JSON file parses (``config.json`` as the run's settings), every ``.npz`` loads without pickles, every text file
is UTF-8 and every plot is a PNG. A symbolic link or a special file anywhere in the folder is refused, and so is any
other file that holds code or a pickle (``.pkl``, ``.py``, ``.so``, ``.pt`` outside the places above, ... or a file
marked executable), naming it; any other unknown file (a README, ``.DS_Store``) is left out, and one line on stderr
lists what was. Nothing is written before every file has passed, and the writing happens under the run
directory's lock (:mod:`wmlib.runlock`). The files under ``pretrained/`` are never written.

    wm export RUN_DIR pretrained/NAME     # export a finished run

Export writes exactly these files, and checks the result as :func:`install` will.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import re
import stat
import sys
from pathlib import Path

import numpy as np

from . import episodes, rundir
from .card import card, short_path
from .config import Config
from .io import atomic_save, atomic_torch_save, atomic_write_bytes, atomic_write_text, load_checkpoint
from .plots import plot_learning_curve
from .runlock import holds_run_lock

ROOT = Path(__file__).resolve().parent.parent / "pretrained"
"""Where the shipped agents live: ``pretrained/`` at the top of the source tree."""

CHECKPOINTS = (rundir.VISION, rundir.MEMORY, rundir.CONTROLLER)
CURVE = rundir.LEARNING_CURVE
LOGS = (
    rundir.LOGS["vision"],
    rundir.RECONSTRUCTIONS,
    rundir.LOGS["memory"],
    rundir.MEMORY_LOSS,
    rundir.LOGS["controller"],
)
ROUND_FILES = rundir.ROUND_FILES  # what rounds/round_K/ keeps


def _exactly(*paths) -> str:
    """A pattern for any of ``paths``, ``/``-separated."""
    return "(" + "|".join(re.escape(Path(p).as_posix()) for p in paths) + ")"


_EPISODE = "ep_[0-9]{6,}\\.npz"
ARTIFACTS = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (_exactly(rundir.CONFIG), "config"),
        (_exactly(rundir.CARD), "text"),
        (_exactly(rundir.ITERATION, rundir.FIDELITY), "object"),
        (re.escape(rundir.TEST.as_posix()) + "/[A-Za-z0-9_-]+\\.json", "object"),
        (_exactly(rundir.STUDY), "table"),
        (_exactly(*CHECKPOINTS), "checkpoint"),
        (re.escape(rundir.ROUNDS.as_posix()) + "/round_[0-9]+/" + _exactly(*ROUND_FILES), "checkpoint"),
        (_exactly(rundir.INITIAL_Z), "arrays"),
        (_exactly(rundir.EPISODES, rundir.SERIES) + "/" + _EPISODE, "arrays"),
        (_exactly(*(p for p in LOGS if p.suffix == ".csv")), "text"),
        (_exactly(*(p for p in (*LOGS, CURVE) if p.suffix == ".png")), "png"),
    )
)
"""The files a pretrained directory may hold (the path relative to it, ``/``-separated) and how each is checked."""

CODE_SUFFIXES = frozenset(
    (
        ".pkl",
        ".pickle",
        ".joblib",
        ".dill",
        ".pt",
        ".pth",
        ".ckpt",
        ".npy",
        ".py",
        ".pyc",
        ".pyo",
        ".pyd",
        ".pyw",
        ".pyz",
        ".ipynb",
        ".so",
        ".dll",
        ".dylib",
        ".exe",
        ".sh",
        ".bash",
        ".zsh",
        ".bat",
        ".cmd",
        ".ps1",
        ".jar",
    )
)
"""Files that hold code or a pickle: refused (not merely left out) where no agent file goes, so that a folder
carrying one is noticed."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INSTALL_COMMAND = "wm test --pretrained (wmlib.pretrained.install)"
MAKE_ONE = "`wm export RUN_DIR DEST` makes one from a finished run"


def available() -> list[str]:
    """Names of the shipped agents: the folders directly under :data:`ROOT` (not links) holding a config.json."""
    if not ROOT.is_dir():
        return []
    return sorted(
        p.name for p in ROOT.iterdir() if p.is_dir() and not p.is_symlink() and _is_plain_file(p / rundir.CONFIG)
    )


def pretrained_dir(name: str) -> Path:
    """The folder of the shipped agent ``name``: a plain folder name (no path), of a folder directly under
    :data:`ROOT` holding a config.json. A folder elsewhere is :func:`agent_dir`'s (``--pretrained_dir``)."""
    names = ", ".join(available()) or "none found"
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not name.startswith(".")
        and not any(c in name for c in ("/", "\\", "\0", os.sep, os.altsep or "/"))
    )
    if not plain:
        raise ValueError(
            f"--pretrained {name}: expected the name of a shipped agent, a folder directly under "
            f"{ROOT} (available: {names}); for a folder elsewhere use --pretrained_dir PATH"
        )
    path = ROOT / name
    if path.is_symlink():
        raise ValueError(f"--pretrained {name}: {path} is a symbolic link; a shipped agent is a plain folder")
    if not (path.is_dir() and os.path.lexists(path / rundir.CONFIG)):  # (a linked config.json: read_agent says so)
        raise FileNotFoundError(
            f"--pretrained {name}: no pretrained agent of that name in {ROOT} (available: {names}); agents are kept "
            f"in the source repository (install this package from a clone of it), and {MAKE_ONE}"
        )
    return path


def agent_dir(path) -> Path:
    """A pretrained directory given by its path (``--pretrained_dir PATH``): a folder holding a config.json."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--pretrained_dir {path}: no such folder; {MAKE_ONE}")
    if not os.path.lexists(path / rundir.CONFIG):
        raise FileNotFoundError(
            f"--pretrained_dir {path}: not a pretrained agent (no {rundir.CONFIG} file in it); {MAKE_ONE}"
        )
    return path


def agent_config(src) -> Config:
    """The settings of the pretrained directory ``src`` (its config.json, read without following a link)."""
    path = Path(src) / rundir.CONFIG
    return Config.from_dict(json.loads(_checked(path, "config")), source=str(path))


def files_of(src) -> list[Path]:
    """Every plain file of a pretrained directory, relative to it (symbolic links are neither listed nor followed)."""
    src, found = Path(src), []
    for top, _dirs, files in os.walk(src):  # (os.walk does not descend into linked folders)
        for f in files:
            if _is_plain_file(Path(top) / f):
                found.append((Path(top) / f).relative_to(src))
    return sorted(found)


def kind_of(rel) -> str | None:
    """How the agent file at ``rel`` (relative to its folder) is checked, or None when no agent file goes there."""
    posix = Path(rel).as_posix()
    return next((kind for pattern, kind in ARTIFACTS if pattern.fullmatch(posix)), None)


def read_agent(src) -> tuple[dict[Path, bytes], list[Path]]:
    """The agent files of the pretrained directory ``src``, each read once and checked (relative path -> bytes),
    and the other files, which are left out. Raises ValueError naming the file for a symbolic link, a special file,
    a file that holds code or a pickle, or an agent file that does not pass its check; FileNotFoundError when
    config.json or a checkpoint is missing."""
    src = Path(src)
    known, ignored = _scan(src)
    missing = [rel for rel in (Path(rundir.CONFIG), *CHECKPOINTS) if rel not in known]
    if missing:
        raise FileNotFoundError(
            f"{src / missing[0]}: missing; a pretrained agent holds {rundir.CONFIG} and the "
            f"checkpoints of V, M and C ({MAKE_ONE})"
        )
    return {rel: _checked(src / rel, kind_of(rel)) for rel in known}, ignored


def install(agent, data_dir) -> Path:
    """Copy a pretrained agent into ``data_dir`` (made if needed) and return ``data_dir``.

    ``agent`` is the name of a shipped agent (a str, :func:`pretrained_dir`) or the path of a pretrained directory
    (a :class:`~pathlib.Path`, :func:`agent_dir`). Only the agent files (:data:`ARTIFACTS`) are copied, after every
    one has passed its check (:func:`read_agent`), and the copying runs under ``data_dir``'s lock. Files already
    there are kept (so settings and test results made there survive a second install); a ``data_dir`` holding
    another run stops with an error naming the file, so nothing trained is overwritten.
    """
    if isinstance(agent, os.PathLike):
        src, label = agent_dir(agent), str(agent)
    else:
        src, label = pretrained_dir(agent), repr(agent)
    files, ignored = read_agent(src)
    if ignored:
        print(
            f"{src}: left out {len(ignored)} file(s) that are not part of an agent: {', '.join(map(str, ignored))}",
            file=sys.stderr,
        )
    return _write(files, data_dir, label)


@holds_run_lock(INSTALL_COMMAND)
def _write(files: dict[Path, bytes], data_dir, label: str) -> Path:
    """Write the checked ``files`` into ``data_dir`` (under its lock), keeping what is there."""
    data_dir = Path(data_dir)
    other = f"choose another --data_dir for the pretrained agent {label}"
    for rel in CHECKPOINTS:
        target = data_dir / rel
        if target.exists() and target.read_bytes() != files[rel]:
            raise ValueError(f"{target}: this run directory already holds another model; {other}")
    installed = all((data_dir / rel).exists() for rel in CHECKPOINTS)
    if (data_dir / rundir.CONFIG).exists() and not installed:
        raise ValueError(f"{data_dir / rundir.CONFIG}: this run directory already holds another run; {other}")
    # config.json last: a copy cut short (no config.json yet) is finished by installing again
    order = sorted(files, key=lambda rel: (rel == Path(rundir.CONFIG), rel))
    for rel in order:
        if not (data_dir / rel).exists():  # files already there (the settings, test results made here) are kept
            atomic_write_bytes(data_dir / rel, files[rel])
    return data_dir


def _is_plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _scan(src: Path) -> tuple[list[Path], list[Path]]:
    """The agent files under ``src`` and the other files (both relative), never following a link; refuses links,
    special files and files that hold code or a pickle where no agent file goes."""
    known, ignored, folders = [], [], [Path()]
    while folders:
        folder = folders.pop()
        with os.scandir(src / folder) as entries:
            for entry in entries:
                rel, mode = folder / entry.name, entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    raise ValueError(
                        f"{src / rel}: a symbolic link; a pretrained agent holds plain files only, and "
                        "links are never followed"
                    )
                if stat.S_ISDIR(mode):
                    folders.append(rel)
                elif not stat.S_ISREG(mode):
                    raise ValueError(f"{src / rel}: not a plain file; a pretrained agent holds plain files only")
                elif kind_of(rel):
                    known.append(rel)
                elif rel.suffix.lower() in CODE_SUFFIXES or mode & 0o111:
                    raise ValueError(
                        f"{src / rel}: holds code or a pickle (or is executable) and is no file of a "
                        "pretrained agent, which holds weights and data only; remove it"
                    )
                else:
                    ignored.append(rel)
    return sorted(known), sorted(ignored)


def _checked(path: Path, kind: str) -> bytes:
    """The bytes of the agent file ``path``, read once without following a link, after its check for ``kind``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if path.is_symlink():
            raise ValueError(f"{path}: a symbolic link; a pretrained agent holds plain files only") from None
        raise OSError(exc.errno, f"{path}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        before = os.fstat(f.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise ValueError(f"{path}: not a plain file; a pretrained agent holds plain files only")
        data = f.read()
    _check(path, data, kind)
    if kind == "checkpoint":  # loaded from its path: it must still be the very file read above
        after = os.lstat(path)
        if (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns) != (
            before.st_dev,
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        ):
            raise ValueError(f"{path}: changed while it was being read; install again")
    return data


def _check(path: Path, data: bytes, kind: str) -> None:
    """Raise ValueError naming ``path`` unless ``data`` is a valid file of ``kind`` (see :data:`ARTIFACTS`)."""
    if kind == "checkpoint":
        if not isinstance(load_checkpoint(path, "checkpoint of a pretrained agent"), dict):
            raise ValueError(f"{path}: not a checkpoint (expected a dict of weights and settings)")
    elif kind in ("config", "object", "table"):
        try:
            value = json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not a JSON file ({exc})") from None
        expected = list if kind == "table" else dict
        if not isinstance(value, expected):
            raise ValueError(
                f"{path}: expected a JSON {'list' if kind == 'table' else 'object'}, got {type(value).__name__}"
            )
        if kind == "config":
            Config.from_dict(value, source=str(path))  # every setting present and valid, or named
    elif kind == "arrays":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                for key in arrays.files:
                    arrays[key]  # noqa: B018 (each array read: an object array, a pickle, is refused here)
        except Exception as exc:  # a corrupt zip, a pickle, a plain .npy: all mean the same here
            raise ValueError(f"{path}: not a readable .npz of arrays ({type(exc).__name__}: {exc})") from None
    elif kind == "text":
        try:
            data.decode("utf-8")
        except ValueError:
            raise ValueError(f"{path}: not a UTF-8 text file") from None
    elif kind == "png" and not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path}: not a PNG image")


def export(data_dir, dest, sample_episodes: int = 3, command: str | None = None) -> Path:
    """Write the finished run ``data_dir`` as a pretrained directory ``dest`` (weights only, a few episodes), with a
    CARD.md (:func:`card`; ``command`` is the command that trained it). Only the files of :data:`ARTIFACTS` are
    written, each atomically as a plain file, and the result is checked as :func:`install` checks it."""
    data_dir, dest = Path(data_dir), Path(dest)
    for rel in CHECKPOINTS:
        ckpt = load_checkpoint(data_dir / rel, str(rel))
        ckpt.pop("optimizer", None)
        ckpt.pop("path", None)
        if "vision" in ckpt:  # M names the V it was trained with: within the exported directory
            ckpt["vision"] = str(CHECKPOINTS[0])
        if ckpt.get("start_from"):  # where a search started: named, not located
            ckpt["start_from"] = short_path(ckpt["start_from"])
        for a in ckpt.get("averaged", []):  # the controllers an average was made of (wm average)
            a["path"] = short_path(a["path"])
        atomic_torch_save(dest / rel, ckpt)
    pool = episodes.first_frame_pool(data_dir)
    if pool is None:
        raise FileNotFoundError(f"{episodes.series_dir(data_dir)}: no encoded series; run `wm memory` first")
    mu, logvar = pool
    atomic_save(dest / rundir.INITIAL_Z, lambda f: np.savez_compressed(f, mu=mu, logvar=logvar))
    for f in episodes.list_episodes(data_dir)[:sample_episodes]:
        for sub in (rundir.EPISODES, rundir.SERIES):
            atomic_write_bytes(dest / sub / f.name, (data_dir / sub / f.name).read_bytes())
    clog = rundir.log_path(data_dir, "controller")
    if clog.exists():  # drawn afresh: C writes its plot only when it finishes, and a run may go on after that
        plot_learning_curve(clog, dest / CURVE)
    rounds = [(r / rel).relative_to(data_dir) for r in rundir.round_dirs(data_dir) for rel in ROUND_FILES]
    tests = [f.relative_to(data_dir) for f in sorted((data_dir / rundir.TEST).glob("*.json"))]
    for rel in [Path(rundir.CONFIG), *LOGS, rundir.STUDY, Path(rundir.FIDELITY), *rounds]:
        if kind_of(rel) and (data_dir / rel).is_file():
            atomic_write_bytes(dest / rel, (data_dir / rel).read_bytes())
    for rel in filter(kind_of, tests):  # the controller a test played: within the directory
        result = json.loads((data_dir / rel).read_text())
        if "controller" in result:
            result["controller"] = str(CHECKPOINTS[2])
        atomic_write_text(dest / rel, json.dumps(result, indent=2))
    if (data_dir / rundir.ITERATION).exists():  # the source runs are named, not located (paths mean nothing elsewhere)
        record = json.loads((data_dir / rundir.ITERATION).read_text())
        r = record
        while r:
            r["source"] = Path(r["source"]).name
            r = r.get("previous")
        atomic_write_text(dest / rundir.ITERATION, json.dumps(record, indent=2))
    atomic_write_text(dest / rundir.CARD, card(data_dir, command))
    read_agent(dest)  # what was written is what install takes
    return dest


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``wm export``."""
    p.add_argument("data_dir", help="the run directory (with vision, memory, controller, series, test)")
    p.add_argument("dest", help="where to write it, e.g. pretrained/doom")
    p.add_argument("--episodes", type=int, default=3, help="sample episodes to include (for the notebooks)")
    p.add_argument(
        "--command", dest="trained_by", metavar="COMMAND", help="the command that trained the run, quoted on the card"
    )


def run(args) -> int:
    """``wm export``: export the run and say what was written. Errors propagate to the command line, which names
    them."""
    dest = export(args.data_dir, args.dest, args.episodes, args.trained_by)
    size = sum((dest / f).stat().st_size for f in files_of(dest))
    print(f"{dest}: {len(files_of(dest))} files, {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":  # `python -m wmlib.pretrained ...` is `wm export ...`: the command line sits on top of
    # the library's layers, so it is looked up by name when this module runs as a script, never imported by it
    sys.exit(importlib.import_module("wmlib.cli").main(["export", *sys.argv[1:]]))
