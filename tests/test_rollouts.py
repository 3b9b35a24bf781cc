"""wmlib.rollouts: the random-action episodes V and M learn from: seeded, written whole, resumed after a kill."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import wait_for, wm
from wmlib import episodes
from wmlib.games import GAMES, make_env
from wmlib.rollouts import play_random_episode, random_action


@pytest.mark.parametrize("game", GAMES)
def test_frames_and_reproducible_reset(game):
    env = make_env(game, max_steps=40)
    try:
        a = play_random_episode(env, game, seed=123, max_frames=40, hold_min=1, hold_max=10)
        b = play_random_episode(env, game, seed=123, max_frames=40, hold_min=1, hold_max=10)
        c = play_random_episode(env, game, seed=124, max_frames=40, hold_min=1, hold_max=10)
    finally:
        env.close()
    assert a["frames"].shape[1:] == (64, 64, 3) and a["frames"].dtype == np.uint8
    assert np.array_equal(a["frames"], b["frames"]) and np.array_equal(a["rewards"], b["rewards"])
    assert not (len(a["frames"]) == len(c["frames"]) and np.array_equal(a["frames"], c["frames"]))
    assert a["frames"].std() > 5  # a real picture, not a blank screen


@pytest.mark.parametrize("game, screen_shape", [("CarRacing-v3", (96, 96, 3)), ("DoomTakeCover", (120, 160, 3))])
def test_screens_at_are_the_games_own_screens_behind_the_frames(game, screen_shape):
    env = make_env(game, max_steps=12)
    try:
        ep = play_random_episode(env, game, seed=3, max_frames=12, hold_min=1, hold_max=10, screens_at=(0, 5, 11))
        plain = play_random_episode(env, game, seed=3, max_frames=12, hold_min=1, hold_max=10)
    finally:
        env.close()
    assert "screens" not in plain and np.array_equal(plain["frames"], ep["frames"])  # looking changes nothing
    assert sorted(ep["screens"]) == [0, 5, 11]
    if game == "CarRacing-v3":
        from wmlib.games.carracing_render import preprocess_frame as small
    else:
        from wmlib.games.doom import preprocess_screen as small
    for t, screen in ep["screens"].items():
        assert screen.shape == screen_shape and screen.dtype == np.uint8
        assert np.array_equal(small(screen), ep["frames"][t])  # the 64x64 frame of that step is made from it


@pytest.mark.parametrize("game", GAMES)
def test_random_actions_are_valid_game_actions(game):
    rng = np.random.default_rng(0)
    actions = np.stack([random_action(game, rng) for _ in range(2000)])
    if game == "CarRacing-v3":
        assert actions.shape == (2000, 3) and actions[:, 0].min() >= -1 and actions[:, 1:].min() >= 0
        assert actions.max() <= 1 and 0.05 < (actions[:, 2] > 0).mean() < 0.15  # brakes about one step in ten
    else:
        assert actions.shape == (2000, 1) and set(np.unique(actions)) == {-1.0, 0.0, 1.0}


def test_killed_rollouts_resume_without_losing_finished_episodes(tmp_path):
    d = tmp_path / "run"
    args = ["--game", "DoomTakeCover", "--preset", "smoke", "--data_dir", str(d), "--num_rollouts", "12",
            "--max_frames", "300", "--workers", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "wmlib.cli", "rollouts", *args], start_new_session=True)
    try:
        wait_for(lambda: len(episodes.list_episodes(d)) >= 3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and the ViZDoom process it started
        proc.wait()
    before = {p.name: p.read_bytes() for p in episodes.list_episodes(d)}
    for p in episodes.list_episodes(d):
        episodes.load_episode(p)  # every file under its real name is whole
    assert len(before) < 12
    wm("rollouts", *args)
    after = episodes.list_episodes(d)
    assert len(after) == 12
    assert all(before[n] == (d / "episodes" / n).read_bytes() for n in before)
