"""wmlib.rundir: where every artifact of a run lives (and that no other module spells those paths), the run's config,
sharing a trained world model, and the dream's first frames (wmlib.episodes)."""

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from wmlib import episodes, rundir
from wmlib.config import make_config
from wmlib.io import atomic_torch_save


def test_stage_paths_and_unknown_stages(tmp_path):
    assert rundir.log_path(tmp_path, "memory") == tmp_path / "memory" / "log.csv"
    assert rundir.path(tmp_path, rundir.CONTROLLER) == tmp_path / "controller" / "controller.pt"
    for bad in ("test", "Vision", ""):
        with pytest.raises(ValueError, match=f"unknown stage {bad!r}; valid: vision, memory, controller"):
            rundir.stage_dir(tmp_path, bad)
        with pytest.raises(ValueError, match="valid: vision, memory, controller"):
            rundir.log_path(tmp_path, bad)


def test_load_config_errors_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    with pytest.raises(FileNotFoundError, match=f"{path}: not a run directory"):
        rundir.load_config(tmp_path)
    for text in ("{not json", "[1]", '"pop"'):
        path.write_text(text)
        with pytest.raises(ValueError, match=f"{path}: not a valid run config"):
            rundir.load_config(tmp_path)
    saved = make_config("DoomTakeCover", "smoke").to_dict()
    path.write_text(json.dumps(dict(saved, pop=0)))
    with pytest.raises(ValueError, match=f"^{path}: 'pop' must be an integer >= 2, got 0 \\(the setting of --pop\\)$"):
        rundir.load_config(tmp_path)
    path.write_text(json.dumps(dict(saved, pop=6)))
    assert rundir.load_config(tmp_path).pop == 6


def test_share_world_model_links_and_never_writes_the_source(run_copy, tmp_path):
    src = run_copy("DoomTakeCover")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    dst = rundir.share_world_model(src, tmp_path / "shared")
    for rel in (rundir.VISION, rundir.MEMORY):
        assert os.path.samefile(src / rel, dst / rel)  # hard links: no copy of the weights
    assert [p.name for p in episodes.list_series(dst)] == [p.name for p in episodes.list_series(src)]
    assert not episodes.list_episodes(dst) and not (dst / "controller").exists()
    assert episodes.list_episodes(rundir.share_world_model(src, tmp_path / "with", with_episodes=True))
    # Training in the shared directory replaces its checkpoints; the source's files stay as they were.
    ckpt = torch.load(dst / rundir.MEMORY, weights_only=True)
    ckpt["step"] += 1
    atomic_torch_save(dst / rundir.MEMORY, ckpt)
    assert not os.path.samefile(src / rundir.MEMORY, dst / rundir.MEMORY)
    rundir.share_world_model(src, dst)  # again: what is there already is kept
    assert torch.load(dst / rundir.MEMORY, weights_only=True)["step"] == ckpt["step"]
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


def test_first_frame_pool_prefers_initial_z_then_the_series(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    series = [episodes.load_series(f) for f in episodes.list_series(d)]
    mu, logvar = episodes.first_frame_pool(d)
    assert np.array_equal(mu, np.stack([s["mu"][0] for s in series]))
    assert np.array_equal(logvar, np.stack([s["logvar"][0] for s in series]))
    shipped = np.random.default_rng(0).normal(size=(5, mu.shape[1]))
    np.savez(d / rundir.INITIAL_Z, mu=shipped, logvar=np.zeros_like(shipped))
    mu, logvar = episodes.first_frame_pool(d)
    assert mu.dtype == np.float32 and np.allclose(mu, shipped) and not logvar.any()
    np.savez(d / rundir.INITIAL_Z, mu=shipped, logvar=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"initial_z\.npz: mu and logvar must be two equal"):
        episodes.first_frame_pool(d)
    (d / rundir.INITIAL_Z).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"initial_z\.npz: not a readable initial-z file"):
        episodes.first_frame_pool(d)
    assert episodes.first_frame_pool(tmp_path) is None and rundir.load_initial_z(tmp_path) is None


# -- no other module spells a run directory's paths ---------------------------------------------------------------

WMLIB = Path(rundir.__file__).parent
PATH_CALLS = {"Path", "path", "joinpath", "with_name", "glob", "rglob"}  # calls whose arguments are paths


def artifact_names() -> tuple[set[str], set[str]]:
    """The file names and the folder names of every path rundir spells (its constants)."""
    values = [v for k, v in vars(rundir).items() if k.isupper() and isinstance(v, (str, Path, tuple, dict))]
    flat = [p for v in values for p in (v.values() if isinstance(v, dict) else v if isinstance(v, tuple) else [v])]
    parts = {part for p in flat if isinstance(p, (str, Path)) and "*" not in str(p) for part in Path(p).parts}
    return {p for p in parts if "." in p.lstrip(".") or p.startswith(".")}, {p for p in parts if "." not in p}


def spelled_paths(path: Path, files: set[str], folders: set[str]) -> list[str]:
    """``file:line: 'text'`` for each string in ``path`` (docstrings aside) that spells a run directory's file, or
    a folder of one where a path is made (``/``, ``Path(...)``, ``rundir.path(...)``, a path with ``/`` in it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    in_path = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
            in_path |= {id(n.left), id(n.right)}
        elif isinstance(n, ast.Call):
            name = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            if name in PATH_CALLS:
                in_path |= {id(a) for a in n.args}
    where = path.relative_to(WMLIB.parent) if path.is_relative_to(WMLIB.parent) else path.name
    found = []
    for n in sorted(ast.walk(tree), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0))):
        if not isinstance(n, ast.Constant) or not isinstance(n.value, str) or id(n) in docstrings:
            continue
        text = n.value
        if any(c.isspace() for c in text):
            continue  # a message, not a path
        parts = [p for p in text.split("/") if p]
        if any(p in files for p in parts) or any(p in folders for p in parts) and ("/" in text or id(n) in in_path):
            found.append(f"{where}:{n.lineno}: {text!r}")
    return found


def test_the_check_finds_spelled_paths_and_leaves_other_strings_alone(tmp_path):
    files, folders = artifact_names()
    assert {
        "config.json",
        "scores.json",
        "ablation.json",
        "fidelity.json",
        "compare.json",
        "CARD.md",
        ".lock",
        "log.csv",
    } <= files
    assert {"rounds", "temperatures", "z_only", "test", "controller", "episodes", "means"} <= folders
    module = tmp_path / "example.py"
    module.write_text(
        '"""controller/controller.pt in a docstring is documentation."""\n'
        'a = d / "test" / "scores.json"\nb = Path("rounds")\nc = state["controller"]\n'
        'e = f"{d}/random_scores.json"\nf = "vision/log.csv"\ng = "no controller.pt here"\n'
    )
    found = spelled_paths(module, files, folders)
    assert [line.split(": ", 1)[1] for line in found] == [
        "'test'",
        "'scores.json'",
        "'rounds'",
        "'/random_scores.json'",
        "'vision/log.csv'",
    ]


def test_only_rundir_spells_the_paths_of_a_run_directory():
    files, folders = artifact_names()
    found = [
        hit
        for path in sorted(WMLIB.glob("*.py"))
        if path.name != "rundir.py"
        for hit in spelled_paths(path, files, folders)
    ]
    assert not found, "ask wmlib.rundir for these paths instead of spelling them:\n" + "\n".join(found)


def test_rundir_s_table_lists_every_artifact():
    files, folders = artifact_names()
    table = rundir.__doc__.split("Every module asks")[0]
    missing = sorted(name for name in files | folders if name not in table)
    assert not missing, f"wmlib/rundir.py's table lacks {missing}"
    for rel in (
        "rounds/round_K/",
        "fidelity.json",
        "compare_firstN.json",
        "z_only/",
        "temperatures/tau_X.XX/",
        "ablation.json",
        "CARD.md",
        "test/random_scores.json",
        "controller/learning_curve.png",
    ):
        assert rel in table, rel
