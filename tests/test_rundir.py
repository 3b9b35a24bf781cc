"""wmlib.rundir: where every artifact of a run lives, the run's config, and sharing a trained world model."""

import json
import os

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
    mu, logvar = rundir.first_frame_pool(d)
    assert np.array_equal(mu, np.stack([s["mu"][0] for s in series]))
    assert np.array_equal(logvar, np.stack([s["logvar"][0] for s in series]))
    shipped = np.random.default_rng(0).normal(size=(5, mu.shape[1]))
    np.savez(d / rundir.INITIAL_Z, mu=shipped, logvar=np.zeros_like(shipped))
    mu, logvar = rundir.first_frame_pool(d)
    assert mu.dtype == np.float32 and np.allclose(mu, shipped) and not logvar.any()
    np.savez(d / rundir.INITIAL_Z, mu=shipped, logvar=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"initial_z\.npz: mu and logvar must be two equal"):
        rundir.first_frame_pool(d)
    (d / rundir.INITIAL_Z).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"initial_z\.npz: not a readable initial-z file"):
        rundir.first_frame_pool(d)
    assert rundir.first_frame_pool(tmp_path) is None and rundir.load_initial_z(tmp_path) is None
