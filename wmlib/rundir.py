"""The run directory: where every stage finds what the stage before it wrote, and writes what it makes.

| path                            | written by                    | what                                               |
|---------------------------------|-------------------------------|----------------------------------------------------|
| ``config.json``                 | ``wm`` (every command)        | the run's settings (:class:`wmlib.config.Config`)  |
| ``.lock``                       | a running command             | who works here now (:mod:`wmlib.runlock`)          |
| ``episodes/ep_NNNNNN.npz``      | rollouts, iterate             | frames, actions, rewards, dones                    |
| ``series/ep_NNNNNN.npz``        | memory (encoding)             | V's mu, logvar of every frame, actions, ...        |
| ``vision/vision.pt``, ``log.csv`` | vision                      | V                                                  |
| ``vision/frames.u8``, ``.json`` | vision                        | V's frames, uncompressed for shuffled reading      |
| ``memory/memory.pt``, ``log.csv`` | memory                      | M                                                  |
| ``memory/initial_z.npz``        | a pretrained agent            | the dream's first frames (mu, logvar)              |
| ``controller/controller.pt``    | evolution                     | C's parameters                                     |
| ``controller/es_state.npz``, ``log.csv`` | evolution            | CMA-ES state (no pickle) and log                   |
| ``controller/means/gen_NNNN.pt`` | evolution                    | the CMA-ES mean of each evaluated generation       |
| ``test/scores.json``            | play (``wm test``)            | real-game scores                                   |
| ``temperatures/study.json``     | study                         | the temperature study                              |
| ``iteration.json``              | iterate                       | a round of iterative training                      |

Every module asks this one for a path instead of spelling it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import episodes
from .config import Config

CONFIG = "config.json"
VISION = Path("vision") / "vision.pt"
FRAMES = Path("vision") / "frames.u8"  # V's training frames, uncompressed (episodes.FrameStore); can be deleted
MEMORY = Path("memory") / "memory.pt"
INITIAL_Z = Path("memory") / "initial_z.npz"
CONTROLLER = Path("controller") / "controller.pt"
ES_STATE = Path("controller") / "es_state.npz"  # wmlib.esstate: data only, loading runs no code
MEANS = Path("controller") / "means"  # the CMA-ES mean of every evaluated generation, gen_NNNN.pt
TEST = Path("test")
STUDY = Path("temperatures") / "study.json"
ITERATION = "iteration.json"
ROUNDS = Path("rounds")  # wm iterate: each earlier round's controller and M, rounds/round_K/
FIDELITY = "fidelity.json"  # python -m wmlib.study --fidelity: the same controllers in the dream and the real game


def path(data_dir, rel) -> Path:
    """``data_dir / rel``: e.g. ``path(run, rundir.MEMORY)``."""
    return Path(data_dir) / rel


def stage_dir(data_dir, stage: str) -> Path:
    """The folder of a stage's files and its ``log.csv``: vision, memory or controller."""
    if stage not in ("vision", "memory", "controller"):
        raise ValueError(f"unknown stage {stage!r}; valid: vision, memory, controller")
    return Path(data_dir) / stage


def log_path(data_dir, stage: str) -> Path:
    return stage_dir(data_dir, stage) / "log.csv"


def load_config(data_dir) -> Config:
    """The settings a run directory was made with; a missing or broken ``config.json`` is named in the error."""
    p = Path(data_dir) / CONFIG
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a run directory (no {CONFIG})")
    try:
        values = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not a valid run config (not JSON: {exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{p}: not a valid run config (expected a JSON object of settings, got "
                         f"{type(values).__name__})")
    return Config.from_dict(values, source=str(p))  # a missing, unknown or bad setting is named


def share_world_model(src, dst, with_episodes: bool = False) -> Path:
    """Make ``dst`` a run directory that shares ``src``'s trained V and M and its encoded series (hard links, or
    copies where links cannot be made), so a controller can be trained there without touching ``src``'s.
    Checkpoints are replaced, never written in place, so training in ``dst`` leaves ``src``'s files alone."""
    src, dst = Path(src), Path(dst)
    extra = [INITIAL_Z] if (src / INITIAL_Z).exists() else []  # a pretrained agent's
    folders = [episodes.SERIES, episodes.EPISODES] if with_episodes else [episodes.SERIES]
    for rel in [VISION, MEMORY, *extra, *(Path(d) / p.name for d in folders for p in sorted((src / d).glob("ep_*.npz")))]:
        target = dst / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, target)
        except OSError:
            shutil.copy2(src / rel, target)
    return dst


def load_initial_z(data_dir) -> tuple[np.ndarray, np.ndarray] | None:
    """(mu, logvar) of the dream's first frames from ``memory/initial_z.npz``, or None when the file is absent."""
    p = Path(data_dir) / INITIAL_Z
    if not p.exists():
        return None
    try:
        with np.load(p, allow_pickle=False) as d:
            mu, logvar = d["mu"], d["logvar"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{p}: not a readable initial-z file ({type(exc).__name__}: {exc})") from exc
    if mu.ndim != 2 or mu.shape != logvar.shape or len(mu) == 0:
        raise ValueError(f"{p}: mu and logvar must be two equal (N, N_z) arrays, got {mu.shape}, {logvar.shape}")
    return mu.astype(np.float32), logvar.astype(np.float32)


def first_frame_pool(data_dir) -> tuple[np.ndarray, np.ndarray] | None:
    """Where dreams start: (mu, logvar) (E, N_z) of the first frame of every encoded episode, or None if there are
    none. A pretrained agent ships them in one file (``memory/initial_z.npz``) instead of its series."""
    pool = load_initial_z(data_dir)
    if pool is not None:
        return pool
    files = episodes.list_series(data_dir)
    if not files:
        return None
    firsts = [episodes.load_series(f) for f in files]
    return np.stack([s["mu"][0] for s in firsts]), np.stack([s["logvar"][0] for s in firsts])
