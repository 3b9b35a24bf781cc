import subprocess
import sys

import numpy as np
import pytest

from wmlib.config import make_config
from wmlib.games import GAMES, check_game, make_env
from wmlib.rollouts import play_random_episode


def test_unknown_game_lists_valid_ones():
    with pytest.raises(ValueError, match="CarRacing-v3, DoomTakeCover"):
        check_game("Pong")
    with pytest.raises(ValueError, match="valid presets: smoke, small, reproduce, paper"):
        make_config("DoomTakeCover", "huge")
    with pytest.raises(ValueError, match="preset 'reproduce' is defined for DoomTakeCover only"):
        make_config("CarRacing-v3", "reproduce")


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


def test_doom_truncates_at_max_steps():
    env = make_env("DoomTakeCover", max_steps=5)
    try:
        env.reset(seed=1)
        out = [env.step(np.array([0.0])) for _ in range(5)]
    finally:
        env.close()
    assert [o[1] for o in out] == [1.0] * 5  # +1 per tic survived
    assert out[-1][3] and not any(o[3] for o in out[:-1])


BLOCK = "import sys; sys.modules[{mod!r}] = None\n"


def test_carracing_works_without_vizdoom_and_doom_says_what_is_missing():
    code = BLOCK.format(mod="vizdoom") + (
        "from wmlib.games import make_env\n"
        "env = make_env('CarRacing-v3', max_steps=3); env.reset(seed=0); env.close()\n"
        "try:\n    make_env('DoomTakeCover')\nexcept ImportError as e:\n    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ERR DoomTakeCover needs ViZDoom" in out and "pip install" in out


def test_doom_works_without_box2d():
    code = BLOCK.format(mod="Box2D") + (
        "from wmlib.games import make_env\n"
        "env = make_env('DoomTakeCover', max_steps=3); env.reset(seed=0); env.close(); print('OK')\n"
        "import wmlib.cli, wmlib.evaluators\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
