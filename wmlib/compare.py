"""Choose between controllers on fresh real episodes, so that the test episodes stay a test.

    wm compare --data_dir RUN CONTROLLER [CONTROLLER ...] [--episodes 400] [--first 0]

Each CONTROLLER is a controller checkpoint (``controller.pt``), which drives RUN's V and M, or a run directory (a
pretrained one too), whose chosen controller drives that run's own V and M: so agents with different world models
(Doom's rounds of iterative training, a rerun) can be compared. All of them play the same episodes in the real
game, whole episodes, on tracks (or Doom seeds) of their own purpose (VALIDATE): never the ones `wm test` plays,
nor any training or evaluation episode. Because the
episodes are shared, the differences are paired: the table gives each controller's mean ± std and its mean
difference from the first one with that difference's standard error. The result is written, atomically, to
``RUN/compare.json``.

The fresh episodes are numbered, and a comparison plays numbers ``first`` to ``first + episodes - 1``: a second look
(``--first 400`` after a first comparison of 400) plays episodes the first one did not, and since every episode is
seeded, the two results can be pooled into one paired comparison as if it had been run at once. A second look is
written to ``RUN/compare_first{first}.json``, beside the first look's file, which it leaves whole.

Picking the agent to ship by its `wm test` score would make that score optimistic; pick it here and test it once.

``--world_models`` compares world models instead: each named run's V loss and M's prediction of the next z on the
same fresh random-policy episodes (:mod:`wmlib.worldmodels`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import rundir
from .agent import Agent, EvalSettings
from .controller import load_controller, played_generation
from .evaluators import add_flags, choose, where
from .io import atomic_write_text
from .seeding import VALIDATE, episode_seed
from .settings import add_setting
from .worldmodels import compare_world_models, print_table

RESULT = rundir.COMPARE


def result_path(data_dir, first: int = 0) -> Path:
    """Where a comparison starting at fresh episode ``first`` is written."""
    return rundir.compare_path(data_dir, first)


def validation_seeds(run_seed: int, n: int, first: int = 0) -> list[int]:
    """The seeds of the fresh episodes ``first`` to ``first + n - 1`` for comparing controllers (purpose VALIDATE)."""
    return [episode_seed(run_seed, 0, 0, i, VALIDATE) for i in range(first, first + n)]


def paired_difference(scores, base) -> tuple[float, float]:
    """Mean of ``scores - base`` (the same episodes) and its standard error (0 when there is one episode)."""
    d = np.asarray(scores, np.float64) - np.asarray(base, np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(d.mean()), se


def models_dir(controller, data_dir) -> Path:
    """Whose V and M ``controller`` drives: a run directory's own, a checkpoint file's ``data_dir``'s."""
    c = Path(controller)
    return c if c.is_dir() and rundir.path(c, rundir.CONFIG).exists() else Path(data_dir)


def compare(
    data_dir,
    controllers,
    episodes: int = 400,
    max_steps: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    first: int = 0,
    where: dict | None = None,
) -> dict:
    """Score each controller on the same ``episodes`` fresh real episodes (see the module's docstring), where
    ``where`` says (:func:`wmlib.evaluators.choose`'s kind, scheduler, tls; default: local processes)."""
    data_dir = Path(data_dir)
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1 (got {episodes})")
    if first < 0:
        raise ValueError(f"--first must be 0 or more (got {first})")
    if not controllers:
        raise ValueError("name at least one controller (a controller.pt or a run directory)")
    cfg = rundir.load_config(data_dir)
    agents: dict[Path, Agent] = {}
    try:
        loaded = [load_for(c, data_dir, cfg, agents) for c in controllers]
        settings = EvalSettings.from_config(cfg, mode="real", max_len=max_steps)
        seeds = validation_seeds(cfg.seed, episodes, first)
        rows = [
            score_one(cfg, params, ckpt, models, agents[models], settings, seeds, workers, name, progress, where)
            for (params, ckpt, models), name in zip(loaded, controllers)
        ]
    finally:
        for agent in agents.values():
            agent.close()
    for r in rows:
        r["difference"], r["difference_se"] = paired_difference(r["scores"], rows[0]["scores"])
    result = dict(
        game=cfg.game,
        run=str(data_dir),
        episodes=episodes,
        first=first,
        max_steps=settings.max_len,
        purpose="VALIDATE",
        rows=rows,
    )
    atomic_write_text(result_path(data_dir, first), json.dumps(result, indent=2))
    return result


def load_for(controller, data_dir: Path, cfg, agents: dict) -> tuple:
    """(parameters, checkpoint, models dir) of ``controller``, checked against the V and M it drives, which are
    loaded into ``agents`` (keyed by their run directory) once for all the controllers that drive them."""
    models = models_dir(controller, data_dir)
    if models not in agents:
        other = rundir.load_config(models)
        if other.game != cfg.game:
            raise ValueError(f"{controller}: a run of {other.game}, but the run {data_dir} plays {cfg.game}")
        agents[models] = Agent.from_run(models, cfg.game, with_pool=False)
    params, ckpt = load_controller(controller)
    spec = agents[models].spec.to_dict()
    if ckpt.get("spec") != spec:
        raise ValueError(
            f"{ckpt['path']}: a controller for {ckpt.get('spec')}, but the run {models} has V and M for {spec}"
        )
    return params, ckpt, models


def score_one(
    cfg, params, ckpt, models: Path, agent: Agent, settings, seeds, workers, name, progress, where: dict | None = None
) -> dict:
    """One controller's row: its scores on ``seeds``, by the evaluator :func:`wmlib.evaluators.choose` picks for
    the real game (or ``where`` names: its kind, scheduler, tls)."""
    t0 = time.time()
    with choose(cfg, mode="real", agent=agent, workers=workers, **(where or {})) as evaluator:
        scores = evaluator.evaluate(settings, [(params, seeds)])[0]
    row = dict(
        controller=str(ckpt["path"]),
        models=str(models),
        generation=played_generation(ckpt),
        mean=float(scores.mean()),
        std=float(scores.std()),
        scores=[float(s) for s in scores],
        seconds=round(time.time() - t0, 1),
    )
    if progress:
        print(f"  {name}: {scores.mean():.1f} +- {scores.std():.1f} ({time.time() - t0:.0f} s)", flush=True)
    return row


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``wm compare``."""
    p.add_argument(
        "--data_dir",
        required=True,
        help="the run whose V and M checkpoint files drive (and where the result is written)",
    )
    p.add_argument(
        "controllers",
        nargs="+",
        help="controller checkpoints (controller.pt, with --data_dir's V and M) or run directories (with their own; "
        "with --world_models, run directories only)",
    )
    p.add_argument(
        "--world_models",
        action="store_true",
        help="compare the runs' V and M instead: V's loss and M's NLL of the next z on the same fresh "
        "random-policy episodes (default --episodes 20)",
    )
    p.add_argument(
        "--episodes", type=int, help="real episodes, the same for every controller (default 400; --world_models: 20)"
    )
    p.add_argument(
        "--first",
        type=int,
        default=0,
        help="the number of the first fresh episode (e.g. 400 for a "
        "second look after a comparison of 400: other episodes, which can be pooled with the first's)",
    )
    add_setting(p, "max_steps", help="longest episode (default: the run's)")
    add_setting(p, "workers", help="worker processes (default: the run's)")
    add_flags(p)
    p.add_argument("--quiet", action="store_true", help="print only the table")


def run(args) -> int:
    """``wm compare``: score the controllers (or, with --world_models, the world models) and print the table. Errors
    propagate to the command line, which names them."""
    if args.world_models:
        episodes = 20 if args.episodes is None else args.episodes
        result = compare_world_models(args.data_dir, args.controllers, episodes, args.first, not args.quiet)
        print_table(result, rundir.world_models_path(args.data_dir, args.first))
        return 0
    result = compare(
        args.data_dir,
        args.controllers,
        400 if args.episodes is None else args.episodes,
        args.max_steps,
        args.workers,
        progress=not args.quiet,
        first=args.first,
        where=where(args),
    )
    span = f"numbers {args.first}-{args.first + result['episodes'] - 1}, " if args.first else ""
    print(
        f"{result['episodes']} fresh real episodes of {result['game']} ({span}up to {result['max_steps']} steps), "
        "the same for every controller"
    )
    print(f"{'controller':>40s} {'generation':>10s} {'mean +- std':>16s} {'minus the first':>20s}")
    for r in result["rows"]:
        name = r["controller"] if len(r["controller"]) <= 40 else "..." + r["controller"][-37:]
        print(
            f"{name:>40s} {r['generation']:10d} {r['mean']:8.1f} +- {r['std']:5.1f} "
            f"{r['difference']:+10.1f} +- {r['difference_se']:4.1f}"
        )
    print(f"(written to {result_path(args.data_dir, args.first)})")
    return 0


if __name__ == "__main__":  # `python -m wmlib.compare ...` is `wm compare ...`: the command line sits on top of the
    # library's layers, so it is looked up by name when this module runs as a script, never imported by it
    sys.exit(importlib.import_module("wmlib.cli").main(["compare", *sys.argv[1:]]))
