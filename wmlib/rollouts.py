"""Random-policy episodes from the real game (the paper's data for V and M).

The random policy holds each random action for hold_min..hold_max frames (paper: 1-10 frames for Doom; the same
for CarRacing is our choice, so that the car actually drives and skids instead of jittering in place). Doom episodes
shorter than ``min_frames`` are dropped and replaced (paper: 100). Every episode is seeded from (run seed, index,
attempt) and written atomically to its own file; a re-run skips the episodes already on disk.

Worker processes (here and in :mod:`wmlib.processes`) die with the process that started them
(:func:`exit_with_parent`), and a rollout worker writes an episode only while that process still holds the run
directory's lock.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import episodes
from .config import Config
from .games import make_env
from .runlock import holds_run_lock, lock_path, read_lock
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


PARENT_POLL_SECONDS = 0.25


def exit_with_parent(parent: int, poll: float = PARENT_POLL_SECONDS) -> None:
    """In a worker process started by process ``parent``: exit once that process is gone (within ``poll`` seconds,
    at once if it already is), killing this worker's own child processes (a ViZDoom game) first.

    A daemon thread watches :func:`os.getppid`, which changes when the parent dies (the worker is then adopted by
    another process). Linux's PR_SET_PDEATHSIG is not used: it fires when the *thread* that started the worker
    ends, and a spawn-context ProcessPoolExecutor starts its workers from whichever thread submits work, so a pool
    used from a short-lived thread would lose its workers while its process lives on.
    """
    if os.getppid() != parent:
        exit_orphaned()
    threading.Thread(target=_watch_parent, args=(parent, poll), name="wm-parent-watch", daemon=True).start()


def _watch_parent(parent: int, poll: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll)
    exit_orphaned()


def exit_orphaned() -> None:
    """Kill this process's children, then exit at once (no cleanup: the run directory is no longer ours)."""
    for pid in _child_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # already gone
            pass
    os._exit(1)


def _child_pids() -> list[int]:
    """The pids of this process's children, from /proc (none where there is no /proc)."""
    me, children = os.getpid(), []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:  # fields: state, ppid, ...
            children.append(int(entry))
    return children


_ENV = None
_PARENT: int | None = None  # in a rollout worker: the pid of the process that started it (and holds the lock)


def _worker_init(parent: int):
    global _PARENT
    _PARENT = parent
    exit_with_parent(parent)
    torch.set_num_threads(1)


def _check_lock(data_dir) -> None:
    """In a rollout worker, before an episode is written: the parent is alive and still holds the run's lock."""
    if _PARENT is None:
        return  # in-process: collect_rollouts holds the lock itself
    if os.getppid() != _PARENT:
        exit_orphaned()
    holder = read_lock(data_dir)
    if holder is None or holder.get("pid") != _PARENT:
        raise RuntimeError(f"{lock_path(data_dir)}: the run directory's lock is no longer held by the process "
                           f"that started this rollout worker (pid {_PARENT}); episode not written")


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
    _check_lock(data_dir)
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
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
            for _ in pool.map(_collect_one, jobs):  # a dead worker raises BrokenProcessPool, never hangs
                bar.update()
    bar.close()
    return [episodes.episode_path(data_dir, i) for i in range(cfg.num_rollouts)]
