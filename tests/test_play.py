"""wmlib.play: `wm test`, the agent (or the random policy) on held-out real episodes, on a real smoke run."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from wmlib import rundir
from wmlib.config import make_config
from wmlib.play import held_out_seeds, score_agent
from wmlib.seeding import EVAL, ROLLOUT, TRAIN, episode_seed


def test_held_out_seeds_are_never_training_seeds():
    cfg = make_config("DoomTakeCover", "smoke", seed=3)
    test = held_out_seeds(cfg, 100)
    assert len(set(test)) == 100 and test[:10] == held_out_seeds(cfg, 10)  # more episodes extend the list
    used = {episode_seed(3, g, c, t, purpose) for purpose in (TRAIN, EVAL) for g in range(20) for c in range(16)
            for t in range(16)}
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
    assert result["generation"] == cfg.generations and result["controller"] == str(d / rundir.CONTROLLER)
    assert result["scores"] == [float(n) for n in result["lengths"]]  # +1 per tic survived
    assert all(1 <= n <= 150 for n in result["lengths"])
    assert result["mean"] == pytest.approx(np.mean(result["scores"])) and result["renderer"] is None
    with Image.open(d / "test" / "episode_000.gif") as gif:  # the first episode (Pillow merges repeated frames)
        assert 1 < gif.n_frames <= result["lengths"][0] + 1 and gif.size == (256, 256)
    assert not (d / "test" / "episode_001.gif").exists()
    assert score_agent(cfg, d, rollouts=3, progress=False) == result  # the same seeds: the same episodes

    rnd = score_agent(cfg, d, rollouts=3, policy="random", progress=False)
    assert json.loads((d / "test" / "random_scores.json").read_text()) == rnd
    assert rnd["policy"] == "random" and len(rnd["scores"]) == 3 and "generation" not in rnd
    with pytest.raises(ValueError, match="unknown --policy 'greedy'; valid: controller, random"):
        score_agent(cfg, d, rollouts=1, policy="greedy", progress=False)
