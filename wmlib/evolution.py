"""Evolving the controller with CMA-ES (Hansen 2016, arXiv:1604.00772), using pycma's ask/tell interface.

Each generation: ask pycma for ``pop`` candidates, score each as the mean over ``trials`` episodes (real game or
dream), tell pycma the negated scores (pycma minimises). Every ``eval_every`` generations the CMA-ES mean is scored
on ``eval_episodes`` episodes; that score decides the curriculum (the dream gets longer when it improves), the
target stop, and which parameters are kept as the run's controller. The whole state is saved after every
generation, so a stopped run resumes where it was.

Files in ``controller/``: ``es_state.pkl`` (pycma's pickle, numpy's RNG state and our bookkeeping),
``controller.pt`` (the chosen, best, and mean parameters), ``log.csv`` and ``learning_curve.png``.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import cma
import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config
from .controller import ControllerSpec
from .evaluators import EvalSettings, Evaluator, default_evaluator
from .io import append_csv, atomic_torch_save, atomic_write_bytes, load_checkpoint
from .seeding import EVAL, TRAIN, episode_seed


def controller_dir(data_dir) -> Path:
    return Path(data_dir) / "controller"


def controller_path(data_dir) -> Path:
    return controller_dir(data_dir) / "controller.pt"


def train_settings(cfg: Config, max_len: int | None = None) -> EvalSettings:
    mode = "dream" if cfg.in_dream else "real"
    if max_len is None:
        max_len = cfg.dream_max_len if cfg.in_dream else cfg.max_steps
    return EvalSettings(mode=mode, max_len=int(max_len), temperature=cfg.temperature,
                        done_threshold=cfg.done_threshold, initial_z_noise=cfg.initial_z_noise,
                        renderer=cfg.renderer)


def generation_jobs(cfg: Config, solutions, generation: int):
    """One job per candidate: its parameters and its trials' seeds (run seed, generation, candidate, trial)."""
    return [(np.asarray(x, np.float32), [episode_seed(cfg.seed, generation, i, t, TRAIN) for t in range(cfg.trials)])
            for i, x in enumerate(solutions)]


def new_state(cfg: Config, spec: ControllerSpec) -> dict:
    # pycma treats seed 0 as "use the clock", so shift the run seed by one.
    es = cma.CMAEvolutionStrategy(np.zeros(spec.n_params), cfg.sigma0,
                                  {"popsize": cfg.pop, "seed": cfg.seed + 1, "verbose": -9})
    max_len = cfg.dream_max_len if cfg.in_dream else cfg.max_steps
    if cfg.curriculum:
        max_len = min(int(cfg.curriculum[0]), max_len)
    return dict(es=es, generation=0, spec=spec.to_dict(), in_dream=cfg.in_dream, max_len=max_len,
                best_fitness=-np.inf, best_params=None, best_eval=-np.inf, best_eval_params=None,
                best_mean_fitness=-np.inf, done=False, numpy_rng=np.random.get_state())


def load_state(path: Path, cfg: Config, spec: ControllerSpec) -> dict:
    """The saved CMA-ES state, checked against this run's controller and population."""
    try:
        state = pickle.loads(path.read_bytes())  # our own file, written by save_state below
    except Exception as exc:
        raise ValueError(f"{path}: unreadable CMA-ES state ({type(exc).__name__}: {exc}); "
                         "delete it to start the controller again") from exc
    if state["spec"] != spec.to_dict():
        raise ValueError(f"{path}: saved for controller {state['spec']}, but this run has {spec.to_dict()}")
    if state["es"].popsize != cfg.pop:
        raise ValueError(f"{path}: saved with population {state['es'].popsize}, but --pop is {cfg.pop}")
    if state["in_dream"] != cfg.in_dream:
        raise ValueError(f"{path}: saved with in_dream={state['in_dream']}, but this run has in_dream={cfg.in_dream}")
    return state


def save_state(data_dir, state: dict, cfg: Config) -> None:
    atomic_write_bytes(controller_dir(data_dir) / "es_state.pkl", pickle.dumps(state))
    chosen = state["best_eval_params"] if state["best_eval_params"] is not None else state["best_params"]
    t = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
    atomic_torch_save(controller_path(data_dir), dict(
        params=t(chosen), best=t(state["best_params"]), mean=t(state["es"].mean), spec=state["spec"],
        generation=state["generation"], best_fitness=float(state["best_fitness"]),
        best_eval=float(state["best_eval"]), config=cfg.to_dict(),
    ))


def load_controller(data_dir_or_file) -> tuple[np.ndarray, dict]:
    """The run's chosen controller parameters and its checkpoint record."""
    path = Path(data_dir_or_file)
    if path.is_dir():
        path = controller_path(path)
    ckpt = load_checkpoint(path, "controller checkpoint")
    ckpt["path"] = str(path)
    return ckpt["params"].numpy().astype(np.float32), ckpt


def train_controller(cfg: Config, data_dir, evaluator: Evaluator | None = None, progress: bool = True) -> Path:
    """Run CMA-ES until cfg.generations (or the target) is reached; resumes from ``controller/es_state.pkl``."""
    from .evaluators import Agent

    data_dir = Path(data_dir)
    agent = Agent.from_run(data_dir, cfg.game)  # checks V/M compatibility and the game
    spec = agent.spec
    state_path = controller_dir(data_dir) / "es_state.pkl"
    state = load_state(state_path, cfg, spec) if state_path.exists() else new_state(cfg, spec)
    if state["done"] or state["generation"] >= cfg.generations:
        return controller_path(data_dir)
    np.random.set_state(state["numpy_rng"])  # pycma draws from numpy's global generator
    own = evaluator is None
    if own:
        evaluator = default_evaluator(train_settings(cfg), data_dir, cfg.game, cfg.workers, agent)
    es = state["es"]
    cap = cfg.dream_max_len if cfg.in_dream else cfg.max_steps
    bar = tqdm(total=cfg.generations, initial=state["generation"], desc=f"C ({train_settings(cfg).mode})",
               unit="gen", disable=not progress)
    try:
        while state["generation"] < cfg.generations and not state["done"]:
            g, t0 = state["generation"], time.time()
            settings = train_settings(cfg, state["max_len"])
            solutions = es.ask()
            scores = evaluator.evaluate(settings, generation_jobs(cfg, solutions, g))
            fitness = np.array([s.mean() for s in scores])
            es.tell(solutions, (-fitness).tolist())
            i = int(fitness.argmax())
            if fitness[i] > state["best_fitness"]:
                state["best_fitness"], state["best_params"] = float(fitness[i]), np.asarray(solutions[i])
            row = dict(generation=g + 1, max_len=state["max_len"], fitness_mean=float(fitness.mean()),
                       fitness_best=float(fitness.max()), fitness_worst=float(fitness.min()),
                       sigma=float(es.sigma), eval_mean="", eval_std="")
            if cfg.curriculum and fitness.mean() > state["best_mean_fitness"]:
                state["max_len"] = min(cap, state["max_len"] + int(cfg.curriculum[1]))
            state["best_mean_fitness"] = max(state["best_mean_fitness"], float(fitness.mean()))
            if (g + 1) % cfg.eval_every == 0 or g + 1 == cfg.generations:
                seeds = [episode_seed(cfg.seed, g, 0, t, EVAL) for t in range(cfg.eval_episodes)]
                mean_params = np.asarray(es.mean, np.float32)
                ev = evaluator.evaluate(train_settings(cfg, state["max_len"]), [(mean_params, seeds)])[0]
                row.update(eval_mean=float(ev.mean()), eval_std=float(ev.std()))
                if ev.mean() > state["best_eval"]:
                    state["best_eval"], state["best_eval_params"] = float(ev.mean()), mean_params
                target = cfg.target_cumulative_reward
                if target is not None and ev.mean() >= target:
                    state["done"] = True
            row["seconds"] = round(time.time() - t0, 2)
            state["generation"] = g + 1
            state["numpy_rng"] = np.random.get_state()
            save_state(data_dir, state, cfg)
            append_csv(controller_dir(data_dir) / "log.csv", row)
            bar.update()
            bar.set_postfix(best=f"{fitness.max():.1f}", mean=f"{fitness.mean():.1f}")
    finally:
        bar.close()
        if own:
            evaluator.close()
        agent.close()
    from .viz import plot_learning_curve

    plot_learning_curve(controller_dir(data_dir) / "log.csv", controller_dir(data_dir) / "learning_curve.png")
    return controller_path(data_dir)
