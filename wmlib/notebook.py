"""The notebooks' helpers: where their run directories live and small run helpers; the widgets
(:mod:`wmlib.widgets`) are re-exported here, so a notebook needs ``from wmlib import notebook as nb`` only.

Notebooks hold explanation and short calls; what they call lives here (or in the pipeline's modules, which know
nothing of notebooks).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from . import episodes, rundir
from .agent import Agent, EvalSettings, run_jobs
from .config import make_config
from .controller import load_controller
from .games import make_env
from .iterate import rounds
from .memory import load_memory
from .mixtures import mixture_density
from .play import held_out_seeds
from .plots import plot_frames
from .rollouts import play_random_episode
from .runlock import run_lock
from .widgets import DreamGame, DreamPlayer, FramePlayer, LatentExplorer  # noqa: F401 (the notebooks' nb.X)
from .vision import reconstruct, to_tensor

DATA_DIR_ENV = "WM_DATA_DIR"  # where the notebooks keep their run directories (default: runs/ in the repository)


def find_repo_root(start=None) -> Path:
    """The repository's top folder (the one holding pyproject.toml and wmlib/), searched upwards from ``start``
    (default: the working directory, which is notebooks/ when a notebook runs). Falls back to ``start``."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "wmlib").is_dir():
            return folder
    return here


def runs_root() -> Path:
    """The folder that holds the notebooks' run directories: ``$WM_DATA_DIR`` if set, else ``runs/`` at the top
    of the repository (the same place ``wm`` writes to by default when started there)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else find_repo_root() / "runs"


def notebook_config(game: str, preset: str, data_dir, **overrides):
    """The Config of the run directory ``data_dir``, made and saved the way ``wm`` does.

    If ``data_dir/config.json`` exists (say, ``wm run`` wrote it) its settings are kept, so a notebook explores a
    run made from the terminal with the settings it was made with; otherwise the ``preset`` for ``game`` is used.
    ``overrides`` change single settings (None = keep), as flags do on the command line; they are checked
    before anything is written.
    """
    data_dir = Path(data_dir)
    path = data_dir / rundir.CONFIG
    if path.exists():
        cfg = rundir.load_config(data_dir)
        if cfg.game != game:
            raise ValueError(f"{path}: this run directory is for {cfg.game}, not {game}; choose another DATA_DIR")
        cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    else:
        cfg = make_config(game, preset, **overrides)
    with run_lock(data_dir, "a notebook (wmlib.notebook.notebook_config)"):  # not while a command works there
        cfg.save(path)
    return cfg


def raw_frames(game: str, steps=(40, 80, 120), seed: int = 0, renderer: str = "fast") -> list[tuple]:
    """(raw screen, 64x64 frame) pairs at the given ``steps`` of one held-random-action episode.

    The raw screen is what the game draws before our preprocessing: CarRacing's 96x96 observation (dashboard
    included; the 64x64 frame is its rows 0:84, resized) and Doom's 160x120 screen (resized whole). Fewer pairs come
    back if the episode ends first.
    """
    steps = sorted(int(s) for s in steps)
    env = make_env(game, renderer=renderer)
    try:
        ep = play_random_episode(env, game, seed, steps[-1] + 1, 1, 10, screens_at=steps)
    finally:
        env.close()
    return [(ep["screens"][t], ep["frames"][t]) for t in steps if t in ep["screens"]]


def episode_stats(data_dir) -> dict:
    """Length and total reward of every episode under ``data_dir/episodes`` (frames are not read)."""
    lengths, returns = [], []
    for path in episodes.list_episodes(data_dir):
        ep = episodes.load_arrays(path, ("rewards", "dones"))
        lengths.append(len(ep["rewards"]))
        returns.append(float(ep["rewards"].sum()))
    return dict(lengths=np.array(lengths, np.int64), returns=np.array(returns, np.float64))


def plot_reconstructions(vision, frames) -> Figure:
    """Frames (top) and V's reconstructions of them (bottom)."""
    frames = np.asarray(frames, np.uint8)
    return plot_frames({"frame": frames, "V(frame)": reconstruct(vision, frames)})


def plot_mixture(logpi, mu, logsigma, actual=None, temperatures=(1.0,), title: str = "") -> Figure:
    """M's mixture for one latent dimension: each weighted component pi_k N(mu_k, sigma_k^2) (dashed), their sum
    (solid) at every temperature in ``temperatures``, and the value that really came next (vertical line)."""
    logpi, mu, logsigma = (np.asarray(v, np.float64).reshape(-1) for v in (logpi, mu, logsigma))
    sigma = np.exp(logsigma)
    spread = sigma.max() * np.sqrt(max(temperatures)) * 4
    ends = [mu.min(), mu.max()] + ([float(actual)] if actual is not None else [])
    x = np.linspace(min(ends) - spread, max(ends) + spread, 600)
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    pi = np.exp(logpi - logpi.max())
    pi /= pi.sum()
    for k in range(len(mu)):
        ax.plot(x, mixture_density(x, [0.0], [mu[k]], [logsigma[k]]) * pi[k], "--", lw=1,
                label=rf"$\pi_{k}\,\mathcal{{N}}(\mu_{k}, \sigma_{k}^2)$, $\pi_{k}$ = {pi[k]:.2f}")
    for tau in temperatures:
        ax.plot(x, mixture_density(x, logpi, mu, logsigma, tau), lw=2.2 if tau == 1.0 else 1.5,
                label=rf"mixture, $\tau$ = {tau:g}")
    if actual is not None:
        ax.axvline(float(actual), color="k", lw=1.5, label="the z that came next")
    ax.set(xlabel=r"$z_j$ at the next step", ylabel="density", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def round_story(cfg, data_dir, episodes: int = 8) -> list[dict]:
    """Iterative training, round by round (World Models Sec. 5): each kept round's controller
    (:func:`wmlib.iterate.rounds`) scored in its own dream (the M it was trained in) and in the real game, on the same ``episodes`` held-out seeds,
    and a :class:`DreamPlayer` of it: its own first real episode on the left, the dream it was trained in from that
    episode's first frame on the right. An empty list when the run kept no rounds (an agent made before rounds were
    kept, or one trained without ``wm iterate``).

    Returns one dict per round: round, generation, dream_mean, dream_std, real_mean, real_std, player.
    """
    try:
        kept = rounds(data_dir)
    except FileNotFoundError:
        return []
    if len(kept) < 2:
        return []
    agent = Agent.from_run(data_dir, cfg.game)
    seeds = held_out_seeds(cfg, episodes)
    real_settings = EvalSettings.from_config(cfg, mode="real")
    dream_settings = EvalSettings.from_config(cfg, mode="dream")
    out = []
    try:
        for r in kept:
            params, _ = load_controller(r["controller"])
            memory, _ = load_memory(r["memory"])
            dreamer = Agent(cfg.game, agent.vision, memory, agent.pool_mu, agent.pool_logvar)
            dream = run_jobs(dreamer, dream_settings, [(params, seeds)])[0]
            real, lengths, frames = agent.play(params, seeds, real_settings, record=True)
            with torch.no_grad():
                z0, _ = agent.vision.encode(to_tensor(frames[0][:1]))
            player = DreamPlayer(agent.vision, memory, z0[0].numpy(), controller=(params, agent.spec),
                                 real_frames=frames[0], temperature=cfg.temperature, max_len=cfg.dream_max_len,
                                 seed=seeds[0], done_threshold=cfg.done_threshold, stop_at_done=True)
            out.append(dict(round=r["round"], generation=r["generation"], dream_mean=float(dream.mean()),
                            dream_std=float(dream.std()), real_mean=float(real.mean()), real_std=float(real.std()),
                            player=player))
    finally:
        agent.close()
    return out
