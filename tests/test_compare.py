"""Comparing controllers on fresh real episodes (wm compare): paired, seeded, never the test's."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import wm

from wmlib import compare, rundir
from wmlib.agent import Agent, EvalSettings
from wmlib.controller import load_controller
from wmlib.play import held_out_seeds
from wmlib.seeding import EVAL, ITERATE, ROLLOUT, TRAIN, episode_seed


def zeroed_controller(run, path):
    """A copy of ``run``'s controller checkpoint with every parameter 0 (C always acts the same)."""
    _, ckpt = load_controller(run)
    ckpt.pop("path")
    ckpt["params"] = torch.zeros_like(ckpt["params"])
    torch.save(ckpt, path)
    return path


def test_controllers_play_the_same_fresh_episodes_whichever_evaluator_runs_them(run_copy, tmp_path):
    run = run_copy("CarRacing-v3")
    zero = zeroed_controller(run, tmp_path / "zero.pt")
    one = compare.compare(run, [run, zero, run], episodes=3, max_steps=40, workers=1, progress=False)
    # a second look, from fresh episode 1 on: the same seeded episodes score the same, and the first look's file stays
    later = compare.compare(run, [zero], episodes=2, first=1, max_steps=40, workers=2, progress=False)
    assert later["first"] == 1 and later["rows"][0]["scores"] == one["rows"][1]["scores"][1:]
    assert json.loads((run / compare.RESULT).read_text()) == one
    assert json.loads((run / "compare_first1.json").read_text()) == later
    two = compare.compare(run, [run, zero, run], episodes=3, max_steps=40, workers=2, progress=False)
    assert [r["scores"] for r in one["rows"]] == [r["scores"] for r in two["rows"]]
    first, other, again = one["rows"]
    assert (first["difference"], first["difference_se"]) == (0.0, 0.0)
    assert again["scores"] == first["scores"]  # seeded: the same controller scores the same on the same episodes
    assert other["scores"] != first["scores"]
    assert other["difference"] == pytest.approx(np.mean(other["scores"]) - np.mean(first["scores"]))
    # the scores are those of the agent playing those seeds itself, whole episodes (no early stop)
    cfg = rundir.load_config(run)
    agent = Agent.from_run(run, with_pool=False)
    try:
        direct, lengths, _ = agent.play(
            load_controller(run)[0],
            compare.validation_seeds(cfg.seed, 3),
            EvalSettings.from_config(cfg, mode="real", max_len=40),
        )
    finally:
        agent.close()
    assert direct.tolist() == first["scores"] and (lengths == 40).all()
    assert json.loads((run / compare.RESULT).read_text()) == two


def test_a_run_directory_plays_with_its_own_world_model_a_checkpoint_with_the_data_dirs(run_copy, tmp_path):
    run = run_copy("CarRacing-v3")
    other = tmp_path / "other"
    shutil.copytree(run, other)
    memory = rundir.path(other, rundir.MEMORY)
    ckpt = torch.load(memory, weights_only=True)
    state = ckpt["model"]
    gen = torch.Generator().manual_seed(0)
    for name in state:
        if name.startswith("lstm."):  # another M: the same C reads another h
            state[name] = state[name] + torch.randn(state[name].shape, generator=gen)
    torch.save(ckpt, memory)
    kw = dict(episodes=2, max_steps=120, workers=1, progress=False)
    mixed = compare.compare(run, [run, other, other / "controller" / "controller.pt"], **kw)
    mine, theirs, their_file_here = mixed["rows"]
    alone = compare.compare(other, [other], **kw)["rows"][0]
    assert (mine["models"], theirs["models"], their_file_here["models"]) == (str(run), str(other), str(run))
    assert theirs["scores"] == alone["scores"] != mine["scores"]  # the run directory brought its own M
    assert their_file_here["scores"] == mine["scores"]  # the same controller file, with --data_dir's V and M


def test_validation_episodes_are_never_test_training_or_evaluation_episodes():
    seed, n = 0, 2000
    fresh = set(compare.validation_seeds(seed, n))
    assert len(fresh) == n
    others = {episode_seed(seed, 0, i, 0, ROLLOUT) for i in range(n)}
    others |= {episode_seed(seed, g, c, t, TRAIN) for g in range(100) for c in range(64) for t in range(16)}
    others |= {episode_seed(seed, g, 0, t, EVAL) for g in range(100) for t in range(256)}
    others |= {episode_seed(seed, r, c, e, ITERATE) for r in range(5) for c in range(24) for e in range(8)}
    others |= set(held_out_seeds(SimpleNamespace(seed=seed), 1000))
    assert not fresh & others


def test_paired_difference_and_its_standard_error():
    assert compare.paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0]) == pytest.approx((3.0, 1.0 / np.sqrt(3)))
    assert compare.paired_difference([4.0], [1.0]) == (3.0, 0.0)


def test_a_controller_of_another_game_or_a_missing_file_is_refused_by_name(smoke_runs, run_copy, tmp_path):
    car, doom = run_copy("CarRacing-v3"), smoke_runs("DoomTakeCover")

    def run(*args, episodes=1):
        return wm("compare", "--data_dir", car, *args, "--episodes", episodes, "--quiet", check=False, timeout=300)

    wrong = run(car, doom / "controller" / "controller.pt")
    assert wrong.returncode == 2 and wrong.stderr.startswith("wm compare: error: "), wrong.stderr
    assert str(doom / "controller" / "controller.pt") in wrong.stderr and "DoomTakeCover" in wrong.stderr
    missing = run(tmp_path / "nowhere.pt")
    assert missing.returncode == 2 and "nowhere.pt" in missing.stderr and "not found" in missing.stderr
    none = run(car, episodes=0)
    assert none.returncode == 2 and "--episodes" in none.stderr
    before = run(car, "--first", "-1")
    assert before.returncode == 2 and "--first" in before.stderr
    assert not (car / compare.RESULT).exists()  # nothing written by a refused comparison
    ok = run(car, "--max_steps", "20")
    assert ok.returncode == 0, ok.stderr
    assert "1 fresh real episodes of CarRacing-v3" in ok.stdout and (car / compare.RESULT).exists()
