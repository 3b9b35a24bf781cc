"""Where a population is scored: one interface (:class:`wmlib.jobs.Evaluator`), three places to run it, and
:func:`choose`, the one place that picks among them.

| kind        | class                                        | where the jobs run                                   |
|-------------|----------------------------------------------|------------------------------------------------------|
| inprocess   | :class:`wmlib.agent.InProcessEvaluator`      | this process (the batched dream: all jobs one batch) |
| processes   | :class:`wmlib.processes.ProcessPoolEvaluator`| local worker processes, one torch thread each        |
| dask        | :class:`wmlib.distributed.DaskEvaluator`     | the workers of a Dask cluster                        |

Defaults: the batched dream in-process, the real game in local worker processes (with more than one worker); a
Dask scheduler or a TLS setting means Dask. Every kind cuts jobs into tasks the same way (:mod:`wmlib.jobs`) and
gives a real-game generation the same fitness values. All of them play with one :class:`wmlib.agent.Agent`, whose
V and M the command loaded once.
"""

from __future__ import annotations

import argparse

from .agent import Agent, InProcessEvaluator
from .config import Config
from .jobs import Evaluator, check_mode
from .processes import ProcessPoolEvaluator

KINDS = ("inprocess", "processes", "dask")


def named_kind(kind: str | None = None, scheduler: str | None = None, tls: bool | None = None) -> str | None:
    """The kind that ``--evaluator``, ``--scheduler`` and ``--tls`` name (None: none named). A scheduler or a TLS
    setting names Dask, and contradicts any other ``--evaluator``."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown evaluator {kind!r}; valid: {', '.join(KINDS)}")
    if scheduler or tls is not None:
        if kind not in (None, "dask"):
            raise ValueError(f"--scheduler and --tls go with --evaluator dask, not --evaluator {kind}")
        return "dask"
    return kind


def default_kind(mode: str, workers: int) -> str:
    """The batched dream runs in-process; the real game in local worker processes (when more than one)."""
    check_mode(mode)
    return "inprocess" if mode == "dream" or workers <= 1 else "processes"


def choose(
    cfg: Config,
    data_dir=None,
    kind: str | None = None,
    *,
    agent: Agent | None = None,
    mode: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    tls: bool | None = None,
    device=None,
) -> Evaluator:
    """The evaluator that scores ``cfg``'s candidates: the ``kind`` named (or that ``scheduler``/``tls`` name, see
    :func:`named_kind`), else the default for ``mode`` (default: the dream when cfg.in_dream) and ``workers``
    (default: cfg.workers).

    ``agent`` is the run's V and M, loaded once by the caller; without one it is loaded from ``data_dir`` (of
    cfg.game). 'dask' attaches to the cluster at ``scheduler`` or, without one, starts a local cluster of
    ``workers`` processes on 127.0.0.1, encrypted and authenticated with TLS and a temporary certificate unless
    ``tls=False`` (``None``: the default, on); see :mod:`wmlib.distributed`. ``device`` (a ``--device`` value):
    where this process dreams (:meth:`wmlib.agent.Agent.on`; None leaves the agent where it is, the CPU by default).
    """
    workers = cfg.workers if workers is None else int(workers)
    kind = named_kind(kind, scheduler, tls) or default_kind(mode or ("dream" if cfg.in_dream else "real"), workers)
    if agent is None:
        agent = Agent.from_run(data_dir, cfg.game)
    elif agent.game != cfg.game:
        raise ValueError(f"the agent plays {agent.game}, but this run is {cfg.game}")
    if device is not None:
        agent.on(device)
    return make_evaluator(kind, agent, workers, scheduler=scheduler, tls=tls)


def make_evaluator(
    kind: str, agent: Agent, workers: int = 2, scheduler: str | None = None, tls: bool | None = None
) -> Evaluator:
    """The evaluator of ``kind`` (one of :data:`KINDS`) for ``agent``: the building step of :func:`choose`."""
    if kind == "inprocess":
        return InProcessEvaluator(agent)
    if kind == "processes":
        return ProcessPoolEvaluator(agent, workers=workers)
    if kind == "dask":
        from .distributed import DaskEvaluator  # imported here only: plain use never loads Dask (a heavy import)

        return DaskEvaluator(agent, scheduler=scheduler, workers=workers, tls=tls)
    raise ValueError(f"unknown evaluator {kind!r}; valid: {', '.join(KINDS)}")


__all__ = ["KINDS", "choose", "default_kind", "make_evaluator", "named_kind"]


def add_flags(g) -> None:
    """``--evaluator``, ``--scheduler`` and ``--tls``: where a command plays its episodes (every command that plays
    many takes them; the same seeds give the same bytes wherever they are played)."""
    g.add_argument(
        "--evaluator",
        choices=KINDS,
        help="where episodes are played (default: the dream in this process; random rollouts and C's "
        "real-game candidates in --workers local processes; wm test, compare and study's real "
        "scores in this process; dask: a local Dask cluster of --workers processes on 127.0.0.1)",
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="play them on the Dask cluster at this scheduler (tcp://HOST:8786 or tls://...)",
    )
    g.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a local Dask cluster encrypts and authenticates every connection with a temporary "
        "certificate (default; --no-tls turns it off); for --scheduler tls://, certificates come "
        "from Dask's distributed.comm.tls configuration",
    )


def where(args) -> dict:
    """What :func:`add_flags`' flags say, as :func:`choose`'s keywords (kind, scheduler, tls); contradictory flags
    are named. An empty dict: none given."""
    scheduler, tls = getattr(args, "scheduler", None), getattr(args, "tls", None)
    kind = named_kind(getattr(args, "evaluator", None), scheduler, tls)
    return {} if kind is None else dict(kind=kind, scheduler=scheduler, tls=tls)
