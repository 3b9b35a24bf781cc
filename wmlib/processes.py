"""Scoring on local worker processes: :class:`ProcessPoolEvaluator`.

The command loads V and M once; each worker process rebuilds them from their weights (:meth:`Agent.state`, sent
once, when the worker starts), on the agent's ``--device`` (:attr:`Agent.device_flag`), and runs torch on one thread
(two processes on two cores, no oversubscription). The
jobs are cut into tasks as every evaluator cuts them (:func:`wmlib.jobs.plan_tasks`): real-game chunks of at most
REAL_ENVS_PER_BATCH episodes of one candidate, or one batched dream per worker. A worker exits (with the games it
started) as soon as the process that started it is gone, killed or not (:func:`wmlib.rollouts.exit_with_parent`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from .agent import Agent, Evaluator, run_jobs
from .rollouts import exit_with_parent

_WORKER_AGENT: Agent | None = None


def _init_worker(states, parent: int):
    global _WORKER_AGENT
    exit_with_parent(parent)
    torch.set_num_threads(1)  # one thread per worker process: no oversubscription
    _WORKER_AGENT = Agent.from_state(states.get())


def _worker_run(args):
    settings, jobs = args
    return run_jobs(_WORKER_AGENT, settings, jobs)


class ProcessPoolEvaluator(Evaluator):
    """Tasks spread over ``workers`` local processes, each with its own copy of ``agent``.

    ``agent`` is an :class:`Agent` (its V, M and first frames go to every worker as weights, so nothing is read from
    disk again), or a run directory to load one from (of ``game`` when given). Real-game tasks are chunks of at most
    REAL_ENVS_PER_BATCH episodes (the chunks :func:`run_jobs` plays in lockstep, so the scores are the same as
    in-process, and the CMA-ES mean's many evaluation episodes keep every worker busy); a dream is cut into
    ``workers`` batched dreams. A worker that dies breaks the pool (it never hangs): the pool is started again and
    the tasks are retried, up to ``retries`` times.
    """

    def __init__(self, agent, game: str | None = None, workers: int = 2, retries: int = 2):
        self.agent = agent if isinstance(agent, Agent) else Agent.from_run(agent, game)
        if game is not None and self.agent.game != game:
            raise ValueError(f"this agent plays {self.agent.game}, not {game}")
        self.workers, self.retries = max(1, int(workers)), retries
        self.batches = self.workers
        self._state = self.agent.state()
        self._states = None
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        """A pool whose workers each take a copy of the agent's weights from a queue when they start.

        The weights (megabytes) do not go in the workers' start-up arguments: those are written to a starting
        worker by this process's own thread, which would wait forever on a worker killed before it read them. A
        queue's background thread writes them instead."""
        context = mp.get_context("spawn")
        if self._states is not None:
            self._states.close()
        self._states = context.Queue()
        self._states.cancel_join_thread()  # a copy that no worker read must not hold up this process's exit
        for _ in range(self.workers):
            self._states.put(self._state)
        return ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_worker, initargs=(self._states, os.getpid())
        )

    def run_tasks(self, settings, tasks):
        payloads = [(settings, jobs) for jobs in tasks]
        for attempt in range(self.retries + 1):
            try:
                return list(self.pool.map(_worker_run, payloads))
            except BrokenProcessPool:
                self.pool.shutdown(wait=False, cancel_futures=True)
                if attempt == self.retries:
                    raise RuntimeError(f"evaluation worker processes died {attempt + 1} times; giving up") from None
                self.pool = self._start()

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._states.close()
        self.agent.close()
