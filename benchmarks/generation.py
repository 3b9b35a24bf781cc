"""One CarRacing generation of real-game CMA-ES, the way `wm controller` scores it, in several configurations.

    python benchmarks/generation.py --run RUN_DIR  # the generation a real run plays next (its V, M, CMA-ES state)
    python benchmarks/generation.py --paper        # 64 candidates x 16 episodes of 1000 frames (the paper's size)
    python benchmarks/generation.py                # 16 x 4 x 300: the same code paths, in a few minutes
    python benchmarks/generation.py --quick        # 8 x 2 x 100

Without ``--run``, candidates are drawn like CMA-ES's first generation, N(0, 0.1^2), around a controller that drives
(gas on), for a smoke-scale CarRacing run's V and M (their speed does not depend on training; the sizes are the
paper's). With ``--run`` the candidates are the ones that run's CMA-ES asks for next (from ``es_state.npz``; the
run's files are only read) on the tracks it would give them, with its trained V and M: what a generation costs at
that point of training, where early stopping saves less as the cars learn to stay on the road.

The generation's jobs go to a ``ProcessPoolEvaluator`` with 2 worker processes (one torch thread each), as in
training. Configurations, timed one after another in each repeat so that the machine's load hits them alike:

* ``whole``: whole episodes (what a generation cost before the CarRacing recipe, and what the paper's did);
* ``early_stop``: training episodes ending after 100 frames in a row without reward (``--early_stop 100``).

Reports the median wall time of each and its speed-up over ``whole``. Results go to
``benchmarks/results/generation.json`` (``--out`` to change).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, Timer, arg_parser, machine, median, smoke_run, write_results  # first: wmlib

from wmlib import rundir
from wmlib.agent import Agent, EvalSettings
from wmlib.evolution import generation_jobs, load_state
from wmlib.processes import ProcessPoolEvaluator
from wmlib.seeding import TRAIN, episode_seed

VARIANTS = {"whole": dict(early_stop=0), "early_stop": dict(early_stop=100)}


def first_generation(agent: Agent, pop: int, trials: int) -> list:
    rng = np.random.default_rng(0)
    drive = np.zeros(agent.spec.n_params, np.float32)
    drive[-2] = 0.5  # the gas output's bias: the car moves, as a trained one does
    return [
        (
            drive + rng.normal(0, 0.1, agent.spec.n_params).astype(np.float32),
            [episode_seed(0, 0, i, t, TRAIN) for t in range(trials)],
        )
        for i in range(pop)
    ]


def next_generation(run: Path, agent: Agent) -> tuple[list, int, dict]:
    """The jobs the run's CMA-ES would play next, its generation number and the run's settings."""
    cfg = rundir.load_config(run)
    state = load_state(rundir.path(run, rundir.ES_STATE), cfg, agent.spec)
    np.random.set_state(state["numpy_rng"])  # pycma draws from numpy's global generator, as in training
    solutions = state["es"].ask()
    return (
        generation_jobs(cfg, solutions, state["generation"]),
        state["generation"],
        dict(pop=cfg.pop, trials=cfg.trials, max_len=cfg.max_steps, early_stop=cfg.early_stop),
    )


def main(argv=None):
    p = arg_parser(__doc__)
    p.add_argument("--run", help="a CarRacing run directory with a controller in training (controller/es_state.npz)")
    p.add_argument("--paper", action="store_true", help="64 x 16 x 1000 (about 15-25 minutes a configuration)")
    p.add_argument("--quick", action="store_true", help="8 x 2 x 100")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", default=str(RESULTS / "generation.json"))
    args = p.parse_args(argv)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="wm-generation-") as tmp:
        run = Path(args.run) if args.run else smoke_run(Path(tmp), "CarRacing-v3")
        agent = Agent.from_run(run, "CarRacing-v3", with_pool=False)
        if args.run:
            jobs, generation, size = next_generation(run, agent)
            pop, trials, max_len = size["pop"], size["trials"], size["max_len"]
            variants = {"whole": dict(early_stop=0), "early_stop": dict(early_stop=size["early_stop"] or 100)}
        else:
            pop, trials, max_len = (64, 16, 1000) if args.paper else (8, 2, 100) if args.quick else (16, 4, 300)
            jobs, generation, variants = first_generation(agent, pop, trials), None, VARIANTS
        agent.close()
        variants = {v: variants[v] for v in args.variants}
        times = {v: [] for v in variants}
        fitness = {}
        with ProcessPoolEvaluator(run, "CarRacing-v3", workers=2) as ev:
            for kw in variants.values():  # warm up: the workers load V and M, torch makes its kernels
                ev.evaluate(EvalSettings(mode="real", max_len=20, **kw), jobs[:2])
            for _ in range(args.repeats):
                for name, kw in variants.items():
                    settings = EvalSettings(mode="real", max_len=max_len, **kw)
                    with Timer() as t:
                        scores = ev.evaluate(settings, jobs)
                    times[name].append(t.wall)
                    fitness[name] = float(np.mean([s.mean() for s in scores]))
    base = median(times["whole"]) if "whole" in times else None
    rows = [
        dict(
            variant=v,
            seconds=median(ts),
            runs=ts,
            mean_fitness=fitness[v],
            speedup=(base / median(ts)) if base else None,
        )
        for v, ts in times.items()
    ]
    where = f"generation {generation + 1} of {args.run}" if args.run else "first-generation-like candidates"
    print(
        f"one generation of {pop} candidates x {trials} episodes x up to {max_len} frames ({where}), 2 worker processes"
    )
    print(f"{'configuration':12s} {'seconds':>8s} {'speed-up':>9s} {'mean fitness':>13s}")
    for r in rows:
        speedup = f"{r['speedup']:.2f}x" if r["speedup"] else ""
        print(f"{r['variant']:12s} {r['seconds']:8.1f} {speedup:>9s} {r['mean_fitness']:13.1f}")
    out = dict(
        benchmark="generation",
        candidates=where,
        pop=pop,
        trials=trials,
        max_len=max_len,
        repeats=args.repeats,
        seconds=round(time.time() - t0, 1),
        results=rows,
        machine=machine(1),
    )
    write_results(args.out, out)
    print(f"load average {out['machine']['load_average_at_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
