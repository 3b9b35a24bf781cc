"""Jobs, how to play them, and how every evaluator cuts them into tasks and puts the scores back together.

A *job* is one controller (a flat parameter vector) and the seeds of the episodes to play with it; its result is one
score per seed (a candidate's fitness is their mean). :class:`EvalSettings` says how the episodes are played (real
game or dream, how long, at which temperature).

Every evaluator scores a list of jobs the same way (:meth:`Evaluator.evaluate`): :func:`plan_tasks` cuts the jobs
into tasks, the evaluator runs the tasks where it runs them (this process, local worker processes, a Dask cluster:
:mod:`wmlib.evaluators` lists them), and :func:`assemble_tasks` puts the tasks' scores back together, one array per
job. A task is a list of pieces (job, first seed, end seed); :func:`task_jobs` makes the jobs that one task plays.

Real game: a task is a chunk of at most :data:`REAL_ENVS_PER_BATCH` episodes of one job, the games one process
steps in lockstep, so a real-game generation gives identical scores whichever evaluator plays it. Dream: the
episodes of all jobs are split into the evaluator's ``batches`` contiguous groups, one batched dream each; batched
the same way, the scores are identical too (otherwise they agree up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config

REAL_ENVS_PER_BATCH = 16  # real games stepped in lockstep by one process (their V/M/C steps are batched)
MODES = ("real", "dream")


def episode_cap(cfg: Config, in_dream: bool) -> int:
    """The longest episode ``cfg`` allows: cfg.dream_max_len steps in the dream, cfg.max_steps in the real game."""
    return cfg.dream_max_len if in_dream else cfg.max_steps


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
    lengths: bool = False
    """Real game: each job's result holds every episode's score and length (a record array with the fields of
    :data:`SCORE_AND_LENGTH`, as ``wm test`` writes them), not its scores alone."""

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        mode: str | None = None,
        max_len: int | None = None,
        temperature: float | None = None,
        training: bool = False,
    ) -> EvalSettings:
        """The settings ``cfg`` asks for: in the dream when ``mode`` is 'dream' (default: cfg.in_dream), up to
        :func:`episode_cap` steps unless ``max_len`` says otherwise, at cfg.temperature unless ``temperature`` says
        otherwise. Only ``training`` episodes stop early (cfg.early_stop): everything that reports a score plays
        whole episodes."""
        mode = mode or ("dream" if cfg.in_dream else "real")
        check_mode(mode)
        if max_len is None:
            max_len = episode_cap(cfg, mode == "dream")
        return cls(
            mode=mode,
            max_len=int(max_len),
            temperature=cfg.temperature if temperature is None else float(temperature),
            done_threshold=cfg.done_threshold,
            initial_z_noise=cfg.initial_z_noise,
            renderer=cfg.renderer,
            early_stop=cfg.early_stop if training and mode == "real" else 0,
        )


SCORE_AND_LENGTH = np.dtype([("score", np.float64), ("length", np.int64)])
"""One real episode's result when :attr:`EvalSettings.lengths` asks for lengths too."""


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; valid: {', '.join(MODES)}")


def split_evenly(items: list, parts: int) -> list[list]:
    """Contiguous, nearly equal slices (order kept)."""
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def plan_tasks(settings: EvalSettings, jobs, batches: int) -> list[list[tuple[int, int, int]]]:
    """How an evaluator cuts jobs into tasks: lists of pieces (job index, first seed, end seed), in job and seed
    order.

    Real game: one piece per task, a chunk of at most REAL_ENVS_PER_BATCH seeds of one job (the chunks
    :func:`wmlib.agent.run_jobs` plays in lockstep, so scores are identical). Dream: all episodes split into
    ``batches`` contiguous groups, each one batched dream.
    """
    if settings.mode != "dream":
        return [
            [(j, a, min(a + REAL_ENVS_PER_BATCH, len(seeds)))]
            for j, (_, seeds) in enumerate(jobs)
            for a in range(0, len(seeds), REAL_ENVS_PER_BATCH)
        ]
    episodes = [(j, k) for j, (_, seeds) in enumerate(jobs) for k in range(len(seeds))]
    return [_pieces(group) for group in split_evenly(episodes, max(1, int(batches)))]


def _pieces(group: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Consecutive episodes (job, seed index) of a group as pieces (job, first seed, end seed)."""
    pieces: list[tuple[int, int, int]] = []
    for j, k in group:
        if pieces and pieces[-1][0] == j:
            pieces[-1] = (j, pieces[-1][1], k + 1)
        else:
            pieces.append((j, k, k + 1))
    return pieces


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


class Evaluator:
    """Scores a list of jobs: ``evaluate(settings, jobs) -> [scores per job]``.

    :meth:`evaluate` plans the tasks (:func:`plan_tasks`, with this evaluator's ``batches`` for the dream), hands
    them to :meth:`run_tasks` and assembles the scores; a subclass says where the tasks run by writing
    :meth:`run_tasks` (:mod:`wmlib.evaluators` lists them). ``agent`` is the :class:`wmlib.agent.Agent` whose V and
    M the evaluator plays with, loaded once by whoever made it.
    """

    batches: int = 1
    """Dream: how many batched dreams a list of jobs is cut into."""
    agent = None

    def evaluate(self, settings: EvalSettings, jobs) -> list[np.ndarray]:
        jobs = list(jobs)
        if not jobs:
            return []
        tasks = plan_tasks(settings, jobs, self.batches)
        results = self.run_tasks(settings, [task_jobs(jobs, pieces) for pieces in tasks])
        return assemble_tasks(jobs, tasks, results)

    def run_tasks(self, settings: EvalSettings, tasks: list[list]) -> list[list[np.ndarray]]:
        """Score each task (a list of jobs): its scores per job, in the tasks' order."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = [
    "REAL_ENVS_PER_BATCH",
    "SCORE_AND_LENGTH",
    "EvalSettings",
    "Evaluator",
    "assemble_tasks",
    "episode_cap",
    "plan_tasks",
    "split_evenly",
    "task_jobs",
]
