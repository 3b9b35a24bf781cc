"""Experiments on a trained run: scores in the dream and in the real game, and the paper's temperature study.

    wm study --data_dir runs/DoomTakeCover-reproduce --temperatures 1.0 1.15 1.3
    wm study --data_dir runs/DoomTakeCover-reproduce --fidelity     # dream vs real, same controllers
    wm study --data_dir runs/CarRacing-v3-reproduce --z_only        # the paper's "V model only" C

trains (or resumes) one dream controller per temperature next to the run, scores each in the dream and in the real
game, and prints the table (also written to ``DATA_DIR/temperatures/study.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import numpy as np

from . import rundir
from .agent import Agent, EvalSettings, run_jobs
from .controller import load_controller, played_generation
from .dream import fidelity_summary, rank_correlation  # noqa: F401 (part of this module's interface)
from .evaluators import add_flags, choose, where
from .evolution import train_controller
from .io import atomic_write_text
from .play import held_out_seeds, score_agent
from .seeding import FIDELITY, generator
from .settings import FIELDS, add_setting, flag_name


def real_scores(
    cfg,
    data_dir,
    rollouts: int | None = None,
    policy: str = "controller",
    progress: bool = True,
    agent: Agent | None = None,
    where: dict | None = None,
) -> dict:
    """The real-game test result of ``data_dir`` (see :func:`wmlib.play.score_agent`), reused from
    ``test/scores.json`` (``random_scores.json``) when it was made by the same controller generation on as many
    episodes of the same length, else measured (with ``agent``, when the caller loaded it) and written. ``where``:
    where the controller's episodes are played (:func:`wmlib.evaluators.choose`'s kind, scheduler, tls; default:
    this process), the same scores everywhere."""
    n = cfg.test_rollouts if rollouts is None else int(rollouts)
    path = rundir.scores_path(data_dir, policy)
    if path.exists():
        old = json.loads(path.read_text())
        same = old.get("episodes") == n and old.get("max_steps") == cfg.max_steps
        if policy == "controller":
            same = same and old.get("generation") == played_generation(load_controller(data_dir)[1])
        if same:
            return old
    if not where or policy != "controller":
        return score_agent(cfg, data_dir, rollouts=n, policy=policy, progress=progress, agent=agent)
    with choose(cfg, data_dir, mode="real", agent=agent, **where) as evaluator:
        return score_agent(cfg, data_dir, rollouts=n, policy=policy, progress=progress, evaluator=evaluator)


def dream_scores(
    cfg, data_dir, params=None, episodes: int = 16, temperature: float | None = None, agent: Agent | None = None
) -> np.ndarray:
    """Scores (steps survived) of a controller in ``episodes`` dreams of the run's M at ``temperature``
    (default: the run's). ``params`` defaults to the run's trained controller; ``agent`` to the run's V and M."""
    if params is None:
        params = load_controller(data_dir)[0]
    agent = agent if agent is not None else Agent.from_run(data_dir, cfg.game)
    settings = EvalSettings.from_config(cfg, mode="dream", temperature=temperature)
    return run_jobs(agent, settings, [(np.asarray(params, np.float32), held_out_seeds(cfg, episodes))])[0]


def dream_vs_real(
    cfg,
    data_dir,
    candidates: int = 8,
    episodes: int = 16,
    temperatures=None,
    include_trained: bool = True,
    where: dict | None = None,
) -> list[dict]:
    """How faithful is the dream? The same controllers scored in M's dream and in the real game.

    The controllers are ``candidates`` draws of CMA-ES's first generation (N(0, sigma0^2) parameters, from the run
    seed) and, when the run has one and ``include_trained``, its trained controller. Each plays ``episodes`` real
    episodes (held-out seeds) and as many dreams at each temperature (default: the run's). A dream that a
    controller survives much longer than the real game is one CMA-ES will find and exploit (World Models Sec. 4.5).

    Returns one row per controller: name, real_mean, real_std, and dream_mean / dream_std, dicts keyed by tau.
    ``where``: where the real episodes are played, as for :func:`real_scores`.
    """
    temps = [cfg.temperature] if temperatures is None else [float(t) for t in temperatures]
    agent = Agent.from_run(data_dir, cfg.game)
    rng = generator(cfg.seed, FIDELITY)
    controllers = [
        (f"random {i + 1}", rng.normal(0.0, cfg.sigma0, agent.spec.n_params).astype(np.float32))
        for i in range(candidates)
    ]
    if include_trained and rundir.path(data_dir, rundir.CONTROLLER).exists():
        params, ckpt = load_controller(data_dir)
        controllers.append((f"trained (generation {int(ckpt['generation'])})", np.asarray(params, np.float32)))
    seeds = held_out_seeds(cfg, episodes)
    jobs = [(p, seeds) for _, p in controllers]
    try:
        if where:
            with choose(cfg, data_dir, mode="real", agent=agent, **where) as evaluator:
                real = evaluator.evaluate(EvalSettings.from_config(cfg, mode="real"), jobs)
        else:
            real = run_jobs(agent, EvalSettings.from_config(cfg, mode="real"), jobs)
    finally:
        agent.close()
    dreams = {tau: run_jobs(agent, EvalSettings.from_config(cfg, mode="dream", temperature=tau), jobs) for tau in temps}
    return [
        dict(
            name=name,
            real_mean=float(real[i].mean()),
            real_std=float(real[i].std()),
            dream_mean={tau: float(dreams[tau][i].mean()) for tau in temps},
            dream_std={tau: float(dreams[tau][i].std()) for tau in temps},
        )
        for i, (name, _) in enumerate(controllers)
    ]


def fidelity(
    cfg, data_dir, candidates: int = 8, episodes: int = 16, temperatures=None, where: dict | None = None
) -> dict:
    """:func:`dream_vs_real` and its :func:`fidelity_summary` at each temperature, written to
    ``data_dir/fidelity.json`` and returned: {rows, summary: {tau: summary}, episodes}."""
    rows = dream_vs_real(cfg, data_dir, candidates, episodes, temperatures, where=where)
    temps = list(rows[0]["dream_mean"])
    trained = len(rows) - 1 if rows[-1]["name"].startswith("trained") else None
    summary = {
        tau: fidelity_summary([r["real_mean"] for r in rows], [r["dream_mean"][tau] for r in rows], trained)
        for tau in temps
    }
    record = dict(episodes=episodes, rows=rows, summary=summary)
    atomic_write_text(rundir.path(data_dir, rundir.FIDELITY), json.dumps(record, indent=2))
    return record


def temperature_study(
    cfg,
    data_dir,
    temperatures=(1.0, 1.15, 1.3),
    generations: int | None = None,
    test_episodes: int | None = None,
    dream_episodes: int = 16,
    progress: bool = True,
    where: dict | None = None,
) -> list[dict]:
    """The paper's temperature experiment at our scale: for each tau, train a controller inside the dream at
    that temperature, then score it in the dream (the 'virtual score') and in the real game (the 'actual score').

    Each tau gets its own run directory ``data_dir/temperatures/tau_X.XX`` sharing ``data_dir``'s V, M and series
    (:func:`wmlib.rundir.share_world_model`), and V and M are loaded once for all of them; every step resumes. The
    run's own dream controller stands for its temperature when it was trained for as many generations (no second
    run of the same experiment). Returns one row per tau: temperature, generations, dream_mean, dream_std,
    real_mean, real_std. ``where``: where the real episodes are played, as for :func:`real_scores`.
    """
    agent = Agent.from_run(data_dir, cfg.game)
    try:
        return [
            _temperature_row(
                cfg, data_dir, float(tau), generations, test_episodes, dream_episodes, progress, agent, where
            )
            for tau in temperatures
        ]
    finally:
        agent.close()


def _temperature_row(
    cfg,
    data_dir,
    tau: float,
    generations,
    test_episodes,
    dream_episodes,
    progress,
    agent: Agent,
    where: dict | None = None,
) -> dict:
    """One tau of :func:`temperature_study`: train (or resume), score in the dream and the real game, and add the
    row to the table on disk."""
    c = dataclasses.replace(
        cfg, temperature=tau, in_dream=True, generations=cfg.generations if generations is None else int(generations)
    )
    if cfg.in_dream and c.temperature == cfg.temperature and c.generations == cfg.generations:
        sub = Path(data_dir)  # the run's own controller is this row
    else:
        sub = rundir.share_world_model(data_dir, rundir.tau_dir(data_dir, tau))
        c.save(rundir.path(sub, rundir.CONFIG))
    train_controller(c, sub, progress=progress, agent=agent)
    dream = dream_scores(c, sub, episodes=dream_episodes, agent=agent)
    real = real_scores(c, sub, rollouts=test_episodes, progress=progress, agent=agent, where=where)
    row = dict(
        temperature=tau,
        generations=c.generations,
        dream_episodes=len(dream),
        dream_mean=float(dream.mean()),
        dream_std=float(dream.std()),
        real_episodes=real["episodes"],
        real_mean=real["mean"],
        real_std=real["std"],
    )
    _merge_rows(data_dir, [row])
    return row


Z_ONLY_SETTINGS = ("pop", "trials", "sigma0", "eval_every", "eval_episodes", "early_stop", "paired_seeds")
"""The settings of the z-only C that ``wm study --z_only`` takes as flags (the rest are the run's)."""


def z_only_ablation(
    cfg,
    data_dir,
    generations: int | None = None,
    test_episodes: int | None = None,
    progress: bool = True,
    where: dict | None = None,
    settings: dict | None = None,
) -> dict:
    """The paper's Table 1 ablation on this run's own V and M: a controller that reads z alone ("V model only"),
    trained as the run's was (population, trials, early stopping, in the game or the dream) in
    ``data_dir/z_only`` (sharing V, M and the series), then both played on the same held-out test episodes.

    ``settings`` (names in :data:`Z_ONLY_SETTINGS`) change how the z-only C trains, where the run's C trained in
    more than one way (a pretrained agent's config.json holds its last search's). Resumes like any C, from the
    z-only C's own config.json, so a setting given once holds on resume; a population fixed by a search that can
    resume is not changed. Returns (and writes to ``data_dir/z_only/ablation.json``) {generations, z_only,
    z_and_h}, each a `wm test` result; ``where``: where the real episodes are played, as for :func:`real_scores`."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(Z_ONLY_SETTINGS))
    if unknown:
        raise ValueError(f"z_only_ablation: {unknown} are not settings of the z-only C ({', '.join(Z_ONLY_SETTINGS)})")
    sub_dir = rundir.path(data_dir, rundir.Z_ONLY)
    base = rundir.load_config(sub_dir) if rundir.path(sub_dir, rundir.CONFIG).exists() else cfg
    if generations is not None:
        settings["generations"] = int(generations)
    c = dataclasses.replace(base, z_only=True, **settings)  # Config checks every value, naming its flag
    rundir.check_artifacts(c, sub_dir, settings)  # before config.json changes
    sub = rundir.share_world_model(data_dir, sub_dir)
    c.save(rundir.path(sub, rundir.CONFIG))
    agent = Agent.from_run(data_dir, cfg.game)  # V and M once, for both controllers
    try:
        train_controller(c, sub, progress=progress, agent=agent.with_z_only(True))
        record = dict(
            generations=c.generations,
            z_only=real_scores(
                c, sub, rollouts=test_episodes, progress=progress, agent=agent.with_z_only(True), where=where
            ),
            z_and_h=real_scores(
                cfg,
                data_dir,
                rollouts=test_episodes,
                progress=progress,
                agent=agent.with_z_only(cfg.z_only),
                where=where,
            ),
        )
    finally:
        agent.close()
    atomic_write_text(rundir.path(data_dir, rundir.ABLATION), json.dumps(record, indent=2))
    return record


def _merge_rows(data_dir, rows: list[dict]) -> None:
    """Add ``rows`` to the study table on disk, replacing rows of the same temperature and keeping the others
    (so studies of different temperatures, run one after another or side by side, fill one table)."""
    path = study_path(data_dir)
    old = json.loads(path.read_text()) if path.exists() else []
    taus = {r["temperature"] for r in rows}
    table = sorted([r for r in old if r["temperature"] not in taus] + rows, key=lambda r: r["temperature"])
    atomic_write_text(path, json.dumps(table, indent=2))


def study_path(data_dir) -> Path:
    """Where :func:`temperature_study` keeps its table: ``data_dir/temperatures/study.json``."""
    return rundir.path(data_dir, rundir.STUDY)


def read_study(data_dir) -> list[dict]:
    """The table a finished :func:`temperature_study` wrote (a pretrained agent ships its own)."""
    path = study_path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no temperature study here; run `wm study --data_dir {data_dir}` first")
    return json.loads(path.read_text())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``wm study``."""
    p.add_argument("--data_dir", required=True, help="a run directory with trained V and M (DoomTakeCover)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 1.15, 1.3], help="the taus to try")
    add_setting(p, "generations", help="CMA-ES generations per temperature (default: the run's)")
    p.add_argument("--episodes", type=int, help="real-game test episodes per temperature (default: the run's)")
    p.add_argument("--dream_episodes", type=int, default=1024, help="dream episodes per temperature")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_flags(p)
    p.add_argument(
        "--fidelity",
        action="store_true",
        help="instead of the study: score CMA-ES's first-generation controllers (and the run's trained "
        "one) in the dream at each --temperatures and in the real game, side by side",
    )
    p.add_argument("--candidates", type=int, default=8, help="random controllers for --fidelity")
    p.add_argument(
        "--z_only",
        action="store_true",
        help="instead of the study: the paper's ablation, a controller reading z alone trained on the "
        "run's V and M (in DATA_DIR/z_only), against the run's own on the same test episodes",
    )
    for name in Z_ONLY_SETTINGS:
        add_setting(p, name, help=f"--z_only: {FIELDS[name].metadata['help']} (the z-only C's; default: the run's)")


def run(args) -> int:
    """``wm study``: the temperature study, or with ``--z_only`` / ``--fidelity`` that experiment; prints its table.
    Errors propagate to the command line, which names them."""
    stray = [n for n in Z_ONLY_SETTINGS if getattr(args, n) is not None]
    if stray and not args.z_only:
        raise ValueError(f"{', '.join(map(flag_name, stray))}: settings of the z-only C, given without --z_only")
    cfg = rundir.load_config(args.data_dir)
    if args.z_only:
        _print_ablation(
            args,
            z_only_ablation(
                cfg,
                args.data_dir,
                args.generations,
                args.episodes,
                progress=not args.quiet,
                where=where(args),
                settings={k: getattr(args, k) for k in Z_ONLY_SETTINGS if getattr(args, k) is not None},
            ),
        )
    elif args.fidelity:
        record = fidelity(
            cfg, args.data_dir, args.candidates, args.episodes or 16, args.temperatures, where=where(args)
        )
        _print_fidelity(args, record)
    else:
        rows = temperature_study(
            cfg,
            args.data_dir,
            args.temperatures,
            args.generations,
            args.episodes,
            args.dream_episodes,
            progress=not args.quiet,
            where=where(args),
        )
        print(f"{'tau':>5s} {'generations':>11s} {'in the dream':>16s} {'in the real game':>18s}")
        for r in rows:
            print(
                f"{r['temperature']:5.2f} {r['generations']:11d} {r['dream_mean']:8.1f} +- {r['dream_std']:5.1f} "
                f"{r['real_mean']:10.1f} +- {r['real_std']:5.1f}"
            )
    return 0


def _print_ablation(args, rec: dict) -> None:
    for name, key in (("C reads z only", "z_only"), ("C reads z and h", "z_and_h")):
        r = rec[key]
        print(f"{name:>16s}: {r['mean']:7.1f} +- {r['std']:5.1f}  ({r['episodes']} real episodes, {r['controller']})")
    print(f"(written to {rundir.path(args.data_dir, rundir.ABLATION)})")


def _print_fidelity(args, record: dict) -> None:
    temperatures = args.temperatures
    print(f"{args.episodes or 16} episodes each; mean steps survived (Doom) or reward")
    print(
        f"{'controller':>24s} {'real game':>9s} " + " ".join(f"{'dream ' + format(t, 'g'):>10s}" for t in temperatures)
    )
    for r in record["rows"]:
        dream = " ".join(f"{r['dream_mean'][t]:10.1f}" for t in temperatures)
        print(f"{r['name']:>24s} {r['real_mean']:9.1f} {dream}")
    for name, key, fmt in (
        ("rank correlation", "rank_correlation", "10.2f"),
        ("mean overestimate", "mean_overestimate", "10.1f"),
        ("dream / real", "overestimate_ratio", "10.2f"),
        ("trained's overestimate", "trained_overestimate", "10.1f"),
    ):
        if all(key in record["summary"][t] for t in temperatures):
            print(
                f"{name:>24s} {'':9s} "
                + " ".join(
                    f"{'-':>10s}" if record["summary"][t][key] is None else format(record["summary"][t][key], fmt)
                    for t in temperatures
                )
            )
    print(f"(written to {rundir.path(args.data_dir, rundir.FIDELITY)})")


if __name__ == "__main__":  # `python -m wmlib.study ...` is `wm study ...`: the command line sits on top of the
    # library's layers, so it is looked up by name when this module runs as a script, never imported by it
    sys.exit(importlib.import_module("wmlib.cli").main(["study", *sys.argv[1:]]))
