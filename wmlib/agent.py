"""What scores a controller: the agent (V + M + the controller's shape), how to play (EvalSettings), and jobs.

A *job* is one controller (a flat parameter vector) and the seeds of the episodes to play with it; the result of
a job is one score per seed. A candidate's fitness is the mean of its job's scores. :func:`run_jobs` plays a list of
jobs with an :class:`Agent`, in the real game or in the dream; every evaluator (:mod:`wmlib.evaluators`: in this
process, local worker processes, a Dask cluster) calls it wherever the work runs.

Every episode's seed comes from :func:`wmlib.seeding.episode_seed`, and real-game episodes are independent of each
other, so a real-game generation gives identical scores whichever evaluator runs it. A dream batch gives identical
scores too, as long as the candidates are batched the same way (otherwise they agree up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import rundir
from .config import Config
from .controller import ControllerSpec
from .dream import dream_rollouts
from .games import OPENING_FRAMES, controller_to_action, make_env
from .memory import Memory, check_compatible, load_memory
from .seeding import ENCODE_Z, episode_keys, normal
from .vision import Vision, load_vision, to_tensor

REAL_ENVS_PER_BATCH = 16  # real games stepped in lockstep by one process (their V/M/C steps are batched)


@dataclass(frozen=True)
class EvalSettings:
    """How to play a job's episodes. Made from a run's Config by :meth:`from_config` (the defaults here are the
    Config's own, for settings made by hand)."""

    mode: str = "real"
    """'real' (the game) or 'dream' (inside M)."""
    max_len: int = Config.max_steps
    """Longest episode in steps."""
    temperature: float = Config.temperature
    done_threshold: float = Config.done_threshold
    initial_z_noise: float = Config.initial_z_noise
    renderer: str = Config.renderer
    early_stop: int = 0
    """Real game: end an episode after this many frames of negative reward in a row after the opening (0 = never;
    training only, see Config.early_stop)."""

    @classmethod
    def from_config(cls, cfg: Config, mode: str | None = None, max_len: int | None = None,
                    temperature: float | None = None, training: bool = False) -> "EvalSettings":
        """The settings ``cfg`` asks for: in the dream when ``mode`` is 'dream' (default: cfg.in_dream), up to
        cfg.dream_max_len (dream) or cfg.max_steps (real game) steps unless ``max_len`` says otherwise, at
        cfg.temperature unless ``temperature`` says otherwise. Only ``training`` episodes stop early
        (cfg.early_stop): everything that reports a score plays whole episodes."""
        mode = mode or ("dream" if cfg.in_dream else "real")
        if mode not in ("real", "dream"):
            raise ValueError(f"unknown evaluation mode {mode!r}; valid: real, dream")
        if max_len is None:
            max_len = cfg.dream_max_len if mode == "dream" else cfg.max_steps
        return cls(mode=mode, max_len=int(max_len), temperature=cfg.temperature if temperature is None else
                   float(temperature), done_threshold=cfg.done_threshold, initial_z_noise=cfg.initial_z_noise,
                   renderer=cfg.renderer, early_stop=cfg.early_stop if training and mode == "real" else 0)


class Agent:
    """V + M (+ the dream's pool of first frames) and the controller spec: what a worker needs to score jobs."""

    def __init__(self, game: str, vision, memory, pool_mu=None, pool_logvar=None, z_only: bool = False):
        self.game, self.vision, self.memory = game, vision, memory
        self.spec = ControllerSpec(game, memory.z_dim, memory.hidden_dim, z_only=bool(z_only))
        self.pool_mu, self.pool_logvar = pool_mu, pool_logvar
        self._envs = []

    @classmethod
    def from_run(cls, data_dir, game: str | None = None, with_pool: bool = True) -> "Agent":
        vision, vckpt = load_vision(data_dir)
        memory, mckpt = load_memory(data_dir)
        check_compatible(vckpt, mckpt)
        run_game = mckpt["config"]["game"]
        if game is not None and game != run_game:
            raise ValueError(f"{mckpt['path']}: trained on {run_game}, but --game is {game}")
        pool = rundir.first_frame_pool(data_dir) if with_pool and run_game == "DoomTakeCover" else None
        has_config = (Path(data_dir) / rundir.CONFIG).exists()  # a run's C may read z alone (--z_only)
        z_only = rundir.load_config(data_dir).z_only if has_config else False
        return cls(run_game, vision, memory, *(pool or (None, None)), z_only=z_only)

    def state(self) -> dict:
        """Everything needed to rebuild this agent elsewhere, as plain values and numpy arrays (picklable)."""
        arrays = lambda model: {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}  # noqa: E731
        return dict(game=self.game, vision_z_dim=self.vision.z_dim, vision=arrays(self.vision),
                    memory_arch=self.memory.arch(), memory=arrays(self.memory),
                    pool_mu=self.pool_mu, pool_logvar=self.pool_logvar, z_only=self.spec.z_only)

    @classmethod
    def from_state(cls, state: dict) -> "Agent":
        """The agent that :meth:`state` describes (in eval mode, with no game environment open yet)."""
        tensors = lambda arrays: {k: torch.tensor(np.asarray(v)) for k, v in arrays.items()}  # noqa: E731
        vision = Vision(int(state["vision_z_dim"]))
        vision.load_state_dict(tensors(state["vision"]))
        memory = Memory(**state["memory_arch"])
        memory.load_state_dict(tensors(state["memory"]))
        return cls(state["game"], vision.eval(), memory.eval(), state["pool_mu"], state["pool_logvar"],
                   z_only=state["z_only"])

    # -- real game -------------------------------------------------------------------------------------------
    def envs(self, n: int, settings: EvalSettings):
        """n game environments, made once and reused."""
        while len(self._envs) < n:
            self._envs.append(make_env(self.game, max_steps=None, renderer=settings.renderer))
        return self._envs[:n]

    def close(self):
        for env in self._envs:
            env.close()
        self._envs = []

    def play(self, params, seeds, settings: EvalSettings, record: bool = False):
        """Play one real episode per seed with one controller, all in lockstep. Returns (scores, lengths, frames).

        Each step: V encodes the frames of the running games in one batch (z = mu + sigma * eps, eps from the
        episode's own seed), C acts on [z, h] ([z, c, h] for Doom), M advances h with (z, a). M's weights are
        arranged once per call (:meth:`Memory.step_weights`), and a game that ends drops out of the batch.
        ``frames`` (when ``record``) holds each episode's observations, the last one included.
        """
        scores, lengths, frames, _ = self._play(params, seeds, settings, record, trace=False)
        return scores, lengths, frames

    def play_episodes(self, params, seeds, settings: EvalSettings) -> list[dict]:
        """:meth:`play`, keeping each episode whole: frames (the one each action was chosen on), actions,
        rewards and dones, as random rollouts store them (so V and M can learn from them)."""
        _, _, frames, traces = self._play(params, seeds, settings, record=True, trace=True)
        return [dict(frames=np.stack(f[:-1]), actions=np.stack(t["actions"]).astype(np.float32),
                     rewards=np.array(t["rewards"], np.float32), dones=np.array(t["dones"], bool))
                for f, t in zip(frames, traces)]

    @torch.inference_mode()
    def _play(self, params, seeds, settings: EvalSettings, record: bool, trace: bool):
        seeds = [int(s) for s in seeds]
        n = len(seeds)
        envs = self.envs(n, settings)
        spec = self.spec
        w, b = spec.unflatten(params)
        w, b = w.expand(n, -1, -1).contiguous(), b.expand(n, -1).contiguous()
        keys = episode_keys(seeds)
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)])
        h, c = self.memory.initial_state(n)
        weights = self.memory.step_weights()
        restart = torch.ones(n)
        idx = np.arange(n)  # the games still running; row j of the batch is game idx[j]
        scores, lengths = np.zeros(n), np.zeros(n, np.int64)
        frames = [[o.copy()] for o in obs] if record else None  # rows of obs are overwritten below
        traces = [dict(actions=[], rewards=[], dones=[]) for _ in seeds] if trace else None
        patience, opening = int(settings.early_stop), OPENING_FRAMES[self.game]
        losing = np.zeros(n, np.int64)  # frames in a row with negative reward, after the opening
        for t in range(settings.max_len):
            mu, logvar = self.vision.encode(to_tensor(obs[idx]))
            z = mu + torch.exp(0.5 * logvar) * normal(keys, t, ENCODE_Z, mu.shape[1])
            action = controller_to_action(self.game, spec.act(w, b, spec.features(z, h, c)))
            _, h, c = self.memory.step(z, action, restart, h, c, weights, head=False)  # C needs h, c only
            restart = torch.zeros(len(idx))
            action_np = action.numpy()
            running = np.ones(len(idx), bool)
            for j, i in enumerate(idx):
                o, r, terminated, truncated, _ = envs[i].step(action_np[j])
                obs[i] = o
                scores[i] += r
                lengths[i] += 1
                if record:
                    frames[i].append(o)
                if trace:
                    traces[i]["actions"].append(action_np[j].copy())
                    traces[i]["rewards"].append(r)
                    traces[i]["dones"].append(terminated)
                if patience and t >= opening:
                    losing[i] = losing[i] + 1 if r < 0 else 0
                    truncated = truncated or losing[i] >= patience  # this episode is not worth more frames
                if terminated or truncated:
                    running[j] = False
            if not running.all():
                if not running.any():
                    break
                keep = torch.as_tensor(np.flatnonzero(running))
                w, b, h, c, keys, restart = (x[keep] for x in (w, b, h, c, keys, restart))
                idx = idx[running]
        return scores, lengths, frames, traces


def run_jobs(agent: Agent, settings: EvalSettings, jobs) -> list[np.ndarray]:
    """Score ``jobs`` [(params, seeds), ...] -> [scores array per job]. The heart of every evaluator."""
    if not jobs:
        return []
    if settings.mode == "dream":
        if agent.pool_mu is None:
            raise ValueError("dream needs encoded first frames (series/); run `wm memory` first")
        counts = [len(seeds) for _, seeds in jobs]
        params = np.concatenate([np.repeat(np.asarray(p, np.float32)[None], len(s), 0) for p, s in jobs])
        seeds = np.concatenate([np.asarray(s, np.int64) for _, s in jobs])
        scores, _ = dream_rollouts(agent.memory, agent.spec, params, seeds, agent.pool_mu, agent.pool_logvar,
                                   settings.temperature, settings.max_len, settings.done_threshold,
                                   settings.initial_z_noise)
        return np.split(scores, np.cumsum(counts)[:-1])
    if settings.mode != "real":
        raise ValueError(f"unknown evaluation mode {settings.mode!r}; valid: real, dream")
    results = []
    for params, seeds in jobs:
        parts = [agent.play(params, seeds[i : i + REAL_ENVS_PER_BATCH], settings)[0]
                 for i in range(0, len(seeds), REAL_ENVS_PER_BATCH)]
        results.append(np.concatenate(parts))
    return results


class Evaluator:
    """Scores a list of jobs: ``evaluate(settings, jobs) -> [scores per job]``; subclasses decide where the work
    runs (:mod:`wmlib.evaluators` lists them)."""

    def evaluate(self, settings: EvalSettings, jobs) -> list[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcessEvaluator(Evaluator):
    """Everything in this process: the batched dream puts ALL jobs in one batch."""

    def __init__(self, agent: Agent):
        self.agent = agent

    def evaluate(self, settings, jobs):
        return run_jobs(self.agent, settings, jobs)

    def close(self):
        self.agent.close()


def split_evenly(items: list, parts: int) -> list[list]:
    """Contiguous, nearly equal slices (order kept)."""
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def plan_tasks(settings: EvalSettings, jobs, batches: int) -> list[list[tuple[int, int, int]]]:
    """How a backend cuts jobs into tasks: lists of pieces (job index, first seed, end seed), in job and seed order.

    Real game: one piece per task, a chunk of at most REAL_ENVS_PER_BATCH seeds of one job (the chunks
    :func:`run_jobs` plays in lockstep, so scores are identical). Dream: all episodes split into ``batches``
    contiguous groups, each one batched dream.
    """
    if settings.mode != "dream":
        return [[(j, a, min(a + REAL_ENVS_PER_BATCH, len(seeds)))]
                for j, (_, seeds) in enumerate(jobs) for a in range(0, len(seeds), REAL_ENVS_PER_BATCH)]
    episodes = [(j, k) for j, (_, seeds) in enumerate(jobs) for k in range(len(seeds))]
    tasks = []
    for group in split_evenly(episodes, max(1, int(batches))):
        pieces = []
        for j, k in group:
            if pieces and pieces[-1][0] == j:
                pieces[-1] = (j, pieces[-1][1], k + 1)
            else:
                pieces.append((j, k, k + 1))
        tasks.append(pieces)
    return tasks


def task_jobs(jobs, pieces):
    """The jobs one task of :func:`plan_tasks` scores: each piece's parameters and its slice of seeds."""
    return [(jobs[j][0], list(jobs[j][1][a:b])) for j, a, b in pieces]


def assemble_tasks(jobs, tasks, results) -> list[np.ndarray]:
    """The tasks' results put back together: one scores array per job, in order."""
    parts: list[list[np.ndarray]] = [[] for _ in jobs]
    for pieces, scores in zip(tasks, results):
        for (j, _, _), s in zip(pieces, scores):
            parts[j].append(np.asarray(s))
    return [np.concatenate(p) if p else np.zeros(0) for p in parts]


__all__ = ["REAL_ENVS_PER_BATCH", "Agent", "EvalSettings", "Evaluator", "InProcessEvaluator", "run_jobs",
           "split_evenly", "plan_tasks", "task_jobs", "assemble_tasks"]
