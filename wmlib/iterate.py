"""Iterative training (World Models, Sec. 5): show M what a dream-trained controller really does, then train again.

A dream learned from random play alone can be exploited: CMA-ES finds a controller that M believes survives (say,
one that keeps strafing one way), while it dies quickly in the real game, because random play rarely did that for
long and M never saw what follows. The paper's remedy is to play the real game with the controller, add those
episodes to the data and train M on them too. One round of it:

    wm iterate --data_dir runs/doom-first --out runs/doom      # real episodes by C and its neighbours; M continues
    wm controller --data_dir runs/doom                         # a fresh CMA-ES inside the corrected dream
    wm test --data_dir runs/doom

1. ``--out`` becomes a run directory sharing ``--data_dir``'s episodes, V, M and series (hard links, or copies
   where links cannot be made; the source run is never written to).
2. Real episodes are played with V, M and: the source run's controller, ``--perturbed`` copies of it with
   N(0, noise^2) added to each parameter, and ``--draws`` fresh N(0, sigma0^2) controllers like CMA-ES's first
   generation; ``--episodes`` each. They join the episodes (numbered after the last one, meta policy="controller").
3. The same controllers are also scored in the source run's dream (the dream the controller was trained in, at its
   temperature; Doom): how well the dream's scores match the real ones is the round's fidelity
   (:func:`wmlib.dream.fidelity_summary`: rank correlation, overestimate).
4. V encodes them, and M continues training on all episodes for ``--more_rnn_steps`` steps; with
   ``--recent_share S`` a share S of M's windows comes from this round's episodes (else they are a few % of them).
5. The controller the round played, and the M whose dream it was trained in, are kept in ``OUT/rounds/round_K/``
   (K = 0 for the first dream), with the earlier rounds', so a run holds the whole story: :func:`rounds`.

Every step resumes; the same seed gives the same episodes (their seeds come from :func:`wmlib.seeding.episode_seed`
with purpose ``ITERATE`` and the round number). ``OUT/iteration.json`` records what was played and how it scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import episodes, rundir
from .agent import Agent, EvalSettings, run_jobs
from .card import optional_number
from .config import Config
from .controller import load_controller, played_generation
from .dream import fidelity_summary
from .evaluators import add_flags, where
from .farm import Farm
from .io import atomic_torch_save, atomic_write_bytes, atomic_write_text, load_checkpoint
from .memory import encode_episodes, train_memory
from .rollouts import episode_bytes
from .runlock import run_lock
from .seeding import ITERATE, episode_seed, generator
from .settings import add_setting


def _episode_index(path: Path) -> int:
    return int(path.stem.split("_")[1])


def iteration_controllers(
    cfg: Config, params: np.ndarray, round_: int, draws: int = 8, perturbed: int = 15, noise: float = 0.1
) -> list[tuple[str, np.ndarray]]:
    """The controllers that play a round: the trained one, ``perturbed`` noisy copies, ``draws`` fresh draws."""
    params = np.asarray(params, np.float32)
    n = params.size
    out = [("trained", params)]
    rng = generator(cfg.seed, ITERATE, round_, 1)
    out += [(f"perturbed {i + 1}", params + rng.normal(0.0, noise, n).astype(np.float32)) for i in range(perturbed)]
    rng = generator(cfg.seed, ITERATE, round_, 2)
    out += [(f"draw {i + 1}", rng.normal(0.0, cfg.sigma0, n).astype(np.float32)) for i in range(draws)]
    return out


def link_run(src: Path, dst: Path) -> None:
    """Make ``dst`` share ``src``'s episodes, V, M and series; M's loss log is copied (``dst`` appends to it)."""
    rundir.share_world_model(src, dst, with_episodes=True)
    for stage in ("memory", "vision"):
        log, copy = rundir.log_path(src, stage), rundir.log_path(dst, stage)
        if log.exists() and not copy.exists():
            shutil.copy2(log, copy)


def round_dir(data_dir, k: int) -> Path:
    """Where a run keeps round ``k``'s controller and the M of the dream it was trained in (``rounds/round_K``,
    laid out like a run directory: ``controller/controller.pt``, ``memory/memory.pt``)."""
    return rundir.round_dir(data_dir, k)


def keep_rounds(src: Path, dst: Path, round_: int) -> None:
    """Give ``dst`` the earlier rounds ``src`` kept, and ``src``'s own controller and M as round ``round_ - 1``
    (weights only)."""
    for folder in rundir.round_dirs(src):
        for rel in rundir.ROUND_FILES:
            f, target = folder / rel, dst / folder.relative_to(src) / rel
            if f.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
    here = round_dir(dst, round_ - 1)
    for rel in rundir.ROUND_FILES:
        if not (here / rel).exists():
            ckpt = load_checkpoint(src / rel, str(src / rel))
            for key in ("optimizer", "path", "vision"):
                ckpt.pop(key, None)
            atomic_torch_save(here / rel, ckpt)


def rounds(data_dir) -> list[dict]:
    """The controllers of every round of iterative training that led to the run ``data_dir``, first dream first:
    [{round, controller, memory, generation, real_mean, dream_mean}, ...], the last entry the run's own controller
    and M (left out until ``wm controller`` has trained it). ``real_mean``/``dream_mean``: how the controller
    scored when the next round played it (None for the last, which no round has played; ``wm test`` scores it)."""
    data_dir = Path(data_dir)
    records, r = {}, _read_record(data_dir)
    while r:
        records[int(r["round"]) - 1] = r
        r = r.get("previous")
    out = []
    for k in range(len(records) + 1):
        where = round_dir(data_dir, k) if k < len(records) else data_dir
        if where == data_dir and not rundir.path(where, rundir.CONTROLLER).exists():
            break  # the run's own controller is not trained yet
        for rel in rundir.ROUND_FILES:
            if not (where / rel).exists():
                raise FileNotFoundError(
                    f"{where / rel}: round {k}'s {rel.parent} is missing (runs made by "
                    "`wm iterate` keep every round's controller and M in rounds/)"
                )
        played = records.get(k, {}).get("controllers", [{}])[0]  # the trained controller comes first
        out.append(
            dict(
                round=k,
                controller=where / rundir.CONTROLLER,
                memory=where / rundir.MEMORY,
                generation=int(load_controller(where)[1]["generation"]),
                real_mean=played.get("mean"),
                dream_mean=played.get("dream_mean"),
            )
        )
    return out


def iterate(
    data_dir,
    out,
    draws: int = 8,
    perturbed: int = 15,
    episodes_each: int = 8,
    noise: float = 0.1,
    more_rnn_steps: int = 500,
    progress: bool = True,
    recent_share: float | None = None,
    where: dict | None = None,
    workers: int | None = None,
) -> dict:
    """One round of iterative training from run ``data_dir`` into a new run directory ``out``; returns the record
    written to ``out/iteration.json``. Bad arguments are refused before anything is written; the round runs
    holding ``out``'s lock (``data_dir`` is only read). ``where`` (:func:`wmlib.evaluators.where`: kind, scheduler,
    tls) and ``workers`` say where the real episodes are played (:class:`wmlib.farm.Farm`; default: this process);
    every place writes the same episode files."""
    src, dst = Path(data_dir), Path(out)
    if src.resolve() == dst.resolve():
        raise ValueError(f"--out {dst}: must be a new run directory, not --data_dir itself")
    cfg_src = rundir.load_config(src)
    if not rundir.path(src, rundir.CONTROLLER).exists():
        raise FileNotFoundError(
            f"{rundir.path(src, rundir.CONTROLLER)}: no controller to play; run `wm controller` on {src} first"
        )
    if min(draws, perturbed, episodes_each, more_rnn_steps) < 0 or episodes_each == 0:
        raise ValueError("--episodes must be positive, and --draws, --perturbed and --more_rnn_steps not negative")
    if recent_share is not None:
        cfg_src = dataclasses.replace(cfg_src, recent_share=recent_share)  # checked like every setting
    with run_lock(dst, "wm iterate (wmlib.iterate.iterate)"):
        farm = Farm(workers=cfg_src.workers if workers is None else workers, **(where or {"kind": "inprocess"}))
        with farm:
            return _round(cfg_src, src, dst, draws, perturbed, episodes_each, noise, more_rnn_steps, progress, farm)


def _read_record(data_dir) -> dict | None:
    """The run's ``iteration.json`` (the record of the round that made it), or None for a run made otherwise."""
    path = rundir.path(data_dir, rundir.ITERATION)
    return json.loads(path.read_text()) if path.exists() else None


def _round(
    cfg_src: Config,
    src: Path,
    dst: Path,
    draws: int,
    perturbed: int,
    episodes_each: int,
    noise: float,
    more_rnn_steps: int,
    progress: bool,
    farm: Farm,
) -> dict:
    prior = _read_record(src)
    round_ = 1 + (prior["round"] if prior else 0)
    params, cckpt = load_controller(src)
    agent = Agent.from_run(src, cfg_src.game)  # the V and M the controller was trained with, loaded once
    try:
        src_steps = int(agent.memory_record["step"])
        _claim(src, dst, round_)
        cfg = dataclasses.replace(cfg_src, rnn_steps=src_steps + more_rnn_steps)
        link_run(src, dst)
        keep_rounds(src, dst, round_)
        cfg.save(rundir.path(dst, rundir.CONFIG))
        t0 = time.time()
        controllers = iteration_controllers(cfg, params, round_, draws, perturbed, noise)
        first = max((_episode_index(p) for p in episodes.list_episodes(src)), default=-1) + 1
        played = _play(cfg, dst, agent, controllers, round_, episodes_each, first, progress, farm)
        t_play, t0 = time.time() - t0, time.time()
        fidelity = _dream(cfg_src, agent, controllers, played, round_, episodes_each)
    finally:
        agent.close()
    record = dict(
        round=round_,
        source=str(src),
        source_controller_generation=played_generation(cckpt),
        first_episode=first,
        episodes=len(controllers) * episodes_each,
        episodes_each=episodes_each,
        noise=noise,
        sigma0=cfg.sigma0,
        rnn_steps_before=src_steps,
        rnn_steps=cfg.rnn_steps,
        recent_share=cfg.recent_share,
        controllers=played,
        fidelity=fidelity,
        seconds=dict(play=round(t_play, 1), dream=round(time.time() - t0, 1)),
        previous=prior,
    )
    return _train_memory(cfg, dst, record, progress)


def _claim(src: Path, dst: Path, round_: int) -> None:
    """Make ``dst`` this round's (its iteration.json names ``src``) before anything else is written there, so an
    interrupted round resumes; refuse a ``dst`` made from another run, or holding a run of its own."""
    record_path = rundir.path(dst, rundir.ITERATION)
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if Path(record["source"]).resolve() != src.resolve():
            raise ValueError(f"{record_path}: {dst} was made from {record['source']}, not {src}; use another --out")
    elif rundir.path(dst, rundir.CONFIG).exists():
        raise ValueError(f"{rundir.path(dst, rundir.CONFIG)}: --out is already a run directory; use a new --out")
    else:
        atomic_write_text(record_path, json.dumps(dict(round=round_, source=str(src)), indent=2))


def _play(
    cfg: Config,
    dst: Path,
    agent: Agent,
    controllers,
    round_: int,
    episodes_each: int,
    first: int,
    progress: bool,
    farm: Farm,
) -> list[dict]:
    """Play ``episodes_each`` real episodes with each controller into ``dst``'s episodes (those already there are
    kept), one task per controller on ``farm``, each file written here as it comes back; one row per controller:
    name, mean, std, scores."""
    settings = EvalSettings.from_config(cfg, mode="real", max_len=cfg.max_frames)
    paths = [
        [episodes.episode_path(dst, first + ci * episodes_each + e) for e in range(episodes_each)]
        for ci in range(len(controllers))
    ]
    todo = [ci for ci in range(len(controllers)) if not all(path.exists() for path in paths[ci])]
    state = agent.state() if farm.kind != "inprocess" else agent  # (this process plays with the loaded agent)
    tasks = []
    for ci in todo:
        name, p = controllers[ci]
        seeds = _seeds(cfg, round_, ci, episodes_each)
        metas = [
            dict(game=cfg.game, seed=seed, index=_episode_index(path), renderer=cfg.renderer, policy="controller")
            | dict(controller=name, round=round_)
            for seed, path in zip(seeds, paths[ci])
        ]
        tasks.append((state, p, seeds, settings, metas))
    total = len(controllers) * episodes_each
    with tqdm(
        total=total,
        initial=total - len(todo) * episodes_each,
        desc=f"iterate round {round_}",
        unit="ep",
        disable=not progress,
    ) as bar:
        names = [f"controller {controllers[ci][0]}" for ci in todo]
        for j, files in farm.run(controller_episodes, tasks, names=names, stage="iterate"):
            for path, data in zip(paths[todo[j]], files):
                atomic_write_bytes(path, data)
            bar.update(episodes_each)
    played = []
    for (name, _), ci_paths in zip(controllers, paths):
        scores = [float(episodes.load_episode(path)["meta"]["score"]) for path in ci_paths]
        played.append(dict(name=name, mean=float(np.mean(scores)), std=float(np.std(scores)), scores=scores))
    return played


def controller_episodes(agent, params, seeds, settings: EvalSettings, metas: list[dict]) -> list[bytes]:
    """A task of :func:`_play`: one controller's real episodes, as the bytes of their episode files (each meta
    gets the episode's score). ``agent`` is an :class:`Agent` or, on another process or machine, its
    :meth:`Agent.state`, rebuilt here; the same bytes either way."""
    own = not isinstance(agent, Agent)
    agent = Agent.from_state(agent) if own else agent
    try:
        played = agent.play_episodes(params, seeds, settings)
    finally:
        if own:
            agent.close()
    return [episode_bytes(**ep, meta=dict(meta, score=float(ep["rewards"].sum()))) for ep, meta in zip(played, metas)]


def _seeds(cfg: Config, round_: int, controller: int, episodes_each: int) -> list[int]:
    return [episode_seed(cfg.seed, round_, controller, e, ITERATE) for e in range(episodes_each)]


def _dream(
    cfg_src: Config, agent: Agent, controllers, played: list[dict], round_: int, episodes_each: int
) -> dict | None:
    """Score the same controllers on the same seeds in the dream the played controller was trained in (one that
    can end an episode: Doom), adding dream_mean/dream_std to ``played``; the round's fidelity, or None."""
    if not agent.memory.predict_done:
        return None
    settings = EvalSettings.from_config(cfg_src, mode="dream")
    dreams = run_jobs(
        agent, settings, [(p, _seeds(cfg_src, round_, ci, episodes_each)) for ci, (_, p) in enumerate(controllers)]
    )
    for row, scores in zip(played, dreams):
        row["dream_mean"], row["dream_std"] = float(scores.mean()), float(scores.std())
    return dict(
        temperature=settings.temperature,
        **fidelity_summary([r["mean"] for r in played], [r["dream_mean"] for r in played], trained=0),
    )


def _train_memory(cfg: Config, dst: Path, record: dict, progress: bool) -> dict:
    """Write the round's record, then encode the new episodes and continue M on all of them (timed, and written
    again)."""
    record_path = rundir.path(dst, rundir.ITERATION)
    atomic_write_text(record_path, json.dumps(record, indent=2))
    t0 = time.time()
    encode_episodes(dst, progress=progress)
    record["seconds"]["encode"] = round(time.time() - t0, 1)
    t0 = time.time()
    train_memory(cfg, dst, progress=progress)
    record["seconds"]["memory"] = round(time.time() - t0, 1)
    atomic_write_text(record_path, json.dumps(record, indent=2))
    return record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data_dir", required=True, help="a run with a trained controller (read only)")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--draws", type=int, default=8, help="fresh N(0, sigma0^2) controllers to play")
    p.add_argument("--perturbed", type=int, default=15, help="noisy copies of the trained controller to play")
    p.add_argument("--episodes", type=int, default=8, help="real episodes per controller")
    p.add_argument("--noise", type=float, default=0.1, help="std of the noise added to the perturbed copies")
    p.add_argument("--more_rnn_steps", type=int, default=500, help="M optimiser steps on top of the source run's")
    p.add_argument(
        "--recent_share",
        type=float,
        help="share of M's training windows from this round's episodes (default: the run's setting, "
        "0 = in proportion to their length)",
    )
    add_setting(p, "workers", help="worker processes or Dask workers for the real episodes (default: the run's)")
    add_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    """``wm iterate``: one round, then its table. Errors propagate to the command line, which names them."""
    rec = iterate(
        args.data_dir,
        args.out,
        draws=args.draws,
        perturbed=args.perturbed,
        episodes_each=args.episodes,
        noise=args.noise,
        more_rnn_steps=args.more_rnn_steps,
        progress=not args.quiet,
        recent_share=args.recent_share,
        where=where(args),
        workers=args.workers,
    )
    for row in rec["controllers"]:
        dream = f", dream {row['dream_mean']:7.1f} +- {row['dream_std']:6.1f}" if "dream_mean" in row else ""
        print(f"{row['name']:>14}: real {row['mean']:7.1f} +- {row['std']:6.1f}{dream}")
    if rec.get("fidelity"):
        f = rec["fidelity"]
        print(
            f"dream fidelity (tau {f['temperature']:g}, {f['controllers']} controllers): rank correlation "
            f"{optional_number(f['rank_correlation'])}, mean overestimate {f['mean_overestimate']:.1f}, dream / "
            f"real {optional_number(f['overestimate_ratio'])}, the trained controller's overestimate "
            f"{f['trained_overestimate']:.1f}"
        )
    print(
        f"round {rec['round']}: {rec['episodes']} episodes from episode {rec['first_episode']}, "
        f"M {rec['rnn_steps_before']} -> {rec['rnn_steps']} steps ({args.out}); "
        f"next: wm controller --data_dir {args.out}"
    )
    return 0


if __name__ == "__main__":  # `python -m wmlib.iterate ...` is `wm iterate ...`: the command line sits on top of the
    # library's layers, so it is looked up by name when this module runs as a script, never imported by it
    sys.exit(importlib.import_module("wmlib.cli").main(["iterate", *sys.argv[1:]]))
