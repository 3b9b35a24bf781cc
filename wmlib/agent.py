"""What scores a controller: the agent (V + M + the controller's shape), and :func:`run_jobs`, which plays jobs with it.

A job is one controller and the seeds of its episodes, played as :class:`EvalSettings` say (:mod:`wmlib.jobs`, where
every evaluator also cuts jobs into tasks). :func:`run_jobs` plays a list of jobs with an :class:`Agent`, in the real
game or in the dream; every evaluator (:mod:`wmlib.evaluators`: in this process, local worker processes, a Dask
cluster) calls it wherever the work runs, with an agent whose V and M were loaded once, by the command.

Every episode's seed comes from :func:`wmlib.seeding.episode_seed`, and real-game episodes are independent of each
other, so a real-game generation gives identical scores whichever evaluator runs it. A dream batch gives identical
scores too, as long as the candidates are batched the same way (otherwise they agree up to float rounding).
"""

from __future__ import annotations

import numpy as np
import torch

from . import devices, episodes, rundir
from .controller import ControllerSpec
from .dream import dream_rollouts
from .games import OPENING_FRAMES, controller_to_action, make_env
from .jobs import (
    REAL_ENVS_PER_BATCH,
    SCORE_AND_LENGTH,
    EvalSettings,
    Evaluator,
    assemble_tasks,
    check_mode,
    plan_tasks,
    split_evenly,
    task_jobs,
)
from .memory import Memory, check_compatible, load_memory
from .seeding import ENCODE_Z, episode_keys, normal
from .vision import Vision, load_vision, to_tensor


class Agent:
    """V + M (+ the dream's pool of first frames) and the controller spec: what a worker needs to score jobs."""

    def __init__(self, game: str, vision, memory, pool_mu=None, pool_logvar=None, z_only: bool = False):
        self.game, self.vision, self.memory = game, vision, memory
        self.device = torch.device("cpu")
        """Where V and M compute, in the real game and in the batched dream (``--device``;
        :func:`wmlib.devices.resolve`); the games and the random numbers stay on the CPU."""
        self.device_flag = "cpu"
        """The ``--device`` value :attr:`device` was resolved from. A copy of this agent made elsewhere
        (:meth:`state`: an evaluator's worker process, a Dask worker) resolves it again on its own machine, so
        ``auto`` puts each worker on its own GPU, or its CPU where it has none."""
        self.spec = ControllerSpec(game, memory.z_dim, memory.hidden_dim, z_only=bool(z_only))
        self.pool_mu, self.pool_logvar = pool_mu, pool_logvar
        self.memory_record: dict = {}
        """M's checkpoint record without its weights (arch, step, config, path), when loaded from a run."""
        self._envs = []

    @classmethod
    def from_run(cls, data_dir, game: str | None = None, with_pool: bool = True) -> Agent:
        """V and M of the run ``data_dir`` (checked to be of one world model, of ``game`` when given), with the
        dream's first frames unless ``with_pool`` is False, and the controller shape its config.json asks for."""
        vision, vckpt = load_vision(data_dir)
        memory, mckpt = load_memory(data_dir)
        check_compatible(vckpt, mckpt)
        run_game = mckpt["config"]["game"]
        if game is not None and game != run_game:
            raise ValueError(f"{mckpt['path']}: trained on {run_game}, but --game is {game}")
        pool = episodes.first_frame_pool(data_dir) if with_pool and run_game == "DoomTakeCover" else None
        has_config = rundir.path(data_dir, rundir.CONFIG).exists()  # a run's C may read z alone (--z_only)
        z_only = rundir.load_config(data_dir).z_only if has_config else False
        agent = cls(run_game, vision, memory, *(pool or (None, None)), z_only=z_only)
        agent.memory_record = {k: v for k, v in mckpt.items() if k not in ("model", "optimizer")}
        return agent

    def on(self, device) -> Agent:
        """This agent, computing on ``device`` (a ``--device`` value or a torch.device; None: the CPU)."""
        self.device = devices.resolve(device)
        self.device_flag = "cpu" if device is None else str(device).strip().lower()
        return self

    def with_z_only(self, z_only: bool) -> Agent:
        """This agent's V, M and first frames (shared, not copied), with a controller that reads z alone or not."""
        if bool(z_only) == self.spec.z_only:
            return self
        other = Agent(self.game, self.vision, self.memory, self.pool_mu, self.pool_logvar, z_only=z_only)
        other.memory_record, other.device, other.device_flag = self.memory_record, self.device, self.device_flag
        return other

    def state(self) -> dict:
        """Everything needed to rebuild this agent elsewhere, as plain values and numpy arrays (picklable)."""
        arrays = lambda model: {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}  # noqa: E731
        return dict(
            game=self.game,
            vision_z_dim=self.vision.z_dim,
            vision=arrays(self.vision),
            memory_arch=self.memory.arch(),
            memory=arrays(self.memory),
            pool_mu=self.pool_mu,
            pool_logvar=self.pool_logvar,
            z_only=self.spec.z_only,
            device=self.device_flag,
        )

    @classmethod
    def from_state(cls, state: dict) -> Agent:
        """The agent that :meth:`state` describes (in eval mode, with no game environment open yet), computing on
        its ``--device`` as this machine resolves it (a device this machine lacks: a ValueError naming the flag)."""
        tensors = lambda arrays: {k: torch.tensor(np.asarray(v)) for k, v in arrays.items()}  # noqa: E731
        vision = Vision(int(state["vision_z_dim"]))
        vision.load_state_dict(tensors(state["vision"]))
        memory = Memory(**state["memory_arch"])
        memory.load_state_dict(tensors(state["memory"]))
        agent = cls(
            state["game"], vision.eval(), memory.eval(), state["pool_mu"], state["pool_logvar"], z_only=state["z_only"]
        )
        return agent.on(state.get("device", "cpu"))

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
        return [
            dict(
                frames=np.stack(f[:-1]),
                actions=np.stack(t["actions"]).astype(np.float32),
                rewards=np.array(t["rewards"], np.float32),
                dones=np.array(t["dones"], bool),
            )
            for f, t in zip(frames, traces)
        ]

    @torch.inference_mode()
    def _play(self, params, seeds, settings: EvalSettings, record: bool, trace: bool):
        seeds = [int(s) for s in seeds]
        n = len(seeds)
        envs = self.envs(n, settings)
        spec, dev = self.spec, self.device  # (on the CPU, every .to(dev) below is the tensor itself)
        vision, memory = devices.on(self.vision, dev), devices.on(self.memory, dev)
        w, b = spec.unflatten(params)
        w, b = w.expand(n, -1, -1).contiguous().to(dev), b.expand(n, -1).contiguous().to(dev)
        keys = episode_keys(seeds)  # on the CPU, as the random numbers they draw
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)])
        h, c = memory.initial_state(n)
        weights = memory.step_weights()
        restart = torch.ones(n, device=dev)
        idx = np.arange(n)  # the games still running; row j of the batch is game idx[j]
        scores, lengths = np.zeros(n), np.zeros(n, np.int64)
        frames = [[o.copy()] for o in obs] if record else None  # rows of obs are overwritten below
        traces = [dict(actions=[], rewards=[], dones=[]) for _ in seeds] if trace else None
        patience, opening = int(settings.early_stop), OPENING_FRAMES[self.game]
        losing = np.zeros(n, np.int64)  # frames in a row with negative reward, after the opening
        for t in range(settings.max_len):
            mu, logvar = vision.encode(to_tensor(obs[idx]).to(dev))
            z = mu + torch.exp(0.5 * logvar) * normal(keys, t, ENCODE_Z, mu.shape[1]).to(dev)
            action = controller_to_action(self.game, spec.act(w, b, spec.features(z, h, c)))
            _, h, c = memory.step(z, action, restart, h, c, weights, head=False)  # C needs h, c only
            restart = torch.zeros(len(idx), device=dev)
            action_np = action.cpu().numpy()
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
                keys = keys[keep]
                w, b, h, c, restart = (x[keep.to(dev)] for x in (w, b, h, c, restart))
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
        scores, _ = dream_rollouts(
            agent.memory,
            agent.spec,
            params,
            seeds,
            agent.pool_mu,
            agent.pool_logvar,
            settings.temperature,
            settings.max_len,
            settings.done_threshold,
            settings.initial_z_noise,
            device=agent.device,
        )
        return np.split(scores, np.cumsum(counts)[:-1])
    check_mode(settings.mode)
    results = []
    for params, seeds in jobs:
        parts = []
        for i in range(0, len(seeds), REAL_ENVS_PER_BATCH):
            scores, lengths, _ = agent.play(params, seeds[i : i + REAL_ENVS_PER_BATCH], settings)
            if settings.lengths:
                scores = np.rec.fromarrays([scores, lengths], dtype=SCORE_AND_LENGTH).view(np.ndarray)
            parts.append(scores)
        results.append(np.concatenate(parts))
    return results


class InProcessEvaluator(Evaluator):
    """Everything in this process: the batched dream puts ALL jobs in one batch."""

    batches = 1

    def __init__(self, agent: Agent):
        self.agent = agent

    def run_tasks(self, settings, tasks):
        return [run_jobs(self.agent, settings, jobs) for jobs in tasks]

    def close(self):
        self.agent.close()


# EvalSettings and the planning of jobs live in wmlib.jobs; these names stay importable from here
__all__ = [
    "REAL_ENVS_PER_BATCH",
    "Agent",
    "EvalSettings",
    "Evaluator",
    "InProcessEvaluator",
    "run_jobs",
    "split_evenly",
    "plan_tasks",
    "task_jobs",
    "assemble_tasks",
]
