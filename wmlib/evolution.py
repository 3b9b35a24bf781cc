"""Evolving the controller with CMA-ES (Hansen 2016, arXiv:1604.00772), using pycma's ask/tell interface.

pycma is the maintained implementation (restarts, numerics, the details that make it robust); to see what one
generation of CMA-ES does, equation by equation, read the teaching version in ``toy/cmaes.py`` (notebook 02),
which is compared with pycma there.

Each generation: ask pycma for ``pop`` candidates, score each as the mean over ``trials`` episodes (real game or
dream), tell pycma the negated scores (pycma minimises). Every ``eval_every`` generations the CMA-ES mean is scored
on ``eval_episodes`` episodes; that score decides the curriculum (the dream gets longer when it improves), the
target stop, and which parameters are kept as the run's controller. The whole state is saved after every
generation, so a stopped run resumes where it was.

Files in ``controller/``, written in this order after every generation, each atomically:

1. ``means/gen_NNNN.pt``: the mean of an evaluated generation, a controller checkpoint of its own
   (``wm average`` averages some of them);
2. ``controller.pt``: the chosen, best, and mean parameters;
3. ``es_state.npz``: pycma's strategy, numpy's random state, our bookkeeping and every row of the log, stored as
   data that loading cannot run code from (:mod:`wmlib.esstate`). This file is the commit point: a run killed at
   any instant resumes from the last one written, and redoes (with the same seeds, to the same bytes) whatever
   was written after it;
4. ``log.csv``: rewritten whole from the rows in ``es_state.npz`` (and again when a run resumes);
5. ``learning_curve.png``: drawn from the log when the search ends (and again whenever ``wm controller`` finds it
   finished).

A pickled state from an older version (``es_state.pkl``) is never read: loading a pickle can run any code.
"""

from __future__ import annotations

import time
from pathlib import Path

import cma
import numpy as np
import torch
from tqdm.auto import tqdm

from . import esstate, rundir
from .agent import Agent
from .config import Config
from .controller import ControllerSpec, load_controller
from .evaluators import choose
from .io import atomic_torch_save, atomic_write_bytes, write_csv
from .jobs import EvalSettings, Evaluator, episode_cap
from .plots import plot_learning_curve
from .runlock import holds_run_lock
from .seeding import EVAL, TRAIN, episode_seed

PICKLED_STATE = rundir.PICKLED_ES_STATE  # where older versions pickled the CMA-ES state: never read
STATE_KEYS = {
    "es",
    "generation",
    "spec",
    "in_dream",
    "max_len",
    "best_fitness",
    "best_params",
    "best_eval",
    "best_eval_params",
    "best_mean_fitness",
    "done",
    "numpy_rng",
    "rows",
}


def generation_jobs(cfg: Config, solutions, generation: int):
    """One job per candidate: its parameters and its trials' seeds (run seed, generation, candidate, trial); with
    cfg.paired_seeds every candidate gets candidate 0's seeds (the same tracks for all)."""
    return [
        (
            np.asarray(x, np.float32),
            [episode_seed(cfg.seed, generation, 0 if cfg.paired_seeds else i, t, TRAIN) for t in range(cfg.trials)],
        )
        for i, x in enumerate(solutions)
    ]


def start_params(start_from, spec: ControllerSpec) -> tuple[np.ndarray, int]:
    """The parameters of the controller checkpoint (or run directory) ``start_from``, checked against ``spec``, and
    the generation it was trained to."""
    params, ckpt = load_controller(start_from)
    if ckpt.get("spec") != spec.to_dict():
        raise ValueError(
            f"--start_from {ckpt['path']}: a controller for {ckpt.get('spec')}, but this run's V and M "
            f"make {spec.to_dict()}"
        )
    return params.astype(np.float64), max(0, int(ckpt.get("generation", 0)))


def new_state(cfg: Config, spec: ControllerSpec, x0=None) -> dict:
    """A fresh CMA-ES around zero, or around ``x0`` (a trained controller's parameters) to go on from it."""
    x0 = np.zeros(spec.n_params) if x0 is None else np.asarray(x0, np.float64)
    # pycma treats seed 0 as "use the clock", so shift the run seed by one. No signals file: pycma would read
    # options from one (cma_signals.in in the working directory, by default) and evaluate them as Python.
    # CMA_mu: how many of the best candidates move the mean (None: pycma's default, half the population).
    es = cma.CMAEvolutionStrategy(
        x0,
        cfg.sigma0,
        {"popsize": cfg.pop, "CMA_mu": cfg.parents(), "seed": cfg.seed + 1, "verbose": -9, "signals_filename": ""},
    )
    max_len = episode_cap(cfg, cfg.in_dream)
    if cfg.curriculum:
        max_len = min(int(cfg.curriculum[0]), max_len)
    return dict(
        es=es,
        generation=0,
        spec=spec.to_dict(),
        in_dream=cfg.in_dream,
        max_len=max_len,
        best_fitness=-np.inf,
        best_params=None,
        best_eval=-np.inf,
        best_eval_params=None,
        best_mean_fitness=-np.inf,
        done=False,
        numpy_rng=np.random.get_state(),
        start_from=None,
        rows=[],
    )


QUIET = {"verb_log": 0, "verb_disp": 0, "verb_plot": 0, "verbose": -9}  # pycma's options in every state saved here


def load_state(path: Path, cfg: Config, spec: ControllerSpec) -> dict:
    """The saved CMA-ES state (numpy's global random state restored with it), checked against this run's
    controller and population."""
    state = esstate.load(path)
    if (
        type(state) is not dict
        or not STATE_KEYS <= state.keys()
        or not isinstance(state["es"], cma.CMAEvolutionStrategy)
    ):
        raise ValueError(
            f"{path}: not the CMA-ES state `wm controller` writes; delete {path.parent} to start the controller again"
        )
    if state["es"].opts.get("signals_filename"):
        raise ValueError(
            f"{path}: names a pycma signals file ({state['es'].opts['signals_filename']!r:.80}), whose "
            "options pycma would evaluate as Python; `wm controller` keeps none"
        )
    chatty = {k: state["es"].opts.get(k) for k in QUIET if state["es"].opts.get(k) != QUIET[k]}
    if chatty:  # pycma would write its data files (where the file says) or print
        raise ValueError(f"{path}: asks pycma to log or print ({chatty!r:.120}); `wm controller` keeps it quiet")
    if state["spec"] != spec.to_dict():
        raise ValueError(f"{path}: saved for controller {state['spec']}, but this run has {spec.to_dict()}")
    if state["es"].popsize != cfg.pop:
        raise ValueError(f"{path}: saved with population {state['es'].popsize}, but --pop is {cfg.pop}")
    if state["in_dream"] != cfg.in_dream:
        raise ValueError(f"{path}: saved with in_dream={state['in_dream']}, but this run has in_dream={cfg.in_dream}")
    cma.utilities.utils.global_verbosity = -9  # as quiet as a strategy made here (its constructor sets this)
    return state


def refuse_unsaved_files(data_dir) -> None:
    """Without a saved state, ``controller/`` must hold no pickled state and no log: the one is never read (it
    could run code), the other would be replaced by the new search's."""
    if rundir.path(data_dir, rundir.ES_STATE).exists():
        return
    folder = rundir.stage_dir(data_dir, "controller")
    again = (
        f"delete {folder} to start C again, or move it aside and start a new search from its controller.pt "
        "with --start_from"
    )
    pickled = rundir.path(data_dir, PICKLED_STATE)
    if pickled.exists():
        raise ValueError(f"{pickled}: pickled CMA-ES state can run code when loaded, so it is not read; {again}")
    log = rundir.log_path(data_dir, "controller")
    if log.exists():
        raise ValueError(
            f"{log}: a controller log without the CMA-ES state it belongs to ({rundir.ES_STATE.name}); {again}"
        )


def starting_state(cfg: Config, data_dir: Path, spec: ControllerSpec, start_from=None) -> dict:
    """The saved state to resume, or a new one around zero or around the controller ``start_from``."""
    refuse_unsaved_files(data_dir)
    state_path = rundir.path(data_dir, rundir.ES_STATE)
    x0, g0 = (None, 0) if start_from is None else start_params(start_from, spec)
    if state_path.exists():
        state = load_state(state_path, cfg, spec)
        if x0 is not None and not np.array_equal(x0, state.get("x0", np.zeros(spec.n_params))):
            raise ValueError(
                f"{state_path}: this search started from {state.get('start_from') or 'zero'}, "
                f"not from --start_from {start_from}; resume without --start_from, or delete "
                "controller/ to start again"
            )
        return state
    if x0 is not None and g0 >= cfg.generations:
        raise ValueError(
            f"--generations {cfg.generations}: --start_from {start_from} was trained to "
            f"generation {g0} already, and generations count on from there; ask for more"
        )
    state = new_state(cfg, spec, x0)
    if x0 is not None:
        state.update(start_from=str(start_from), x0=x0, generation=g0, start_generation=g0)
    return state


def mean_path(data_dir, generation: int) -> Path:
    """Where the CMA-ES mean evaluated after ``generation`` is kept."""
    return rundir.path(data_dir, rundir.MEANS) / f"gen_{generation:04d}.pt"


def save_mean(data_dir, state: dict, cfg: Config, params, scores) -> None:
    """The evaluated mean, as a controller checkpoint (``load_controller`` and ``wm test`` read it like any other)."""
    t = torch.as_tensor(np.asarray(params, np.float32))
    atomic_torch_save(
        mean_path(data_dir, state["generation"]),
        dict(
            params=t,
            best=t,
            mean=t,
            spec=state["spec"],
            generation=state["generation"],
            best_fitness=float(state["best_fitness"]),
            best_eval=float(np.mean(scores)),
            eval_std=float(np.std(scores)),
            config=cfg.to_dict(),
            start_from=state.get("start_from"),
            start_generation=state.get("start_generation"),
        ),
    )


def save_state(data_dir, state: dict, cfg: Config) -> None:
    """``controller.pt``, then ``es_state.npz`` (the commit point), then ``log.csv`` from the state's rows."""
    chosen = state["best_eval_params"] if state["best_eval_params"] is not None else state["best_params"]
    t = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
    atomic_torch_save(
        rundir.path(data_dir, rundir.CONTROLLER),
        dict(
            params=t(chosen),
            best=t(state["best_params"]),
            mean=t(state["es"].mean),
            spec=state["spec"],
            generation=state["generation"],
            chosen_generation=chosen_generation(state),
            best_fitness=float(state["best_fitness"]),
            best_eval=float(state["best_eval"]),
            config=cfg.to_dict(),
            start_from=state.get("start_from"),
            start_generation=state.get("start_generation"),
        ),
    )
    atomic_write_bytes(rundir.path(data_dir, rundir.ES_STATE), esstate.dumps(state))
    write_csv(rundir.log_path(data_dir, "controller"), state["rows"])


def run_generation(cfg: Config, state: dict, evaluator: Evaluator) -> tuple[dict, tuple | None]:
    """One generation: ask, score, tell, the curriculum and (every eval_every) the mean's evaluation. Updates
    ``state`` in memory; returns the log row and (mean parameters, their scores) when the mean was evaluated."""
    es, g, t0 = state["es"], state["generation"], time.time()
    settings = EvalSettings.from_config(cfg, max_len=state["max_len"], training=True)
    solutions = es.ask()
    scores = evaluator.evaluate(settings, generation_jobs(cfg, solutions, g))
    fitness = np.array([s.mean() for s in scores])
    es.tell(solutions, (-fitness).tolist())
    i = int(fitness.argmax())
    if fitness[i] > state["best_fitness"]:
        state["best_fitness"], state["best_params"] = float(fitness[i]), np.asarray(solutions[i])
    row = dict(
        generation=g + 1,
        max_len=state["max_len"],
        fitness_mean=float(fitness.mean()),
        fitness_best=float(fitness.max()),
        fitness_worst=float(fitness.min()),
        sigma=float(es.sigma),
        eval_mean="",
        eval_std="",
    )
    if cfg.curriculum and fitness.mean() > state["best_mean_fitness"]:
        state["max_len"] = min(episode_cap(cfg, cfg.in_dream), state["max_len"] + int(cfg.curriculum[1]))
    state["best_mean_fitness"] = max(state["best_mean_fitness"], float(fitness.mean()))
    evaluated = None
    if (g + 1) % cfg.eval_every == 0 or g + 1 == cfg.generations:
        evaluated = evaluate_mean(cfg, state, evaluator)
        row.update(eval_mean=float(evaluated[1].mean()), eval_std=float(evaluated[1].std()))
    row["seconds"] = round(time.time() - t0, 2)
    state["generation"] = g + 1
    state["numpy_rng"] = np.random.get_state()
    state["rows"].append(row)
    return row, evaluated


def evaluate_mean(cfg: Config, state: dict, evaluator: Evaluator) -> tuple[np.ndarray, np.ndarray]:
    """Score the CMA-ES mean on cfg.eval_episodes episodes of its own (purpose EVAL) at the curriculum's current
    length; keep it as the run's controller when it scores best, and stop at the target. Returns (mean, scores)."""
    g = state["generation"]
    seeds = [episode_seed(cfg.seed, g, 0, t, EVAL) for t in range(cfg.eval_episodes)]
    mean_params = np.asarray(state["es"].mean, np.float32)
    at = EvalSettings.from_config(cfg, max_len=state["max_len"])  # the curriculum may have moved it
    ev = evaluator.evaluate(at, [(mean_params, seeds)])[0]
    if ev.mean() > state["best_eval"]:
        state["best_eval"], state["best_eval_params"] = float(ev.mean()), mean_params
    target = cfg.target_cumulative_reward
    if target is not None and ev.mean() >= target:
        state["done"] = True
    return mean_params, ev


def chosen_generation(state: dict) -> int:
    """The generation whose parameters ``controller.pt`` ships (what ``wm test`` plays and reports): the first
    evaluated mean that scored the best evaluation, or, before any evaluation, the generation of the best
    candidate. The log rows say which; without one, the current generation."""
    if state["best_eval_params"] is not None:
        key, best = "eval_mean", state["best_eval"]
    else:
        key, best = "fitness_best", state["best_fitness"]
    hits = [int(r["generation"]) for r in state["rows"] if r[key] != "" and float(r[key]) >= best]
    return hits[0] if hits else int(state["generation"])


def search(cfg: Config, data_dir: Path, state: dict, evaluator: Evaluator, progress: bool) -> None:
    """Generations until cfg.generations or the target, each saved (the evaluated mean first, then the state)."""
    bar = tqdm(
        total=cfg.generations,
        initial=state["generation"],
        desc=f"C ({EvalSettings.from_config(cfg).mode})",
        unit="gen",
        disable=not progress,
    )
    try:
        while state["generation"] < cfg.generations and not state["done"]:
            row, evaluated = run_generation(cfg, state, evaluator)
            if evaluated is not None:
                save_mean(data_dir, state, cfg, *evaluated)
            save_state(data_dir, state, cfg)
            bar.update()
            bar.set_postfix(best=f"{row['fitness_best']:.1f}", mean=f"{row['fitness_mean']:.1f}")
    finally:
        bar.close()


@holds_run_lock("wm controller (wmlib.evolution.train_controller)")
def train_controller(
    cfg: Config,
    data_dir,
    evaluator: Evaluator | None = None,
    progress: bool = True,
    start_from=None,
    agent: Agent | None = None,
) -> Path:
    """Run CMA-ES until cfg.generations (or the target) is reached; resumes from ``controller/es_state.npz``.

    The candidates are scored by ``evaluator`` or, without one, by the one :func:`wmlib.evaluators.choose` picks
    (closed at the end). V and M are loaded once: ``agent`` when given (this run's, loaded by the caller), else the
    evaluator's, else from ``data_dir``.

    ``start_from`` (a controller checkpoint or run directory whose V and M have this run's sizes, e.g. a shipped
    agent or the previous round of ``wm iterate``) centres a new search on that controller instead of zero, with
    step size cfg.sigma0: a way to go on training an agent whose CMA-ES state was not kept. The generations count
    on from the one that controller was trained to (so its log goes on, and the episodes' seeds are new ones);
    cfg.generations is the total. A resumed search keeps its start."""
    data_dir = Path(data_dir)
    agent = run_agent(cfg, data_dir, agent if agent is not None else getattr(evaluator, "agent", None))
    log = rundir.log_path(data_dir, "controller")
    own = evaluator is None
    try:
        state = starting_state(cfg, data_dir, agent.spec, start_from)
        if state["rows"]:
            write_csv(log, state["rows"])  # what the state says: a kill may have come before the log was written
        if not state["done"] and state["generation"] < cfg.generations:
            np.random.set_state(state["numpy_rng"])  # pycma draws from numpy's global generator
            if own:
                evaluator = choose(cfg, data_dir, agent=agent)
            search(cfg, data_dir, state, evaluator, progress)
    finally:
        if own and evaluator is not None:
            evaluator.close()
        agent.close()
    if state["rows"]:
        plot_learning_curve(log, rundir.path(data_dir, rundir.LEARNING_CURVE))
    return rundir.path(data_dir, rundir.CONTROLLER)


def run_agent(cfg: Config, data_dir: Path, agent: Agent | None) -> Agent:
    """The agent to train with: ``agent`` when given (checked to play cfg.game with the controller cfg asks for),
    else this run's V and M (checked to be of one world model, of cfg.game)."""
    if agent is None:
        return Agent.from_run(data_dir, cfg.game)
    if agent.game != cfg.game or agent.spec.z_only != cfg.z_only:
        raise ValueError(
            f"{data_dir}: the agent given plays {agent.game} (z_only={agent.spec.z_only}), but this run "
            f"asks for {cfg.game} (z_only={cfg.z_only})"
        )
    return agent
