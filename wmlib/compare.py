"""Choose between controllers on fresh real episodes, so that the test episodes stay a test.

    python -m wmlib.compare --data_dir RUN CONTROLLER [CONTROLLER ...] [--episodes 400] [--first 0]

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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import rundir
from .agent import Agent, EvalSettings
from .controller import load_controller
from .evaluators import default_evaluator
from .io import atomic_write_text
from .seeding import VALIDATE, episode_seed

RESULT = "compare.json"


def result_path(data_dir, first: int = 0) -> Path:
    """Where a comparison starting at fresh episode ``first`` is written."""
    return Path(data_dir) / (RESULT if first == 0 else f"compare_first{first}.json")


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
    return c if c.is_dir() and (c / rundir.CONFIG).exists() else Path(data_dir)


def compare(data_dir, controllers, episodes: int = 400, max_steps: int | None = None, workers: int | None = None,
            progress: bool = True, first: int = 0) -> dict:
    """Score each controller on the same ``episodes`` fresh real episodes (see the module's docstring)."""
    data_dir = Path(data_dir)
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1 (got {episodes})")
    if first < 0:
        raise ValueError(f"--first must be 0 or more (got {first})")
    if not controllers:
        raise ValueError("name at least one controller (a controller.pt or a run directory)")
    cfg = rundir.load_config(data_dir)
    loaded, specs = [], {}
    for c in controllers:
        models = models_dir(c, data_dir)
        if models not in specs:
            other = rundir.load_config(models)
            if other.game != cfg.game:
                raise ValueError(f"{c}: a run of {other.game}, but the run {data_dir} plays {cfg.game}")
            agent = Agent.from_run(models, cfg.game, with_pool=False)
            specs[models] = agent.spec.to_dict()
            agent.close()
        params, ckpt = load_controller(c)
        if ckpt.get("spec") != specs[models]:
            raise ValueError(f"{ckpt['path']}: a controller for {ckpt.get('spec')}, but the run {models} has V and M "
                             f"for {specs[models]}")
        loaded.append((params, ckpt, models))
    settings = EvalSettings.from_config(cfg, mode="real", max_len=max_steps)
    seeds = validation_seeds(cfg.seed, episodes, first)
    workers = cfg.workers if workers is None else workers
    rows = []
    for (params, ckpt, models), name in zip(loaded, controllers):
        t0 = time.time()
        agent = Agent.from_run(models, cfg.game, with_pool=False)
        evaluator = default_evaluator(settings, models, cfg.game, workers, agent)
        try:
            scores = evaluator.evaluate(settings, [(params, seeds)])[0]
        finally:
            evaluator.close()
            agent.close()
        rows.append(dict(controller=str(ckpt["path"]), models=str(models), generation=int(ckpt.get("generation", -1)),
                         mean=float(scores.mean()), std=float(scores.std()),
                         scores=[float(s) for s in scores], seconds=round(time.time() - t0, 1)))
        if progress:
            print(f"  {name}: {scores.mean():.1f} +- {scores.std():.1f} ({time.time() - t0:.0f} s)", flush=True)
    for r in rows:
        r["difference"], r["difference_se"] = paired_difference(r["scores"], rows[0]["scores"])
    result = dict(game=cfg.game, run=str(data_dir), episodes=episodes, first=first, max_steps=settings.max_len,
                  purpose="VALIDATE", rows=rows)
    atomic_write_text(result_path(data_dir, first), json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m wmlib.compare",
                                description="score controllers on the same fresh real episodes (not the test's)")
    p.add_argument("--data_dir", required=True, help="the run whose V and M checkpoint files drive (and where the "
                   "result is written)")
    p.add_argument("controllers", nargs="+", help="controller checkpoints (controller.pt, with --data_dir's V and M) "
                   "or run directories (with their own)")
    p.add_argument("--episodes", type=int, default=400, help="real episodes, the same for every controller")
    p.add_argument("--first", type=int, default=0, help="the number of the first fresh episode (e.g. 400 for a "
                   "second look after a comparison of 400: other episodes, which can be pooled with the first's)")
    p.add_argument("--max_steps", type=int, help="longest episode (default: the run's)")
    p.add_argument("--workers", type=int, help="worker processes (default: the run's)")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    args = p.parse_args(argv)
    try:
        result = compare(args.data_dir, args.controllers, args.episodes, args.max_steps, args.workers,
                         progress=not args.quiet, first=args.first)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    span = f"numbers {args.first}-{args.first + result['episodes'] - 1}, " if args.first else ""
    print(f"{result['episodes']} fresh real episodes of {result['game']} ({span}up to {result['max_steps']} steps), "
          "the same for every controller")
    print(f"{'controller':>40s} {'generation':>10s} {'mean +- std':>16s} {'minus the first':>20s}")
    for r in result["rows"]:
        name = r["controller"] if len(r["controller"]) <= 40 else "..." + r["controller"][-37:]
        print(f"{name:>40s} {r['generation']:10d} {r['mean']:8.1f} +- {r['std']:5.1f} "
              f"{r['difference']:+10.1f} +- {r['difference_se']:4.1f}")
    print(f"(written to {result_path(args.data_dir, args.first)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
