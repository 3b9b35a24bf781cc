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
3. V encodes them, and M continues training on all episodes for ``--more_rnn_steps`` steps.

Every step resumes; the same seed gives the same episodes (their seeds come from :func:`wmlib.seeding.episode_seed`
with purpose ``ITERATE`` and the round number). ``OUT/iteration.json`` records what was played and how it scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import episodes, rundir
from .agent import Agent, EvalSettings
from .config import Config
from .controller import load_controller
from .io import atomic_write_text
from .memory import encode_episodes, load_memory, train_memory
from .runlock import run_lock
from .seeding import ITERATE, episode_seed, generator


def _episode_index(path: Path) -> int:
    return int(path.stem.split("_")[1])


def iteration_controllers(cfg: Config, params: np.ndarray, round_: int, draws: int = 8, perturbed: int = 15,
                          noise: float = 0.1) -> list[tuple[str, np.ndarray]]:
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


def iterate(data_dir, out, draws: int = 8, perturbed: int = 15, episodes_each: int = 8, noise: float = 0.1,
            more_rnn_steps: int = 500, progress: bool = True) -> dict:
    """One round of iterative training from run ``data_dir`` into a new run directory ``out``; returns the record
    written to ``out/iteration.json``. Bad arguments are refused before anything is written; the round runs
    holding ``out``'s lock (``data_dir`` is only read)."""
    src, dst = Path(data_dir), Path(out)
    if src.resolve() == dst.resolve():
        raise ValueError(f"--out {dst}: must be a new run directory, not --data_dir itself")
    cfg_src = rundir.load_config(src)
    if not rundir.path(src, rundir.CONTROLLER).exists():
        raise FileNotFoundError(f"{rundir.path(src, rundir.CONTROLLER)}: no controller to play; "
                                f"run `wm controller` on {src} first")
    if min(draws, perturbed, episodes_each, more_rnn_steps) < 0 or episodes_each == 0:
        raise ValueError("--episodes must be positive, and --draws, --perturbed and --more_rnn_steps not negative")
    with run_lock(dst, "wm iterate (wmlib.iterate.iterate)"):
        return _round(cfg_src, src, dst, draws, perturbed, episodes_each, noise, more_rnn_steps, progress)


def _round(cfg_src: Config, src: Path, dst: Path, draws: int, perturbed: int, episodes_each: int, noise: float,
           more_rnn_steps: int, progress: bool) -> dict:
    prior = json.loads((src / rundir.ITERATION).read_text()) if (src / rundir.ITERATION).exists() else None
    round_ = 1 + (prior["round"] if prior else 0)
    params, cckpt = load_controller(src)
    src_steps = int(load_memory(src)[1]["step"])
    record_path = dst / rundir.ITERATION
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if Path(record["source"]).resolve() != src.resolve():
            raise ValueError(f"{record_path}: {dst} was made from {record['source']}, not {src}; "
                             "use another --out")
    elif (dst / rundir.CONFIG).exists():
        raise ValueError(f"{dst / rundir.CONFIG}: --out is already a run directory; use a new --out")
    else:  # claim the directory before anything else is written there, so an interrupted round resumes
        atomic_write_text(record_path, json.dumps(dict(round=round_, source=str(src)), indent=2))
    cfg = dataclasses.replace(cfg_src, rnn_steps=src_steps + more_rnn_steps)
    link_run(src, dst)
    cfg.save(dst / rundir.CONFIG)

    t0 = time.time()
    controllers = iteration_controllers(cfg, params, round_, draws, perturbed, noise)
    first = max((_episode_index(p) for p in episodes.list_episodes(src)), default=-1) + 1
    agent = Agent.from_run(dst, cfg.game, with_pool=False)
    settings = EvalSettings.from_config(cfg, mode="real", max_len=cfg.max_frames)
    played = []
    bar = tqdm(total=len(controllers) * episodes_each, desc=f"iterate round {round_}", unit="ep",
               disable=not progress)
    try:
        for ci, (name, p) in enumerate(controllers):
            seeds = [episode_seed(cfg.seed, round_, ci, e, ITERATE) for e in range(episodes_each)]
            paths = [episodes.episode_path(dst, first + ci * episodes_each + e) for e in range(episodes_each)]
            if not all(path.exists() for path in paths):
                for path, seed, ep in zip(paths, seeds, agent.play_episodes(p, seeds, settings)):
                    meta = dict(game=cfg.game, seed=seed, index=_episode_index(path), renderer=cfg.renderer,
                                policy="controller", controller=name, round=round_,
                                score=float(ep["rewards"].sum()))
                    episodes.save_episode(path, meta=meta, **ep)
            scores = [float(episodes.load_episode(path)["meta"]["score"]) for path in paths]
            played.append(dict(name=name, mean=float(np.mean(scores)), std=float(np.std(scores)), scores=scores))
            bar.update(episodes_each)
    finally:
        bar.close()
        agent.close()
    t_play = time.time() - t0
    record = dict(
        round=round_, source=str(src), source_controller_generation=int(cckpt["generation"]),
        first_episode=first, episodes=len(controllers) * episodes_each, episodes_each=episodes_each,
        noise=noise, sigma0=cfg.sigma0, rnn_steps_before=src_steps, rnn_steps=cfg.rnn_steps, controllers=played,
        seconds=dict(play=round(t_play, 1)), previous=prior,
    )
    atomic_write_text(record_path, json.dumps(record, indent=2))
    t0 = time.time()
    encode_episodes(dst, progress=progress)
    record["seconds"]["encode"] = round(time.time() - t0, 1)
    t0 = time.time()
    train_memory(cfg, dst, progress=progress)
    record["seconds"]["memory"] = round(time.time() - t0, 1)
    atomic_write_text(record_path, json.dumps(record, indent=2))
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="wm iterate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data_dir", required=True, help="a run with a trained controller (read only)")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--draws", type=int, default=8, help="fresh N(0, sigma0^2) controllers to play")
    p.add_argument("--perturbed", type=int, default=15, help="noisy copies of the trained controller to play")
    p.add_argument("--episodes", type=int, default=8, help="real episodes per controller")
    p.add_argument("--noise", type=float, default=0.1, help="std of the noise added to the perturbed copies")
    p.add_argument("--more_rnn_steps", type=int, default=500, help="M optimiser steps on top of the source run's")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    try:
        rec = iterate(args.data_dir, args.out, draws=args.draws, perturbed=args.perturbed,
                      episodes_each=args.episodes, noise=args.noise, more_rnn_steps=args.more_rnn_steps,
                      progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wm iterate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wm iterate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    for row in rec["controllers"]:
        print(f"{row['name']:>14}: real {row['mean']:7.1f} +- {row['std']:6.1f}")
    print(f"round {rec['round']}: {rec['episodes']} episodes from episode {rec['first_episode']}, "
          f"M {rec['rnn_steps_before']} -> {rec['rnn_steps']} steps ({args.out}); "
          f"next: wm controller --data_dir {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
