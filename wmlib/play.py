"""Testing an agent in the real game: mean +- std over N episodes, GIFs, and the random-policy baseline.

``wm test`` writes ``test/scores.json`` = {"mean", "std", "scores", ...}; ``--policy random`` measures the random
policy on the same episode seeds (written to ``test/random_scores.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import rundir
from .agent import REAL_ENVS_PER_BATCH, Agent, EvalSettings
from .config import Config
from .controller import load_controller
from .games import make_env
from .io import atomic_write_text
from .plots import save_gif
from .rollouts import play_random_episode
from .runlock import holds_run_lock
from .seeding import TEST, episode_seed


def held_out_seeds(cfg: Config, n: int) -> list[int]:
    """The seeds of the ``n`` test episodes: never used in training (their own purpose, TEST)."""
    return [episode_seed(cfg.seed, 0, 0, i, TEST) for i in range(n)]


@holds_run_lock("wm test (wmlib.play.score_agent)")
def score_agent(cfg: Config, data_dir, rollouts: int | None = None, record: int = 0, policy: str = "controller",
               progress: bool = True) -> dict:
    """Play ``rollouts`` real episodes; write scores (and ``record`` GIFs) under ``data_dir/test``."""
    data_dir = Path(data_dir)
    n = cfg.test_rollouts if rollouts is None else rollouts
    seeds = held_out_seeds(cfg, n)
    out_dir = rundir.path(data_dir, rundir.TEST)
    scores, lengths = [], []
    bar = tqdm(total=n, desc=f"test {policy}", unit="ep", disable=not progress)
    if policy == "controller":
        params, cckpt = load_controller(data_dir)
        agent = Agent.from_run(data_dir, cfg.game, with_pool=False)
        settings = EvalSettings.from_config(cfg, mode="real")
        try:
            for i in range(0, n, REAL_ENVS_PER_BATCH):
                chunk = seeds[i : i + REAL_ENVS_PER_BATCH]
                rec = i < record
                s, l, frames = agent.play(params, chunk, settings, record=rec)
                scores += s.tolist()
                lengths += l.tolist()
                for j in range(min(len(chunk), record - i) if rec else 0):
                    save_gif(out_dir / f"episode_{i + j:03d}.gif", frames[j])
                bar.update(len(chunk))
        finally:
            agent.close()
        extra = dict(controller=cckpt["path"], generation=int(cckpt["generation"]))
        name = "scores.json"
    elif policy == "random":
        env = make_env(cfg.game, max_steps=cfg.max_steps, renderer=cfg.renderer)
        try:
            for i, seed in enumerate(seeds):
                ep = play_random_episode(env, cfg.game, seed, cfg.max_steps, cfg.hold_min, cfg.hold_max)
                scores.append(float(ep["rewards"].sum()))
                lengths.append(len(ep["rewards"]))
                if i < record:
                    save_gif(out_dir / f"random_{i:03d}.gif", ep["frames"])
                bar.update()
        finally:
            env.close()
        extra = {}
        name = "random_scores.json"
    else:
        raise ValueError(f"unknown --policy {policy!r}; valid: controller, random")
    bar.close()
    result = dict(game=cfg.game, policy=policy, episodes=n, mean=float(np.mean(scores)), std=float(np.std(scores)),
                  scores=[float(s) for s in scores], lengths=[int(x) for x in lengths], max_steps=cfg.max_steps,
                  renderer=cfg.renderer if cfg.game == "CarRacing-v3" else None, **extra)
    atomic_write_text(out_dir / name, json.dumps(result, indent=2))
    return result
