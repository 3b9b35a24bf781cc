"""Random-policy episodes from the real game (the paper's data for V and M).

The random policy holds each random action for hold_min..hold_max frames (paper: 1-10 frames for Doom; the same
for CarRacing is our choice, so that the car actually drives and skids instead of jittering in place). Doom episodes
shorter than ``min_frames`` are dropped and replaced (paper: 100). Every episode is seeded from (run seed, index,
attempt) and written atomically to its own file; a re-run skips the episodes already on disk.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import episodes
from .config import Config
from .games import make_env
from .runlock import holds_run_lock
from .seeding import ROLLOUT, episode_seed


def random_action(game: str, rng: np.random.Generator) -> np.ndarray:
    """One random action in the game's action space."""
    if game == "CarRacing-v3":
        brake = rng.uniform(0.0, 1.0) if rng.uniform() < 0.1 else 0.0
        return np.array([rng.uniform(-1.0, 1.0), rng.uniform(0.0, 1.0), brake], np.float32)
    return np.array([rng.integers(-1, 2)], np.float32)  # left, stay or right


def play_random_episode(env, game: str, seed: int, max_frames: int, hold_min: int, hold_max: int,
                        screens_at=()) -> dict:
    """Play one episode with held random actions; returns the episode's arrays (and, for the steps in
    ``screens_at``, the game's own screens behind those frames, as ``screens`` {step: (H, W, 3)})."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, actions, rewards, dones, screens = [], [], [], [], {}
    hold, action = 0, None
    for t in range(max_frames):
        if hold == 0:
            action, hold = random_action(game, rng), int(rng.integers(hold_min, hold_max + 1))
        hold -= 1
        if t in screens_at:
            screens[t] = env.screen()
        frames.append(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        rewards.append(reward)
        dones.append(terminated)
        if terminated or truncated:
            break
    episode = dict(frames=np.stack(frames), actions=np.stack(actions), rewards=np.array(rewards, np.float32),
                   dones=np.array(dones, bool))
    if screens_at:
        episode["screens"] = screens
    return episode


_ENV = None


def _worker_init():
    torch.set_num_threads(1)


def _collect_one(args) -> tuple[int, int, float]:
    """Collect episode ``index`` and write it; returns (index, frames, total reward)."""
    global _ENV
    cfg_dict, data_dir, index = args
    cfg = Config.from_dict(cfg_dict)
    if _ENV is None:
        _ENV = make_env(cfg.game, max_steps=cfg.max_frames, renderer=cfg.renderer)
    for attempt in range(1000):
        seed = episode_seed(cfg.seed, 0, index, attempt, ROLLOUT)
        ep = play_random_episode(_ENV, cfg.game, seed, cfg.max_frames, cfg.hold_min, cfg.hold_max)
        if len(ep["frames"]) >= cfg.min_frames:
            break
    meta = dict(game=cfg.game, seed=seed, index=index, attempt=attempt, renderer=cfg.renderer,
                policy="random", score=float(ep["rewards"].sum()))
    episodes.save_episode(episodes.episode_path(data_dir, index), meta=meta, **ep)
    return index, len(ep["frames"]), float(ep["rewards"].sum())


@holds_run_lock("wm rollouts (wmlib.rollouts.collect_rollouts)")
def collect_rollouts(cfg: Config, data_dir, workers: int | None = None, progress: bool = True) -> list[Path]:
    """Make sure episodes 0..num_rollouts-1 exist under ``data_dir/episodes``; returns their paths."""
    global _ENV
    workers = cfg.workers if workers is None else workers
    todo = [i for i in range(cfg.num_rollouts) if not episodes.episode_path(data_dir, i).exists()]
    jobs = [(cfg.to_dict(), str(data_dir), i) for i in todo]
    bar = tqdm(total=cfg.num_rollouts, initial=cfg.num_rollouts - len(todo), desc=f"rollouts {cfg.game}",
               unit="ep", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        try:
            for job in jobs:
                _collect_one(job)
                bar.update()
        finally:
            if _ENV is not None:
                _ENV.close()
                _ENV = None
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            for _ in pool.map(_collect_one, jobs):  # a dead worker raises BrokenProcessPool, never hangs
                bar.update()
    bar.close()
    return [episodes.episode_path(data_dir, i) for i in range(cfg.num_rollouts)]
