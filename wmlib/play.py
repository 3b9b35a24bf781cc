"""Testing an agent in the real game: mean +- std over N episodes, GIFs, and the random-policy baseline.

``wm test`` writes ``test/scores.json`` = {"mean", "std", "scores", ...}; ``--policy random`` measures the random
policy on the same episode seeds (written to ``test/random_scores.json``). The result names the controller played
and the generation of its parameters (the evaluated mean it keeps, which may be older than the search).

``--record N`` draws typical episodes, not the first ones: the episode whose score is the median of those played,
then its neighbours in score order. They are played again, with the same seeds (so the same episodes), to keep
their frames; ``test/episode_000.gif`` is the first of them, and the result's ``recorded`` says which test episode
each GIF shows and its score.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import rundir
from .agent import REAL_ENVS_PER_BATCH, Agent, EvalSettings
from .config import Config
from .controller import load_controller, played_generation
from .games import make_env
from .io import atomic_write_text
from .jobs import Evaluator
from .plots import save_gif
from .rollouts import play_random_episode
from .runlock import holds_run_lock
from .seeding import TEST, episode_seed

POLICIES = ("controller", "random")


def held_out_seeds(cfg: Config, n: int) -> list[int]:
    """The seeds of the ``n`` test episodes: never used in training (their own purpose, TEST)."""
    return [episode_seed(cfg.seed, 0, 0, i, TEST) for i in range(n)]


def typical_episodes(scores, n: int) -> list[int]:
    """The ``n`` episodes nearest the median score: the median one first (the lower of the two middle ones for an
    even count), then its neighbours in score order, nearer before farther (ties: the lower score first)."""
    order = np.argsort(np.asarray(scores, np.float64), kind="stable")
    middle = (len(order) - 1) // 2
    ranks = sorted(range(len(order)), key=lambda r: (abs(r - middle), r))
    return [int(order[r]) for r in ranks[: max(0, int(n))]]


@holds_run_lock("wm test (wmlib.play.score_agent)")
def score_agent(
    cfg: Config,
    data_dir,
    rollouts: int | None = None,
    record: int = 0,
    policy: str = "controller",
    progress: bool = True,
    agent: Agent | None = None,
    evaluator: Evaluator | None = None,
    device=None,
) -> dict:
    """Play ``rollouts`` real episodes; write scores (and ``record`` GIFs of typical episodes) under
    ``data_dir/test``. ``agent``: this run's V and M when the caller loaded them already. ``evaluator``: where the
    controller's episodes are played (:func:`wmlib.evaluators.choose`: local processes, a Dask cluster), the same
    scores and lengths as in this process; without one, and for the random policy and the GIFs, this process.
    ``device`` (a ``--device`` value; None: where the agent is, the CPU by default): where V and M compute here."""
    if policy not in POLICIES:
        raise ValueError(f"unknown --policy {policy!r}; valid: {', '.join(POLICIES)}")
    data_dir = Path(data_dir)
    n = cfg.test_rollouts if rollouts is None else rollouts
    seeds = held_out_seeds(cfg, n)
    bar = tqdm(total=n, desc=f"test {policy}", unit="ep", disable=not progress)
    try:
        if policy == "controller":
            player = ControllerPlayer(cfg, data_dir, agent if evaluator is None else evaluator.agent, evaluator)
            if device is not None:
                player.agent.on(device)
        else:
            player = RandomPlayer(cfg)
        try:
            scores, lengths = player.scores(seeds, bar)
            recorded = record_typical(player, data_dir, seeds, scores, record)
        finally:
            player.close()
    finally:
        bar.close()
    result = dict(
        game=cfg.game,
        policy=policy,
        episodes=n,
        mean=float(np.mean(scores)),
        std=float(np.std(scores)),
        scores=[float(s) for s in scores],
        lengths=[int(x) for x in lengths],
        max_steps=cfg.max_steps,
        renderer=cfg.renderer if cfg.game == "CarRacing-v3" else None,
        **player.extra,
        recorded=recorded,
    )
    atomic_write_text(rundir.scores_path(data_dir, policy), json.dumps(result, indent=2))
    return result


def record_typical(player, data_dir: Path, seeds: list[int], scores, record: int) -> list[dict]:
    """Play the ``record`` typical episodes (:func:`typical_episodes`) again, keeping their frames, and write each
    as a GIF; returns [{episode, score, gif}, ...] in the order of the GIFs."""
    chosen = typical_episodes(scores, min(record, len(seeds)))
    recorded = []
    for k, (i, frames) in enumerate(zip(chosen, player.frames([seeds[i] for i in chosen]))):
        gif = rundir.recording_path(data_dir, player.policy, k)
        save_gif(gif, frames)
        recorded.append(dict(episode=i, score=float(scores[i]), gif=gif.name))
    return recorded


class ControllerPlayer:
    """The run's chosen controller with its V and M, on real episodes in lockstep batches."""

    policy = "controller"

    def __init__(self, cfg: Config, data_dir: Path, agent: Agent | None = None, evaluator: Evaluator | None = None):
        self.params, ckpt = load_controller(data_dir)
        self.evaluator = evaluator
        self.agent = agent if agent is not None else Agent.from_run(data_dir, cfg.game, with_pool=False)
        self.settings = EvalSettings.from_config(cfg, mode="real")
        self.extra = dict(controller=ckpt["path"], generation=played_generation(ckpt))

    def scores(self, seeds: list[int], bar) -> tuple[list[float], list[int]]:
        if self.evaluator is not None:  # one job, cut into tasks wherever the evaluator runs them
            at = dataclasses.replace(self.settings, lengths=True)
            played = self.evaluator.evaluate(at, [(self.params, seeds)])[0]
            bar.update(len(seeds))
            return played["score"].tolist(), played["length"].tolist()
        scores, lengths = [], []
        for i in range(0, len(seeds), REAL_ENVS_PER_BATCH):
            s, n, _ = self.agent.play(self.params, seeds[i : i + REAL_ENVS_PER_BATCH], self.settings)
            scores += s.tolist()
            lengths += n.tolist()
            bar.update(len(s))
        return scores, lengths

    def frames(self, seeds: list[int]) -> list[list[np.ndarray]]:
        """Each episode's observations, the last one included."""
        out = []
        for i in range(0, len(seeds), REAL_ENVS_PER_BATCH):
            out += self.agent.play(self.params, seeds[i : i + REAL_ENVS_PER_BATCH], self.settings, record=True)[2]
        return out

    def close(self) -> None:
        self.agent.close()


class RandomPlayer:
    """The random policy of the rollouts, one episode at a time."""

    policy = "random"
    extra: dict = {}

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.env = make_env(cfg.game, max_steps=cfg.max_steps, renderer=cfg.renderer)

    def _episode(self, seed: int) -> dict:
        cfg = self.cfg
        return play_random_episode(self.env, cfg.game, seed, cfg.max_steps, cfg.hold_min, cfg.hold_max)

    def scores(self, seeds: list[int], bar) -> tuple[list[float], list[int]]:
        scores, lengths = [], []
        for seed in seeds:
            rewards = self._episode(seed)["rewards"]
            scores.append(float(rewards.sum()))
            lengths.append(len(rewards))
            bar.update()
        return scores, lengths

    def frames(self, seeds: list[int]) -> list[np.ndarray]:
        return [self._episode(seed)["frames"] for seed in seeds]

    def close(self) -> None:
        self.env.close()
