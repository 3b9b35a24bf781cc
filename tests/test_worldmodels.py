"""World models side by side (wm compare --world_models): V's loss and M's NLL on the same fresh random episodes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import wm

from wmlib import rundir, worldmodels
from wmlib.seeding import ROLLOUT, episode_seed


def _noisy_vision(run, dst):
    """A copy of ``run`` whose V has noise on every weight (a worse V, the same M)."""
    shutil.copytree(run, dst)
    path = rundir.path(dst, rundir.VISION)
    ckpt = torch.load(path, weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for k, v in ckpt["model"].items():
        if v.is_floating_point():
            ckpt["model"][k] = v + 0.05 * torch.randn(v.shape, generator=gen)
    torch.save(ckpt, path)
    return dst


def _numbers(row):
    return {k: v for k, v in row.items() if k not in ("run", "seconds")}


def test_the_same_world_model_scores_the_same_and_a_worse_v_scores_worse(run_copy, tmp_path):
    run = run_copy("CarRacing-v3")
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    noisy = _noisy_vision(run, tmp_path / "noisy")
    result = worldmodels.compare_world_models(run, [run, twin, noisy], episodes=2, progress=False)
    a, b, c = result["rows"]
    assert _numbers(a) == _numbers(b)  # the same V and M on the same episodes and draws
    assert c["v_loss"] > a["v_loss"] + 1.0 and c["v_r_loss"] > a["v_r_loss"]
    for r in (a, c):
        assert r["v_loss"] >= r["v_r_loss"] + r["v_kl"] - 1e-4  # the KL term is floored, never lowered
        assert 0 < r["m_nll_early"] < 10 and r["memory_steps"] > 0
    assert result["frames"] > 2 and result["purpose"] == "HELD_OUT_RANDOM"
    assert json.loads(rundir.world_models_path(run).read_text()) == result
    again = worldmodels.compare_world_models(run, [noisy], episodes=2, progress=False)
    assert _numbers(again["rows"][0]) == _numbers(c)  # seeded: the same episodes, the same numbers


def test_the_episodes_are_fresh_and_a_later_look_plays_others():
    seeds = worldmodels.held_out_seeds(0, 50)
    rollouts = {episode_seed(0, 0, i, a, ROLLOUT) for i in range(2000) for a in range(2)}
    assert len(set(seeds)) == 50 and not set(seeds) & rollouts
    assert worldmodels.held_out_seeds(0, 10, first=40) == seeds[40:]


def test_wm_compare_world_models_prints_the_table_and_names_what_it_cannot_compare(smoke_runs, run_copy, tmp_path):
    run = run_copy("CarRacing-v3")
    out = wm("compare", "--world_models", "--data_dir", run, run, "--episodes", 1, "--first", 3, "--quiet")
    assert "1 fresh random-policy episodes of CarRacing-v3" in out.stdout and "V loss" in out.stdout
    assert rundir.world_models_path(run, 3).exists() and not rundir.world_models_path(run).exists()
    bad = wm("compare", "--world_models", "--data_dir", run, run / "controller/controller.pt", check=False)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr and "--world_models" in bad.stderr
    doom = smoke_runs("DoomTakeCover")
    other = wm("compare", "--world_models", "--data_dir", run, doom, "--episodes", 1, check=False)
    assert other.returncode == 2 and "a run of DoomTakeCover" in other.stderr
    with pytest.raises(ValueError, match="--episodes must be at least 1"):
        worldmodels.compare_world_models(run, [run], episodes=0)
