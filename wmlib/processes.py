"""Scoring on local worker processes: :class:`ProcessPoolEvaluator`.

Each worker process loads V and M from the run directory once, when it starts, and runs torch on one thread (two
processes on two cores, no oversubscription). Real-game jobs go one by one (a candidate's trials stay together);
dream jobs go as one group per worker, each a batched dream. A worker exits (with the games it started) as soon as
the process that started it is gone, killed or not (:func:`wmlib.rollouts.exit_with_parent`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from .agent import Agent, Evaluator, assemble_tasks, plan_tasks, run_jobs, split_evenly, task_jobs
from .rollouts import exit_with_parent

_WORKER_AGENT: Agent | None = None


def _init_worker(data_dir: str, game: str, parent: int):
    global _WORKER_AGENT
    exit_with_parent(parent)
    torch.set_num_threads(1)  # one thread per worker process: no oversubscription
    _WORKER_AGENT = Agent.from_run(data_dir, game)


def _worker_run(args):
    settings, jobs = args
    return run_jobs(_WORKER_AGENT, settings, jobs)


class ProcessPoolEvaluator(Evaluator):
    """Jobs spread over ``workers`` local processes; each loads V and M once, when it starts.

    Real-game jobs go in chunks of at most REAL_ENVS_PER_BATCH episodes (the chunks :func:`run_jobs` plays in
    lockstep, so the scores are the same as in-process); dream jobs go as ``workers`` groups of candidates, each a
    batched dream. A worker that dies breaks the pool (it never hangs): the pool is started again and the
    generation's jobs are retried, up to ``retries`` times.
    """

    def __init__(self, data_dir, game: str, workers: int = 2, retries: int = 2):
        self.workers, self.retries = max(1, int(workers)), retries
        self.data_dir, self.game = str(Path(data_dir)), game
        Agent.from_run(data_dir, game, with_pool=False).close()  # a wrong run or game is named here, not in a worker
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(self.data_dir, self.game, os.getpid()))

    def evaluate(self, settings, jobs):
        jobs = list(jobs)
        if settings.mode == "dream":  # one batched dream per worker
            tasks = [[(j, 0, len(jobs[j][1])) for j in group] for group in split_evenly(list(range(len(jobs))),
                                                                                      self.workers)]
        else:  # chunks of a job's episodes: the CMA-ES mean's 1024 evaluation episodes keep every worker busy
            tasks = plan_tasks(settings, jobs, self.workers)
        payloads = [(settings, task_jobs(jobs, pieces)) for pieces in tasks]
        for attempt in range(self.retries + 1):
            try:
                return assemble_tasks(jobs, tasks, list(self.pool.map(_worker_run, payloads)))
            except BrokenProcessPool:
                self.pool.shutdown(wait=False, cancel_futures=True)
                if attempt == self.retries:
                    raise RuntimeError(f"evaluation worker processes died {attempt + 1} times; giving up") from None
                self.pool = self._start()

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
