"""wmlib.rollouts: the random-action episodes V and M learn from: seeded, written whole (by the command, which holds
the run directory's lock, never by a worker), resumed after a kill; the worker processes die with the command.
Local processes and Dask against in-process: test_farm."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from conftest import wait_for, wm

from wmlib import episodes, rollouts
from wmlib.config import make_config
from wmlib.games import GAMES, make_env
from wmlib.rollouts import collect_rollouts, play_random_episode, random_action


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
    args = [
        "--game",
        "DoomTakeCover",
        "--preset",
        "smoke",
        "--data_dir",
        str(d),
        "--num_rollouts",
        "12",
        "--max_frames",
        "300",
        "--workers",
        "1",
        "--quiet",
    ]
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


def alive(procs) -> list:
    """Those of ``procs`` (psutil.Process) that still run (an exited process nobody reaped yet does not)."""
    running = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                running.append(p)
        except psutil.NoSuchProcess:
            pass
    return running


def test_killing_rollouts_kills_its_workers_and_no_episode_is_written_after(tmp_path):
    d = tmp_path / "run"
    args = [
        "--game",
        "CarRacing-v3",
        "--preset",
        "smoke",
        "--data_dir",
        str(d),
        "--num_rollouts",
        "400",
        "--max_frames",
        "100",
        "--workers",
        "2",
        "--quiet",
    ]
    proc = subprocess.Popen([sys.executable, "-m", "wmlib.cli", "rollouts", *args], start_new_session=True)
    try:
        parent = psutil.Process(proc.pid)

        def workers():
            return [p for p in parent.children() if "spawn_main" in " ".join(p.cmdline())]

        wait_for(lambda: len(workers()) == 2 and len(episodes.list_episodes(d)) >= 2)
        pool = workers()
        os.kill(proc.pid, signal.SIGKILL)
        at_kill = len(episodes.list_episodes(d))
        proc.wait()
        deadline = time.monotonic() + 2.0
        while alive(pool) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pool), "rollout workers outlived the killed command"
        written = {p.name for p in episodes.list_episodes(d)}
        time.sleep(1.0)
        assert {p.name for p in episodes.list_episodes(d)} == written
        assert len(written) - at_kill <= 2  # at most the episode each worker was saving at the kill
        assert len(written) < 400
        for p in episodes.list_episodes(d):
            episodes.load_episode(p)  # whole, or not there
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the command's process group
        proc.wait()


def test_an_episode_task_gives_the_bytes_save_episode_writes_and_writes_nothing(tmp_path):
    """The rollout task returns the episode file's bytes (the process holding the run lock writes them): the same
    bytes as episodes.save_episode writes for that episode, and as collect_rollouts wrote."""
    cfg = make_config("DoomTakeCover", "smoke", num_rollouts=2)
    before = set(tmp_path.iterdir())
    data, meta, n = rollouts.play_episode(cfg.to_dict(), 1)
    rollouts.close_env()
    assert set(tmp_path.iterdir()) == before
    env = make_env(cfg.game, max_steps=cfg.max_frames)
    try:
        ep = play_random_episode(env, cfg.game, meta["seed"], cfg.max_frames, cfg.hold_min, cfg.hold_max)
    finally:
        env.close()
    episodes.save_episode(tmp_path / "saved.npz", meta=meta, **ep)
    assert data == (tmp_path / "saved.npz").read_bytes() and n == len(ep["frames"])
    assert data == rollouts.episode_bytes(meta=meta, **ep)
    collect_rollouts(cfg, tmp_path / "run", progress=False)
    assert episodes.episode_path(tmp_path / "run", 1).read_bytes() == data
    loaded = episodes.load_episode(episodes.episode_path(tmp_path / "run", 1))
    assert loaded["meta"] == meta and np.array_equal(loaded["frames"], ep["frames"])
