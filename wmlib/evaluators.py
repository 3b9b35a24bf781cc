"""Where a population is scored: one interface (:class:`wmlib.agent.Evaluator`), three places to run it.

| kind        | class                                        | where the jobs run                                   |
|-------------|----------------------------------------------|------------------------------------------------------|
| inprocess   | :class:`wmlib.agent.InProcessEvaluator`      | this process (the batched dream: all jobs one batch) |
| processes   | :class:`wmlib.processes.ProcessPoolEvaluator`| local worker processes, one torch thread each        |
| dask        | :class:`wmlib.distributed.DaskEvaluator`     | the workers of a Dask cluster                        |

Defaults: the batched dream in-process, the real game in local worker processes. Every kind gives a real-game
generation the same fitness values (:mod:`wmlib.agent`).
"""

from __future__ import annotations

from .agent import Agent, EvalSettings, Evaluator, InProcessEvaluator
from .processes import ProcessPoolEvaluator


def make_evaluator(kind: str, data_dir, game: str, workers: int = 2, scheduler: str | None = None,
                   tls: bool | None = None) -> Evaluator:
    """'inprocess', 'processes' or 'dask' (names listed in errors).

    'dask' attaches to the cluster at ``scheduler`` or, without one, starts a local cluster of ``workers`` processes
    on 127.0.0.1, encrypted and authenticated with TLS and a temporary certificate unless ``tls=False`` (``None``:
    the default, on); see :mod:`wmlib.distributed`.
    """
    if kind == "inprocess":
        return InProcessEvaluator(Agent.from_run(data_dir, game))
    if kind == "processes":
        return ProcessPoolEvaluator(data_dir, game, workers)
    if kind == "dask":
        from .distributed import DaskEvaluator  # imported here only: plain use never loads Dask (a heavy import)

        return DaskEvaluator(Agent.from_run(data_dir, game), scheduler=scheduler, workers=workers, tls=tls)
    raise ValueError(f"unknown evaluator {kind!r}; valid: inprocess, processes, dask")


def default_evaluator(settings: EvalSettings, data_dir, game: str, workers: int, agent: Agent | None = None):
    """The batched dream runs in-process; the real game uses local worker processes (when more than one)."""
    if settings.mode == "dream" or workers <= 1:
        return InProcessEvaluator(agent or Agent.from_run(data_dir, game))
    return make_evaluator("processes", data_dir, game, workers)


__all__ = ["make_evaluator", "default_evaluator"]
