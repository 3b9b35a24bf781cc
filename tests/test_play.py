"""wmlib.play: `wm test`, the agent (or the random policy) on held-out real episodes, on a real smoke run."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from wmlib import rundir
from wmlib.config import make_config
from wmlib.io import atomic_torch_save
from wmlib.play import held_out_seeds, score_agent, typical_episodes
from wmlib.seeding import EVAL, ROLLOUT, TRAIN, episode_seed


def test_held_out_seeds_are_never_training_seeds():
    cfg = make_config("DoomTakeCover", "smoke", seed=3)
    test = held_out_seeds(cfg, 100)
    assert len(set(test)) == 100 and test[:10] == held_out_seeds(cfg, 10)  # more episodes extend the list
    used = {
        episode_seed(3, g, c, t, purpose)
        for purpose in (TRAIN, EVAL)
        for g in range(20)
        for c in range(16)
        for t in range(16)
    }
    used |= {episode_seed(3, 0, i, a, ROLLOUT) for i in range(200) for a in range(3)}
    assert not set(test) & used
    assert held_out_seeds(make_config("DoomTakeCover", "smoke", seed=4), 10) != test[:10]


def test_score_agent_writes_the_scores_it_returns(run_copy):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "test")
    cfg = make_config("DoomTakeCover", "smoke", max_steps=150)
    result = score_agent(cfg, d, rollouts=3, record=1, progress=False)
    assert json.loads((d / "test" / "scores.json").read_text()) == result
    assert result["episodes"] == 3 and result["policy"] == "controller" and result["max_steps"] == 150
    ckpt = torch.load(d / rundir.CONTROLLER, weights_only=True)
    assert result["generation"] == ckpt["chosen_generation"] and result["controller"] == str(d / rundir.CONTROLLER)
    assert result["scores"] == [float(n) for n in result["lengths"]]  # +1 per tic survived
    assert all(1 <= n <= 150 for n in result["lengths"])
    assert result["mean"] == pytest.approx(np.mean(result["scores"])) and result["renderer"] is None
    # the episode recorded is the typical one (the median score), and the result says which
    (median,) = typical_episodes(result["scores"], 1)
    assert result["scores"][median] == sorted(result["scores"])[1]
    assert result["recorded"] == [dict(episode=median, score=result["scores"][median], gif="episode_000.gif")]
    with Image.open(d / "test" / "episode_000.gif") as gif:  # (Pillow merges repeated frames)
        assert 1 < gif.n_frames <= result["lengths"][median] + 1 and gif.size == (256, 256)
    assert not (d / "test" / "episode_001.gif").exists()
    assert score_agent(cfg, d, rollouts=3, progress=False) == dict(result, recorded=[])  # the same episodes

    rnd = score_agent(cfg, d, rollouts=3, record=1, policy="random", progress=False)
    assert json.loads((d / "test" / "random_scores.json").read_text()) == rnd
    assert rnd["policy"] == "random" and len(rnd["scores"]) == 3 and "generation" not in rnd
    (median,) = typical_episodes(rnd["scores"], 1)
    assert rnd["recorded"] == [dict(episode=median, score=rnd["scores"][median], gif="random_000.gif")]
    with Image.open(d / "test" / "random_000.gif") as gif:
        assert 1 < gif.n_frames <= rnd["lengths"][median]
    with pytest.raises(ValueError, match="unknown --policy 'greedy'; valid: controller, random"):
        score_agent(cfg, d, rollouts=1, policy="greedy", progress=False)


def test_typical_episodes_start_at_the_median_score_and_widen_in_score_order():
    assert typical_episodes([5, 1, 9, 3, 7], 5) == [0, 3, 4, 1, 2]  # scores 5, 3, 7, 1, 9
    assert typical_episodes([4, 2, 8, 6], 4) == [0, 1, 3, 2]  # the lower middle one first; ties: lower score
    assert typical_episodes([4, 2, 8, 6], 1) == [0] and typical_episodes([3.0], 2) == [0]
    assert typical_episodes([1, 1, 1], 2) == [1, 0] and typical_episodes([], 1) == []


def test_the_generation_reported_is_the_one_of_the_parameters_played(run_copy):
    """A search keeps the mean that evaluated best, which can be older than its last generation: the test result
    names the generation of the parameters it played, not how far the search went."""
    d = run_copy("DoomTakeCover")
    ckpt = torch.load(d / rundir.CONTROLLER, weights_only=True)
    atomic_torch_save(d / rundir.CONTROLLER, dict(ckpt, generation=ckpt["generation"] + 5, chosen_generation=1))
    cfg = make_config("DoomTakeCover", "smoke")
    assert score_agent(cfg, d, rollouts=1, progress=False)["generation"] == 1
    del ckpt["chosen_generation"]  # a checkpoint of an older version: its generation
    atomic_torch_save(d / rundir.CONTROLLER, ckpt)
    assert score_agent(cfg, d, rollouts=1, progress=False)["generation"] == ckpt["generation"]
